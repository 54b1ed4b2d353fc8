"""Words and numbers for people: plurals, probabilities next to thresholds, throughput.

One place so that every command, overlay and the web page say things the same way.
"""

from __future__ import annotations

# Fewest and most decimals a probability is shown with.
MIN_DIGITS = 3
MAX_DIGITS = 6


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``1 image``, ``2 images``, ``1,536 rows``; ``nouns`` for irregular plurals."""
    return f"{n:,} {noun if n == 1 else (nouns or noun + 's')}"


def agree(n: int, one: str, many: str) -> str:
    """The verb (or pronoun) that agrees with ``n``: ``agree(1, "was", "were")`` is "was"."""
    return one if n == 1 else many


def probability_digits(prob: float, threshold: float) -> int:
    """Decimals that show ``prob`` and ``threshold`` as different numbers when they differ
    (3 at least, 6 at most): p = 0.9994 at threshold 0.9991 reads "0.9994 / 0.9991", never
    "0.999 / 0.999", which leaves a reader to guess why the verdict is PNEUMONIA."""
    for digits in range(MIN_DIGITS, MAX_DIGITS + 1):
        if f"{prob:.{digits}f}" != f"{threshold:.{digits}f}":
            return digits
    return MAX_DIGITS


def format_probability(prob: float, threshold: float) -> tuple[str, str]:
    """(probability, threshold) as text with :func:`probability_digits` decimals."""
    digits = probability_digits(prob, threshold)
    return f"{prob:.{digits}f}", f"{threshold:.{digits}f}"


def probability_line(prob: float, threshold: float) -> str:
    """``p(pneumonia) = 0.9973   threshold 0.9991``: the words every caption uses."""
    p, t = format_probability(prob, threshold)
    return f"p(pneumonia) = {p}   threshold {t}"


def rate(images: int, seconds: float) -> str:
    """``123.4 images/s``: the one throughput unit."""
    value = images / seconds if seconds > 0 else float("nan")
    return f"{value:.1f} images/s"
