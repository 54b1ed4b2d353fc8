"""Words and numbers for people: plurals and probabilities that never contradict a verdict."""

import pytest

from cxr_fast.labels import verdict
from cxr_fast.text import format_probability, plural, probability_line, rate


def test_plurals():
    assert plural(1, "image") == "1 image"
    assert plural(0, "image") == "0 images"
    assert plural(1536, "row") == "1,536 rows"
    assert plural(2, "patient") == "2 patients"


@pytest.mark.parametrize(
    ("prob", "threshold", "shown"),
    [
        (0.741, 0.413, ("0.741", "0.413")),  # far apart: three decimals
        (0.9994, 0.9991, ("0.9994", "0.9991")),  # the "0.999 / 0.999" case
        (0.4130004, 0.4130001, ("0.413000", "0.413000")),  # at most six
    ],
)
def test_probability_digits_separate_p_from_the_threshold(prob, threshold, shown):
    assert format_probability(prob, threshold) == shown


def test_shown_numbers_never_contradict_the_verdict():
    for prob, threshold in [(0.99945, 0.99941), (0.41249, 0.4125), (0.5, 0.49999)]:
        p, t = (float(x) for x in format_probability(prob, threshold))
        assert (p >= t) == (verdict(prob, threshold) == "PNEUMONIA") and p != t


def test_probability_line_and_rate():
    assert probability_line(0.5, 0.25) == "p(pneumonia) = 0.500   threshold 0.250"
    assert rate(300, 2.0) == "150.0 images/s"
