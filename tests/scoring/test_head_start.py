"""The head start: films decoded before torch loads are the films the scorer would decode."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.discover import discover
from cxr_fast.data.file_item import read_item
from cxr_fast.data.loader_spec import LoaderSpec
from cxr_fast.data.loaders import make_scoring_loader
from cxr_fast.export import export_run
from cxr_fast.run_folder import load_run
from cxr_fast.scoring import head_start
from cxr_fast.scoring.head_start import HeadStart, begin, contract_hint
from cxr_fast.scoring.score import ScoreConfig, run_score
from tests.bad_files import write_bad_files
from tests.loaded_modules import loaded_by

CONTRACT = PreprocessContract(image_size=64)


@pytest.fixture(scope="module")
def archive(kaggle_dir, samples_dir, tmp_path_factory) -> Path:
    """Real films, a PNG and a DICOM beside every kind of bad file, in class folders."""
    root = tmp_path_factory.mktemp("head") / "archive"
    (root / "NORMAL").mkdir(parents=True)
    (root / "PNEUMONIA").mkdir()
    for path in sorted((kaggle_dir / "train").glob("*/*.jpeg"))[:14]:
        shutil.copy(path, root / path.parent.name / path.name)
    for path in sorted(samples_dir.iterdir())[:4]:
        shutil.copy(path, root / "NORMAL" / path.name)
    write_bad_files(root / "PNEUMONIA", samples_dir)
    return root


@pytest.fixture(scope="module")
def exported(trained_run, synth_small, tmp_path_factory) -> Path:
    """A copy of the trained run with a TorchScript export (whose sidecar names the contract)."""
    run = tmp_path_factory.mktemp("head-run") / "run"
    shutil.copytree(trained_run, run, ignore=shutil.ignore_patterns("export", "last.pt"))
    export_run(run, "torchscript", data=synth_small)
    return run


def _wait_for(head: HeadStart, seconds: float = 2.0) -> list:
    time.sleep(seconds)  # the processes decode meanwhile, as during the scorer's start-up
    return head.take()


def test_the_module_loads_neither_torch_nor_the_decoders():
    loaded = loaded_by("cxr_fast.scoring.head_start", ("torch", "PIL", "pydicom"))
    assert loaded == []
    assert loaded_by("cxr_fast.scoring.wait_policy", ("torch",)) == []


def test_contract_hint_reads_an_export_sidecar(exported, tmp_path):
    contract = load_run(exported)[1].contract
    assert contract_hint(exported) == contract  # a run folder: its export's sidecar
    (export,) = [p for p in (exported / "export").iterdir() if p.suffix == ".ts"]
    assert contract_hint(export) == contract  # an exported file: its own sidecar
    assert contract_hint(exported / "model.pt") is None  # no sidecar
    broken = tmp_path / "run" / "export"
    broken.mkdir(parents=True)
    (broken / "model.ts.json").write_text("{not json")
    assert contract_hint(tmp_path / "run") is None
    (broken / "model.ts.json").write_text(json.dumps({"contract": {"image_size": 96}}))
    assert contract_hint(tmp_path / "run") == PreprocessContract(image_size=96)


def test_head_start_decodes_the_first_files_in_order_as_the_loader_does(archive):
    records = discover(archive)
    head = HeadStart(records, CONTRACT, processes=2)
    items = _wait_for(head)
    assert len(items) == len(records)  # 2 s is ample for these few files
    assert [item.position for item in items] == list(range(len(records)))
    assert head.taken == len(records)
    assert head.take() == []  # once
    for item, record in zip(items, records, strict=True):
        here = read_item(record.path, item.position, record.label, CONTRACT)
        assert (item.error, item.skipped, item.size) == (here.error, here.skipped, here.size)
        if here.pixels is not None:
            np.testing.assert_array_equal(item.pixels, here.pixels)
    assert any(item.error for item in items) and any(item.error is None for item in items)


def test_close_before_take_stops_the_processes(archive):
    head = HeadStart(discover(archive), CONTRACT, processes=2)
    head.close()
    assert not any(process.is_alive() for process in head._processes)
    assert head.take() == [] and head.taken == 0


def test_a_crashed_process_does_not_hold_the_scorer(archive):
    head = HeadStart(discover(archive), CONTRACT, processes=1)
    os.kill(head._processes[0].pid, signal.SIGKILL)  # as a decoder crash would
    started = time.monotonic()
    items = head.take()
    assert time.monotonic() - started < head_start.STOP_TIMEOUT_S / 3
    assert [item.position for item in items] == list(range(len(items)))


def test_the_loader_scores_decoded_files_first_and_the_rest_as_before(archive):
    records = discover(archive)
    head = HeadStart(records, CONTRACT, processes=1)
    items = _wait_for(head)[:7]  # a prefix that ends inside a batch
    spec = LoaderSpec(records, CONTRACT, 4, workers=1)

    def by_position(decoded):
        rows = {}
        for batch in make_scoring_loader(spec, decoded=decoded):
            for i, position in enumerate(batch.index.tolist()):
                rows[position] = batch.x[i].numpy()
            for position, reason in batch.errors + batch.skipped:
                rows[position] = reason
        return rows

    plain, ahead = by_position(()), by_position(items)
    assert sorted(ahead) == sorted(plain) == list(range(len(records)))
    for position, value in plain.items():
        if isinstance(value, str):
            assert ahead[position] == value
        else:
            np.testing.assert_array_equal(ahead[position], value)
    with pytest.raises(ValueError, match="first positions"):
        make_scoring_loader(spec, decoded=items[1:])


def test_score_uses_the_head_start_and_writes_the_same_rows(exported, archive, tmp_path):
    config = ScoreConfig(archive=archive, model=exported, out=tmp_path / "plain.parquet")
    run_score(config)
    contract = load_run(exported)[1].contract
    head = HeadStart(discover(archive.resolve()), contract, processes=1)
    time.sleep(2)
    try:
        summary = run_score(replace(config, out=tmp_path / "ahead.parquet"), head=head)
    finally:
        head.close()
    assert head.taken == len(discover(archive))
    assert summary.seconds >= 2  # the rate counts from the head start's first decode
    columns = ["path", "status", "error", "prob_pneumonia"]
    plain = pq.read_table(tmp_path / "plain.parquet", columns=columns).to_pydict()
    ahead = pq.read_table(tmp_path / "ahead.parquet", columns=columns).to_pydict()
    for column in ("path", "status", "error"):
        assert ahead[column] == plain[column]
    probs = [np.array(t["prob_pneumonia"], dtype=float) for t in (ahead, plain)]
    np.testing.assert_allclose(*probs, atol=1e-5)


def test_a_head_start_with_another_contract_is_not_used(exported, archive, tmp_path):
    other = replace(load_run(exported)[1].contract, image_size=80)
    head = HeadStart(discover(archive.resolve()), other, processes=1)
    time.sleep(1)
    try:
        config = ScoreConfig(archive=archive, model=exported, out=tmp_path / "p.parquet")
        run_score(config, head=head)
    finally:
        head.close()
    assert head.taken > 0  # taken, then dropped: the rows come from the loader alone
    table = pq.read_table(tmp_path / "p.parquet")
    assert table.num_rows == len(discover(archive))


def test_begin_only_where_a_head_start_can_be_used(exported, archive):
    options = dict(device="cpu", workers=2, resume=False, shard=None, env={})
    assert begin(archive, exported, **options) is None  # torch is loaded in this process
    assert begin(archive, exported / "model.pt", **options) is None


@pytest.mark.parametrize(
    "change",
    [
        {"resume": True},
        {"shard": "0/2"},
        {"device": "cuda"},
        {"workers": 0},
        {"env": {head_start.ENV_SWITCH: "0"}},
        {"env": {"WORLD_SIZE": "2"}},
    ],
)
def test_begin_declines_runs_it_cannot_serve(exported, archive, change):
    options = dict(device="cpu", workers=2, resume=False, shard=None, env={}) | change
    code = (
        "import sys; from pathlib import Path; from cxr_fast.scoring.head_start import begin; "
        f"head = begin(Path({str(archive)!r}), Path({str(exported)!r}), **{options!r}); "
        "print('none' if head is None else head.take().__len__())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "none"


def test_begin_before_torch_decodes_ahead(exported, archive):
    code = (
        "import time; from pathlib import Path; from cxr_fast.scoring.head_start import begin; "
        f"head = begin(Path({str(archive)!r}), Path({str(exported)!r}), device='cpu', "
        "workers=2, resume=False, shard=None, env={}); time.sleep(2); "
        "print(len(head.take()))"
    )
    env = {**os.environ, "CXR_FAST_HEAD_START": "1"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert int(out.stdout) == len(discover(archive))


def _process_start(pid: int) -> str | None:
    """The start time of a live process (None when gone or a zombie): names it across pid
    reuse."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return None if fields[0] == "Z" else fields[19]


def _children_of(parent: int) -> dict[int, str]:
    """The live children of ``parent``, pid -> start time (from /proc: no psutil needed)."""
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == parent and fields[0] != "Z":
            children[int(entry.name)] = fields[19]
    return children


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_a_scorer_killed_during_its_head_start_leaves_no_process_behind(
    exported, synth_small, tmp_path
):
    # 160 films: the head start decodes them in a second, then waits to hand them over, its
    # queue full (issue 26: killed now, the scorer left that process behind for ever).
    command = [sys.executable, "-m", "cxr_fast", "score", str(synth_small), "--model"]
    command += [str(exported), "--out", str(tmp_path / "p.parquet"), "--device", "cpu"]
    env = {**os.environ, head_start.ENV_SWITCH: "1"}
    scorer = subprocess.Popen(
        [*command, "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    children: dict[int, str] = {}
    deadline = time.monotonic() + 60
    while not children and scorer.poll() is None and time.monotonic() < deadline:
        children = _children_of(scorer.pid)
        time.sleep(0.01)
    assert children, "the scorer started no decoding process"
    time.sleep(1.0)  # they decode and fill the queue, as during the scorer's start-up
    children.update(_children_of(scorer.pid))
    scorer.kill()
    scorer.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        left = [pid for pid, start in children.items() if _process_start(pid) == start]
        if not left:
            break
        time.sleep(0.1)
    assert not left, f"processes left behind by the killed scorer: {left}"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs Linux /proc")
def test_the_scorers_decoding_workers_die_with_it(synth_small):
    # torch's own watchdog ends an orphaned DataLoader worker within 5 s, unless it is blocked
    # on a full queue; the scorer's workers go at once.
    code = (
        "import sys, time; from cxr_fast.contract import PreprocessContract; "
        "from cxr_fast.data.collecting_loader import pil_batches; "
        "from cxr_fast.data.discover import discover; "
        "from cxr_fast.data.loader_spec import LoaderSpec; "
        f"records = discover({str(synth_small)!r}); "
        "spec = LoaderSpec(records, PreprocessContract(image_size=64), 8, workers=2); "
        "batches = pil_batches(spec, range(len(records))); next(batches); "
        "print('ready', flush=True); time.sleep(600)"
    )
    loader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert loader.stdout.readline().strip() == "ready"
    workers = _children_of(loader.pid)
    assert len(workers) == 2
    loader.kill()
    loader.wait()
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        left = [pid for pid, start in workers.items() if _process_start(pid) == start]
        if not left:
            break
        time.sleep(0.05)
    assert not left, f"workers left behind: {left}"
