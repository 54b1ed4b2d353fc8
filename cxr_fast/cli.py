"""The ``cxr-fast`` command line: parses options and calls the library, nothing more."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click
from tqdm import tqdm

from cxr_fast import __version__

EXISTING = click.Path(exists=True, path_type=Path)


class UserError(click.ClickException):
    """A mistake in what the user asked for: one line, exit code 2."""

    exit_code = 2


def _bar(total: int, desc: str, unit: str = "img") -> tqdm:
    # disable=None: a bar on a terminal, silence in logs and pipes.
    return tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False, disable=None)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="cxr-fast")
def cli() -> None:
    """Train and serve chest X-ray classifiers (NORMAL vs PNEUMONIA) at high throughput.

    Data folders in the Kaggle layout ({train,val,test}/{NORMAL,PNEUMONIA}/*.jpeg) carry labels,
    at whatever level you point; any other tree is an unlabeled archive.
    """


@cli.group()
def data() -> None:
    """Make, inspect and stream datasets."""


@data.command("synth")
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--n",
    "n",
    type=click.IntRange(min=1),
    default=200,
    show_default=True,
    help="Number of images to write.",
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Random seed; same seed, same bytes."
)
@click.option(
    "--min-size",
    type=click.IntRange(min=16),
    default=1000,
    show_default=True,
    help="Smallest width/height in pixels.",
)
@click.option(
    "--max-size",
    type=click.IntRange(min=16),
    default=2200,
    show_default=True,
    help="Largest width/height in pixels.",
)
@click.option(
    "--pneumonia-fraction",
    type=click.FloatRange(0, 1),
    default=0.5,
    show_default=True,
    help="Share of PNEUMONIA images.",
)
@click.option(
    "--test-fraction",
    type=click.FloatRange(0, 1),
    default=0.2,
    show_default=True,
    help="Share of patients (per class) put in test/ rather than train/.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=os.cpu_count() or 1,
    show_default="all cores",
    help="Processes rendering images in parallel.",
)
def data_synth(
    out, n, seed, min_size, max_size, pneumonia_fraction, test_fraction, workers
) -> None:
    """Write a synthetic Kaggle-layout dataset of chest-X-ray-like JPEGs to OUT.

    OUT/{train,test}/{NORMAL,PNEUMONIA}/*.jpeg with Kaggle-style names (person12_virus_3.jpeg,
    IM-0042-0001.jpeg) so patient ids parse; PNEUMONIA images add patchy lung opacities.
    """
    from cxr_fast.data.synth import synth_dataset

    if min_size > max_size:
        raise UserError(f"--min-size {min_size} is larger than --max-size {max_size}")
    with _bar(n, "synth") as bar:
        paths = synth_dataset(
            out,
            n,
            seed=seed,
            min_size=min_size,
            max_size=max_size,
            pneumonia_fraction=pneumonia_fraction,
            test_fraction=test_fraction,
            workers=workers,
            progress=bar.update,
        )
    click.echo(f"wrote {len(paths)} images to {out}")


@data.command("check")
@click.argument("root", type=EXISTING)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of text.")
@click.option(
    "--sample",
    type=click.IntRange(min=1),
    default=None,
    help="Decode only this many evenly spaced images (default: all).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=os.cpu_count() or 1,
    show_default="all cores",
    help="Processes decoding images in parallel.",
)
def data_check(root, as_json, sample, workers) -> None:
    """Report counts per split and class, patients, leakage between splits, image sizes and
    unreadable files under ROOT. Exits 1 when it finds leakage or unreadable files."""
    from cxr_fast.data.check import check_dataset, format_report

    with _bar(0, "decode") as bar:
        report = check_dataset(root, sample=sample, workers=workers, progress=bar.update)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else format_report(report))
    if report.leaked_patients or report.unreadable:
        sys.exit(1)


@data.command("stream")
@click.argument("root", type=EXISTING)
@click.option(
    "--loader",
    type=click.Choice(["auto", "dali", "torch"]),
    default="auto",
    show_default=True,
    help="dali: NVIDIA DALI pipeline; torch: PIL + DataLoader; auto: DALI on CUDA, the "
    "faster measured one on CPU.",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda or cuda:N.")
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=32,
    show_default=True,
    help="Images per batch.",
)
@click.option(
    "--image-size",
    type=click.IntRange(min=8, max=4096),
    default=224,
    show_default=True,
    help="Square model input size in pixels.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=os.cpu_count() or 1,
    show_default="all cores",
    help="DALI threads or DataLoader worker processes.",
)
@click.option(
    "--train/--eval",
    "train",
    default=False,
    show_default=True,
    help="Training mode shuffles and augments; eval mode keeps order.",
)
def data_stream(root, loader, device, batch_size, image_size, workers, train) -> None:
    """Decode and preprocess every image under ROOT once and print images/s."""
    from cxr_fast.contract import PreprocessContract
    from cxr_fast.data.discover import discover
    from cxr_fast.data.loaders import make_loader, resolve_loader
    from cxr_fast.data.throughput import stream
    from cxr_fast.device import resolve_device

    records = discover(root)
    if not records:
        raise UserError(f"no .jpeg/.jpg/.png/.dcm images under {root}")
    contract = PreprocessContract(image_size=image_size)
    backend = resolve_loader(loader, resolve_device(device), records)

    def build():
        return make_loader(
            records,
            contract,
            batch_size=batch_size,
            loader=backend,
            device=device,
            train=train,
            workers=workers,
        )

    with _bar(len(records), f"stream ({backend})") as bar:
        stats = stream(build, progress=bar.update)
    click.echo(
        f"{stats.images} images in {stats.seconds:.2f} s: "
        f"{stats.images_per_second:.1f} images/s ({backend}, {workers} workers, "
        f"batch {batch_size}, {image_size} px)"
    )


def main() -> None:
    """Console entry point: user mistakes print one line and exit 2, never a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("cxr-fast: aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        click.echo(f"cxr-fast: error: {exc.format_message()}", err=True)
        sys.exit(exc.exit_code)
    except (ValueError, FileNotFoundError) as exc:
        if os.environ.get("CXR_FAST_DEBUG"):
            raise
        click.echo(f"cxr-fast: error: {exc}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
