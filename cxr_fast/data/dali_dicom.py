"""DICOM straight into DALI: pydicom extracts the encapsulated frame (no decoding) and
``fn.external_source`` feeds it to the same decoder that JPEG files get.

DALI decodes JPEG Baseline on the CPU and the GPU, and JPEG Lossless (process 14 SV1) and
JPEG 2000 on the GPU only (nvJPEG / nvJPEG2000); everything else stays on pydicom's CPU path.
Only 8-bit single-frame files go to DALI: the decoder's output is then the stored values
themselves, so the intensity rules (window as clip bounds, stretch, MONOCHROME1 inversion; see
:mod:`cxr_fast.data.dicom_intensity`) apply to the very numbers pydicom's path sees. Files
with LUT tables or a sigmoid window, and small images (which get a note on the other path),
stay on pydicom's path.

One graph builder, a device argument, as :mod:`cxr_fast.data.dali_pipeline`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Collection, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from cxr_fast.contract import PreprocessContract
from cxr_fast.data.captured import capture_warnings
from cxr_fast.data.dali_pipeline import contract_normalize, contract_resize
from cxr_fast.data.decode import MIN_IMAGE_SIDE
from cxr_fast.data.dicom import frame_count, identifiers, read_dataset, skip_reason
from cxr_fast.data.dicom_intensity import LinearIntensity, linear_intensity
from cxr_fast.data.discover import is_dicom_file
from cxr_fast.data.filecheck import special_file_reason

_BASELINE = "1.2.840.10008.1.2.4.50"
_GPU_ONLY = (
    "1.2.840.10008.1.2.4.70",  # JPEG Lossless, process 14, selection value 1
    "1.2.840.10008.1.2.4.90",  # JPEG 2000 lossless
    "1.2.840.10008.1.2.4.91",  # JPEG 2000
)


def dali_syntaxes(device: str) -> frozenset[str]:
    """Transfer syntaxes whose frames DALI decodes on ``device`` ("cpu" or "gpu")."""
    return frozenset({_BASELINE, *(_GPU_ONLY if device == "gpu" else ())})


@dataclass(frozen=True)
class DicomPlan:
    """What the header says about one DALI-bound file."""

    size: tuple[int, int]  # original (width, height)
    params: np.ndarray  # (low, high, invert) float32, see LinearIntensity.as_params
    info: dict  # identifiers and warnings: the row's extra columns


def plan(path: str, device: str, skip_views: Collection[str] = ()) -> DicomPlan | None:
    """A plan when DALI can take ``path`` on ``device``, else None (pydicom's path, which
    also reports every problem and skip)."""
    if special_file_reason(path) is not None:  # a FIFO would block; the PIL path names it
        return None
    notes: list[str] = []
    try:
        with capture_warnings(notes):
            ds = read_dataset(path, header_only=True)
            syntax = str(ds.file_meta.get("TransferSyntaxUID", ""))
            if syntax not in dali_syntaxes(device) or skip_reason(ds, skip_views) is not None:
                return None
            if frame_count(ds) != 1 or int(ds.BitsStored) != 8 or int(ds.BitsAllocated) != 8:
                return None
            size = (int(ds.Columns), int(ds.Rows))
            samples = int(ds.get("SamplesPerPixel") or 1)
            if samples == 3 and syntax == _BASELINE:
                rule = LinearIntensity(None, None, False)  # colour: luma only, as pydicom's path
            elif samples == 1:
                rule = linear_intensity(ds)
            else:
                return None
            info = identifiers(ds)
    except Exception:  # pydicom's path names the problem
        return None
    if rule is None or min(size) < MIN_IMAGE_SIDE:
        return None
    return DicomPlan(size, rule.as_params(), {**info, "warnings": "; ".join(notes) or None})


def frame_bytes(path: str) -> np.ndarray:
    """The first frame's encoded bytes (e.g. a JPEG stream), undecoded."""
    from pydicom.encaps import generate_frames

    ds = read_dataset(path)
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    return np.frombuffer(frame, np.uint8)


def _intensity(images, params):
    """DALI twin of dicom_intensity.apply for 8-bit frames: clip, stretch, invert, uint8."""
    from nvidia.dali import fn, math, types

    values = math.clamp(fn.cast(images, dtype=types.FLOAT), params[0], params[1])
    low = fn.reductions.min(values)
    span = fn.reductions.max(values) - low
    span = span + fn.cast(span <= 0, dtype=types.FLOAT)  # a flat image: span 1, as numpy's
    stretched = math.floor((values - low) * (255.0 / span) + 0.5)
    invert = params[2]
    return fn.cast(invert * 255.0 + (1.0 - 2.0 * invert) * stretched, dtype=types.UINT8)


def build_dicom_pipeline(
    source: Callable[[], tuple[list, list, list]],
    contract: PreprocessContract,
    *,
    batch_size: int,
    device: str = "cpu",
    device_id: int = 0,
    num_threads: int = 2,
):
    """Build a DALI pipeline: ``source`` yields batches of (frame bytes, params, position);
    outputs ``x`` (HWC float) and ``idx``. ``device``: "cpu" or "gpu", nothing else changes."""
    from nvidia.dali import fn, pipeline_def, types

    gpu = device == "gpu"

    @pipeline_def(
        batch_size=batch_size,
        num_threads=num_threads,
        device_id=device_id if gpu else None,
        prefetch_queue_depth=2,
    )
    def graph():
        encoded, params, index = fn.external_source(
            source=source,
            num_outputs=3,
            batch=True,
            dtype=[types.UINT8, types.FLOAT, types.INT64],
        )
        images = fn.decoders.image(
            encoded, device="mixed" if gpu else "cpu", output_type=types.GRAY
        )
        images = _intensity(images, params.gpu() if gpu else params)
        # The eval tail of dali_pipeline.build_pipeline: the contract's resize and normalisation.
        images = contract_normalize(contract_resize(images, contract), contract)
        return images, index

    return graph()


@dataclass
class DicomDaliOutput:
    """``x`` [M,1,S,S] for ``positions``; or ``x`` None: decode these on pydicom's path."""

    x: torch.Tensor | None
    positions: list[int]


class _Feed:
    """The external source: batches of frames read on demand; remembers what it fed."""

    def __init__(self, paths: dict[int, str], plans: dict[int, DicomPlan], todo, batch_size):
        self.paths, self.plans, self.batch_size = paths, plans, batch_size
        self.todo = deque(todo)
        self.fed: list[int] = []
        self.unreadable: list[int] = []

    def __call__(self):
        frames, params, index = [], [], []
        while self.todo and len(frames) < self.batch_size:
            position = self.todo.popleft()
            try:
                frames.append(frame_bytes(self.paths[position]))
            except Exception:  # pydicom's path reports it
                self.unreadable.append(position)
                continue
            params.append(self.plans[position].params)
            index.append(np.array([position], np.int64))
            self.fed.append(position)
        if not frames:
            raise StopIteration
        return frames, params, index


def dicom_dali_batches(
    paths: dict[int, str],
    plans: dict[int, DicomPlan],
    contract: PreprocessContract,
    *,
    batch_size: int,
    device: str,
    device_id: int = 0,
    num_threads: int = 2,
) -> Iterator[DicomDaliOutput]:
    """Batches for the planned files, in order. A frame DALI cannot decode stops its pipeline:
    the files fed but not returned go back to pydicom's path, a new pipeline takes the rest."""
    from nvidia.dali.plugin.base_iterator import LastBatchPolicy
    from nvidia.dali.plugin.pytorch import DALIGenericIterator

    todo: Sequence[int] = list(plans)
    while todo:
        feed = _Feed(paths, plans, todo, batch_size)
        done: list[int] = []
        try:
            pipe = build_dicom_pipeline(
                feed,
                contract,
                batch_size=batch_size,
                device=device,
                device_id=device_id,
                num_threads=num_threads,
            )
            pipe.build()
            iterator = DALIGenericIterator(
                [pipe], ["x", "idx"], last_batch_policy=LastBatchPolicy.PARTIAL
            )
            for (out,) in iterator:
                positions = out["idx"].view(-1).tolist()
                done += positions
                yield DicomDaliOutput(out["x"].permute(0, 3, 1, 2), positions)
            todo = []
        except RuntimeError:
            # Retry on pydicom's path what was fed and not returned; go on after it.
            lost = [p for p in feed.fed if p not in set(done)]
            if not feed.fed and not feed.unreadable:  # no progress: the pipeline itself failed
                lost, feed.todo = list(todo), []
            todo = list(feed.todo)
            if lost:
                yield DicomDaliOutput(None, lost)
        if feed.unreadable:
            yield DicomDaliOutput(None, feed.unreadable)


def route(
    paths: dict[int, str], device: str, skip_views: Collection[str] = (), workers: int = 1
) -> tuple[dict[int, DicomPlan], list[int]]:
    """Split positions -> path into DALI-bound DICOM plans and the rest (pydicom/PIL path).

    With ``workers`` > 1 the files are first opened and their headers read in that many
    threads (what takes the time on network storage is waiting for the file system); the
    headers are then parsed one at a time from the page cache, because the warnings pydicom
    raises are captured per file with process-wide state."""
    if workers > 1 and len(paths) > 1:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="cxr-dicom") as pool:
            found = dict(zip(paths, pool.map(_read_ahead, paths.values()), strict=True))
    else:
        found = {position: is_dicom_file(path) for position, path in paths.items()}
    plans: dict[int, DicomPlan] = {}
    rest: list[int] = []
    for position, path in paths.items():
        planned = plan(path, device, skip_views) if found[position] else None
        if planned is None:
            rest.append(position)
        else:
            plans[position] = planned
    return plans, rest


# A DICOM header (file meta, patient, study and image attributes) is far shorter than this.
_HEADER_READ_AHEAD = 64 * 1024


def _read_ahead(path: str) -> bool:
    """Whether ``path`` is DICOM (:func:`is_dicom_file`); if so its first bytes are read, so
    that :func:`plan` finds them in the page cache."""
    if not is_dicom_file(path) or special_file_reason(path) is not None:
        return False
    try:
        with open(path, "rb") as handle:
            handle.read(_HEADER_READ_AHEAD)
    except OSError:
        pass  # plan() (pydicom's path) names the problem
    return True
