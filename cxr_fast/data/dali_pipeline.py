"""NVIDIA DALI pipelines: one graph builder, a device argument.

On the CPU the pipeline has no device (``device_id=None``; ``-1`` would still initialise CUDA)
and uses the CPU decoder. On the GPU the same graph uses the ``mixed`` decoder (nvJPEG, and the
hardware JPEG decoder where the GPU has one) and every later operator runs on the GPU, so the
batch reaches the model without a host round trip.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator

import torch

from cxr_fast.contract import PER_IMAGE_EPSILON, PreprocessContract
from cxr_fast.data.augment import CONTRAST_CENTER, Augment
from cxr_fast.data.batch import Batch, drops_last, labels_tensor, num_batches, to_device_async
from cxr_fast.data.loader_spec import LoaderSpec, TrainMode

# nvidia.dali is imported inside the functions that build graphs (as in dali_dicom.py): it costs
# about 0.3 s, which every `score` on a CPU host (where the PIL loader is the default) would pay
# at start-up for nothing.

_READER = "reader"


@functools.cache
def dali_available() -> bool:
    """True when NVIDIA DALI imports on this host."""
    try:
        import nvidia.dali  # noqa: F401
    except ImportError:  # pragma: no cover - exercised only on hosts without DALI
        return False
    return True


def _interp(name: str):
    from nvidia.dali import types

    return {
        "linear": types.INTERP_LINEAR,
        "cubic": types.INTERP_CUBIC,
        "nearest": types.INTERP_NN,
    }[name]


def contract_resize(images, contract: PreprocessContract):
    """The contract's central crop and resize (and, with ``normalize="equalize"``, the histogram
    equalisation of the resized uint8 image), as a DALI graph step (any device)."""
    from nvidia.dali import fn

    size = contract.image_size
    # The central crop as a relative region of interest of the same resize: the contract's
    # crop box of a unit image (PIL's resize box), in DALI's (y, x) order.
    left, top, right, bottom = contract.crop_box(1.0, 1.0)
    roi = (
        {}
        if contract.crop == 1.0
        else {"roi_start": [top, left], "roi_end": [bottom, right], "roi_relative": True}
    )
    images = fn.resize(
        images,
        resize_x=size,
        resize_y=size,
        interp_type=_interp(contract.interpolation),
        antialias=True,
        **roi,
    )
    if contract.normalize == "equalize":
        # fn.equalize left "experimental" in DALI 1.4x; older releases only have the alias.
        equalize = getattr(fn, "equalize", None) or fn.experimental.equalize
        images = equalize(images)
    return images


def contract_normalize(images, contract: PreprocessContract, mirror=0):
    """The contract's affine and per-image standardisation, as a DALI graph step: HWC float."""
    from nvidia.dali import fn, types

    # a * x + b == (x - (-b / a)) / (1 / a): the contract's affine as DALI's mean and std
    a, b = contract.affine
    images = fn.crop_mirror_normalize(
        images, dtype=types.FLOAT, output_layout="HWC", mean=[-b / a], std=[1 / a], mirror=mirror
    )
    if contract.normalize == "per-image":
        # Population variance over each image's own pixels plus epsilon, as the torch path.
        images = fn.normalize(images, axes=[0, 1], epsilon=PER_IMAGE_EPSILON)
    return images


def _uniform(center: float, spread: float, shape: list[int] | None = None):
    """A per-sample uniform draw in [center - spread, center + spread]; a constant at zero
    spread (DALI rejects an empty range)."""
    from nvidia.dali import fn

    if spread <= 0:
        return [center] * shape[0] if shape else center
    return fn.random.uniform(range=[center - spread, center + spread], shape=shape)


def _augment(images, size: int, aug: Augment):
    """Random affine (rotate, scale with the aspect stretch, translate about the centre) and
    brightness/contrast."""
    from nvidia.dali import fn, types
    from nvidia.dali import math as dmath

    center = [size / 2.0, size / 2.0]
    zoom = _uniform(1.0, aug.scale, shape=[1])
    scale = zoom * 2 if isinstance(zoom, list) else fn.cat(zoom, zoom)
    if aug.stretch > 0:
        # sqrt of the aspect ratio: log-uniform in [1/sqrt(1+stretch), sqrt(1+stretch)].
        spread = math.log1p(aug.stretch) / 2
        root = dmath.exp(fn.random.uniform(range=[-spread, spread], shape=[1]))
        if isinstance(zoom, list):
            scale = fn.cat(root, 1.0 / root)
        else:
            scale = fn.cat(zoom * root, zoom / root)
    matrix = fn.transforms.rotation(angle=_uniform(0.0, aug.rotate_deg), center=center)
    matrix = fn.transforms.scale(matrix, scale=scale, center=center)
    matrix = fn.transforms.translation(matrix, offset=_uniform(0.0, aug.translate * size, [2]))
    images = fn.warp_affine(
        images, matrix=matrix, fill_value=0, inverse_map=False, interp_type=types.INTERP_LINEAR
    )
    images = fn.brightness_contrast(
        images,
        brightness=_uniform(1.0, aug.brightness),
        contrast=_uniform(1.0, aug.contrast),
        contrast_center=CONTRAST_CENTER,
    )
    return images


def build_pipeline(spec: LoaderSpec, train: TrainMode | None = None):
    """Build (not yet started) a DALI pipeline over ``spec``'s shard yielding ``x`` (NHWC
    float32) and ``idx`` (record position); train mode with ``train``.

    On the CPU and the GPU (:meth:`LoaderSpec.dali_device`) nothing else about the graph
    changes. Batches are float32 on both: the model's precision policy (autocast) decides what
    the convolutions compute in, and an fp32 model would reject a Half input outright.

    ``random_shuffle`` only shuffles within a buffer of ``initial_fill`` samples after one
    fixed-seed shuffle of the file list, whatever the seed is: callers that want a different
    order per epoch and per seed permute the records themselves (the trainer does).
    """
    if not dali_available():
        raise RuntimeError("NVIDIA DALI is not installed: pip install nvidia-dali-cuda120")
    from nvidia.dali import fn, pipeline_def, types

    device, device_id = spec.dali_device()
    augment = train.augment if train is not None else None

    @pipeline_def(
        batch_size=spec.batch_size,
        num_threads=max(1, spec.workers),
        device_id=device_id if device == "gpu" else None,
        seed=train.seed if train is not None else 0,
        prefetch_queue_depth=2,
    )
    def graph():
        encoded, index = _read_files(spec, train)
        images = fn.decoders.image(
            encoded,
            device="mixed" if device == "gpu" else "cpu",
            output_type=types.GRAY,
            # As PIL (and torchvision's decode_jpeg) by default: pixels as stored. DALI would
            # otherwise rotate by the EXIF tag, and GPU and CPU scores would differ.
            adjust_orientation=False,
        )
        images = contract_resize(images, spec.contract)
        if augment is not None:
            images = _augment(images, spec.contract.image_size, augment)
        mirror = fn.random.coin_flip() if augment is not None and augment.hflip else 0
        return contract_normalize(images, spec.contract, mirror), index

    return graph()


def _read_files(spec: LoaderSpec, train: TrainMode | None):
    """The file reader of :func:`build_pipeline`'s graph: (encoded bytes, record position)."""
    from nvidia.dali import fn

    paths = [r.path for r in spec.records]
    return fn.readers.file(
        files=paths,
        # The "label" DALI carries is the record's position: it maps every output row back
        # to its file, and real labels are looked up from it.
        labels=list(range(len(paths))),
        random_shuffle=train is not None,
        initial_fill=min(1024, max(len(paths), 1)),
        shard_id=spec.shard_id,
        num_shards=spec.num_shards,
        # Without it the shards rotate every epoch: a reused (validation) loader would read
        # another rank's shard, of another size, in its second epoch.
        stick_to_shard=True,
        pad_last_batch=True,
        seed=train.seed if train is not None else 0,
        name=_READER,
    )


class DaliLoader:
    """Iterable of :class:`Batch` from a DALI pipeline over ``spec``'s shard, in train mode
    with ``train`` (see :mod:`cxr_fast.data.loader_spec` for both). Eval mode keeps order and
    the last partial batch; train mode shuffles, augments and drops the last partial batch."""

    def __init__(self, spec: LoaderSpec, train: TrainMode | None = None) -> None:
        self.contract = spec.contract
        self._labels = labels_tensor([r.label for r in spec.records])
        self._pipe = build_pipeline(spec, train)
        self._pipe.build()
        from nvidia.dali.plugin.base_iterator import LastBatchPolicy
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        shard_size = len(spec.positions())
        training = train is not None
        drop = drops_last(shard_size, spec.batch_size, training)
        self._batches = num_batches(shard_size, spec.batch_size, training)
        policy = LastBatchPolicy.DROP if drop else LastBatchPolicy.PARTIAL
        self._iterator = DALIGenericIterator(
            [self._pipe],
            ["x", "idx"],
            reader_name=_READER,
            last_batch_policy=policy,
            # Reset when iterated again (DALIGenericIterator.__iter__), not at the end of an
            # epoch: an auto-reset pipeline starts prefetching the next epoch at once, wasted
            # for a training loader that is replaced every epoch.
            auto_reset=False,
        )

    def __len__(self) -> int:
        return self._batches

    def __iter__(self) -> Iterator[Batch]:
        for (out,) in self._iterator:
            if out["idx"].shape[0] == 0:
                # A shard one record shorter than the longest ends on a batch of padding only
                # (every shard takes as many steps as the longest): nothing of this shard's.
                continue
            index = out["idx"].view(-1).to(torch.int64).cpu()
            x = out["x"].permute(0, 3, 1, 2)
            yield Batch(x=x, y=to_device_async(self._labels[index], x.device), index=index)
