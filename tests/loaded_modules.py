"""Which modules an import pulls in, asked of a fresh interpreter."""

import subprocess
import sys


def loaded_by(module: str, prefixes: tuple[str, ...]) -> list[str]:
    """The sorted modules starting with one of ``prefixes`` that ``import module`` loads."""
    code = (
        f"import sys, {module}; "
        f"print('\\n'.join(sorted(m for m in sys.modules if m.startswith({prefixes!r}))))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    return result.stdout.split()
