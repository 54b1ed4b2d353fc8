"""Counts agree with their nouns and verbs in the messages that count things (issue 31)."""

from cxr_fast.data.bad_file_scan import BadFile, describe, skipped_line
from cxr_fast.leakage import leakage_warning
from cxr_fast.text import agree


def test_agree():
    assert agree(1, "was", "were") == "was"
    assert agree(0, "was", "were") == "were"
    assert agree(2, "it", "them") == "them"


def test_leakage_warning_one_patient():
    found = {"patients": 142, "training_patients": 1, "training_images": 1, "examples": ["p7"]}
    line = leakage_warning(found, "data/test")
    assert line.startswith("1 of 142 patients under data/test (1 image) was in the run's")
    found.update(training_patients=3, training_images=5)
    assert "3 of 142 patients under data/test (5 images) were in" in leakage_warning(
        found, "data/test"
    )


def test_bad_files_lines():
    one, two = BadFile("/d/a.jpeg", "truncated"), BadFile("/d/b.jpeg", "empty file")
    assert describe([one], 1).startswith("1 of 1 image cannot be read (")
    assert describe([one, two], 1200).startswith("2 of 1,200 images cannot be read (")
    # What --skip-bad trains without: no "training without 2 of 2 images cannot be read".
    assert skipped_line([one, two]).startswith("2 unreadable images (")
    assert skipped_line([one]).startswith("1 unreadable image (")


def test_train_help_names_where_logs_are_and_the_default_policy():
    from click.testing import CliRunner

    from cxr_fast.cli import cli

    text = " ".join(CliRunner().invoke(cli, ["train", "--help"]).output.split())
    assert "members/fold-1/ to fold-K/" in text  # an ensemble's train_log.jsonl
    assert "Youden's J." not in text and "the --threshold-policy rule (margin by default)" in text
