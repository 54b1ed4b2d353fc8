"""How fast `cxr-fast listen` answers films already in its spool (no network, no PACS): the
answering side alone.

    python -m bench.listen_spooled RUN [--films 192] [--repeats 2]

Writes N DX films (the committed real X-rays, tests/network/films.py), puts them in a fresh
spool as listen's Storage SCP would, starts listen in this process (CPU, no ``--send-to``) and
times from its start line to the last film answered (moved to SPOOL/answered/); beside
`score`'s images/s on the same files (its own timing, CPU).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pydicom

from cxr_fast.network.listen_config import ListenConfig
from cxr_fast.network.spool import Spool
from cxr_fast.scoring.score import run_score
from cxr_fast.scoring.score_config import ScoreConfig
from tests.network.films import write_dx_films
from tests.network.listening import answered_count, listening


def answer_rate(run: Path, films: list[Path], folder: Path) -> float:
    """Films/s listen answers ``films`` at, spooled before it starts."""
    spool = Spool.open(folder / "spool")
    for film in films:
        spool.receive(
            film.read_bytes(), pydicom.dcmread(film, stop_before_pixels=True).SOPInstanceUID
        )
    config = ListenConfig(
        run=run, spool=folder / "spool", out=folder / "preds.parquet", port=0, device="cpu"
    )
    with listening(config):
        started = time.perf_counter()
        while answered_count(folder / "spool") < len(films):
            time.sleep(0.01)
        return len(films) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--films", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = write_dx_films(Path(tmp) / "base", min(args.films, 24))
        films = []
        for index in range(args.films):  # copies with their own SOP Instance UIDs
            ds = pydicom.dcmread(base[index % len(base)])
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = (
                f"{ds.SOPInstanceUID}.{index}"
            )
            films.append(Path(tmp) / "films" / f"film-{index:05d}.dcm")
            films[-1].parent.mkdir(exist_ok=True)
            ds.save_as(films[-1], enforce_file_format=True)
        out = Path(tmp) / "score.parquet"
        scored = run_score(
            ScoreConfig(archive=Path(tmp) / "films", model=args.run, out=out, device="cpu")
        )
        print(f"score on the same films: {scored.images_per_second:.1f} images/s", flush=True)
        for repeat in range(args.repeats):
            rate = answer_rate(args.run, films, Path(tempfile.mkdtemp(dir=tmp)))
            print(
                f"{args.films} spooled films answered, {rate:.1f} films/s (run {repeat + 1})",
                flush=True,
            )


if __name__ == "__main__":
    main()
