"""bench.whole_command's unlabelled view: the same films as an archive without class folders."""

from bench import whole_command
from cxr_fast.data.discover import discover


def test_unlabelled_view_links_every_film_without_labels(kaggle_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(whole_command, "CACHE", tmp_path)
    labelled = discover(kaggle_dir)
    view = whole_command.unlabelled_view(kaggle_dir)
    records = discover(view)
    assert len(records) == len(labelled) > 0
    assert all(r.label is None for r in records)
    assert {p.resolve() for p in view.iterdir()} == {
        p.resolve() for p in kaggle_dir.rglob("*.jpeg")
    }
    assert whole_command.unlabelled_view(kaggle_dir) == view  # made once, then reused
