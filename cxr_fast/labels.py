"""Class names: the single source of truth for label order (index 0 normal, 1 pneumonia)."""

from __future__ import annotations

CLASS_NAMES: tuple[str, str] = ("NORMAL", "PNEUMONIA")
UNKNOWN_LABEL: int = -1
NORMAL_LABEL: int = CLASS_NAMES.index("NORMAL")


def label_index(name: str) -> int | None:
    """Map a class folder name (any case) to its label index, or None when it is no class."""
    try:
        return CLASS_NAMES.index(name.upper())
    except ValueError:
        return None


def verdict(prob: float, threshold: float) -> str:
    """The predicted class name: PNEUMONIA when ``prob >= threshold``."""
    return CLASS_NAMES[int(prob >= threshold)]
