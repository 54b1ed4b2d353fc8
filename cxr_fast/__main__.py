"""``python -m cxr_fast`` (and ``torchrun -m cxr_fast``) runs the CLI."""

from cxr_fast.cli import main

main()
