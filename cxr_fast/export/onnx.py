"""ONNX: the dynamo exporter (``torch.onnx.export(..., dynamo=True)``) with a dynamic batch,
the contract in ``metadata_props``, run by ONNX Runtime; int8 by ONNX Runtime's static QDQ
quantisation (per-channel weights) calibrated on the run's training images.

``onnx``, ``onnxscript`` and ``onnxruntime`` are the optional extra ``cxr-fast[onnx]``: they are
imported here, inside functions, so nothing else pays for them, and a missing one is one line.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cxr_fast.device import cuda_device
from cxr_fast.export.common import CONTRACT_FILE, ExportError
from cxr_fast.export.pt2 import batch_dim

INPUT_NAME = "x"
OUTPUT_NAME = "logits"
OPSET = 18
# The packages the format needs and the one line that says how to get them.
EXTRA_HINT = "pip install 'cxr-fast[onnx]'"


def onnx_missing(runtime_only: bool = False) -> str | None:
    """The first missing package of the onnx extra (None: all importable). Scoring needs only
    ``onnxruntime``; export also needs ``onnx`` and ``onnxscript``."""
    import importlib.util

    needed = ("onnxruntime",) if runtime_only else ("onnx", "onnxscript", "onnxruntime")
    return next((name for name in needed if importlib.util.find_spec(name) is None), None)


def require_onnx(runtime_only: bool = False) -> None:
    """ExportError (one line) when a package of the onnx extra is missing."""
    missing = onnx_missing(runtime_only)
    if missing is not None:
        raise ExportError(f"the ONNX format needs {missing}, which is not installed: {EXTRA_HINT}")


def save_onnx(
    module: nn.Module, example: torch.Tensor, path: Path, contract: dict, max_batch: int
) -> None:
    """Export ``module`` for batch sizes 1..``max_batch`` to one self-contained ``.onnx`` file
    with the contract in its metadata. ``example`` needs at least two images (torch.export
    specialises a size-1 dimension)."""
    import onnx

    require_onnx()
    # The exporter prints its progress ("[torch.onnx] ...") to stdout; cxr-fast reports itself.
    with torch.no_grad(), contextlib.redirect_stdout(io.StringIO()), _quiet("onnxscript"):
        program = torch.onnx.export(
            module.eval(),
            (example.contiguous(),),
            dynamo=True,
            dynamic_shapes=({0: batch_dim(max_batch)},),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            opset_version=OPSET,
            verbose=False,
        )
    proto = program.model_proto
    _set_contract(proto, contract)
    onnx.save_model(proto, str(path))


def quantize_onnx_int8(
    module: nn.Module,
    example: torch.Tensor,
    path: Path,
    contract: dict,
    max_batch: int,
    calibration: Iterable[torch.Tensor],
) -> None:
    """int8 ONNX of ``module``: export fp32, ONNX Runtime's pre-processing (shape inference,
    graph optimisation: BatchNorm folded), then static QDQ quantisation with per-channel int8
    weights and uint8 activations whose ranges (MinMax) come from ``calibration``. The stem
    convolution, which sees the raw grey image, stays fp32 as in the FX path (int8.py)."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = (
                {INPUT_NAME: x.contiguous().numpy().astype(np.float32)} for x in calibration
            )
            self.seen = 0

        def get_next(self) -> dict | None:
            batch = next(self.batches, None)
            if batch is not None:
                self.seen += len(batch[INPUT_NAME])
            return batch

    with tempfile.TemporaryDirectory(prefix="cxr-fast-onnx-") as tmp:
        fp32, prepared = Path(tmp) / "fp32.onnx", Path(tmp) / "prepared.onnx"
        save_onnx(module, example, fp32, contract, max_batch)
        with _quiet(None):
            quant_pre_process(str(fp32), str(prepared))
            stem = _stem_conv(onnx.load(str(prepared)))
            reader = _Reader()
            quantize_static(
                str(prepared),
                str(path),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                nodes_to_exclude=[stem] if stem else None,
            )
    if not reader.seen:
        raise ExportError("int8 calibration needs at least one image")
    proto = onnx.load(str(path))
    _set_contract(proto, contract)  # quantize_static keeps metadata_props; set it regardless
    onnx.save_model(proto, str(path))


def load_onnx(path: Path, device: torch.device) -> tuple[OnnxModule, dict]:
    """An :class:`OnnxModule` for ``path`` and the contract in its metadata ({} when absent)."""
    require_onnx(runtime_only=True)
    module = OnnxModule(path, device)
    text = module.session(1).get_modelmeta().custom_metadata_map.get(CONTRACT_FILE, "")
    return module, json.loads(text) if text else {}


class OnnxModule:
    """An ONNX Runtime session as a function of a float32 tensor. ONNX Runtime fixes its
    thread count when a session is made, so there is one session per ``torch.get_num_threads()``
    seen at call time: the scorer's thread choice (threads.py) holds for ONNX too."""

    def __init__(self, path: Path, device: torch.device) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.device = device
        available = ort.get_available_providers()
        if device.type == "cuda" and "CUDAExecutionProvider" not in available:
            raise ExportError(
                "this onnxruntime has no CUDA provider: install onnxruntime-gpu, or score on "
                "the CPU (--device cpu)"
            )
        # The GPU by number: without device_id ONNX Runtime takes GPU 0 (every torchrun rank).
        self.providers = (
            [
                ("CUDAExecutionProvider", {"device_id": cuda_device(device).index}),
                "CPUExecutionProvider",
            ]
            if device.type == "cuda"
            else ["CPUExecutionProvider"]
        )
        self._sessions: dict[int, object] = {}

    def session(self, threads: int | None = None):
        """The session for ``threads`` intra-op threads (default: torch's current count)."""
        import onnxruntime as ort

        threads = threads or torch.get_num_threads()
        if threads not in self._sessions:
            options = ort.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            options.log_severity_level = 3  # errors only: no per-node placement chatter
            # ONNX Runtime's threads spin for a while after each run by default; on a small CPU
            # that spinning takes the cores the DataLoader workers decode on (and made eager,
            # timed right after, look 10x slower at export).
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            self._sessions[threads] = ort.InferenceSession(
                str(self.path), options, providers=self.providers
            )
        return self._sessions[threads]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda":
            return run_bound(self.session(), x.to(self.device))
        array = x.detach().float().cpu().contiguous().numpy()
        (logits,) = self.session().run([OUTPUT_NAME], {INPUT_NAME: array})
        return torch.from_numpy(logits).to(x.device)

    def eval(self) -> OnnxModule:
        return self


def run_bound(session, x: torch.Tensor) -> torch.Tensor:
    """``session``'s logits [N,1] for ``x``, read and written where ``x`` lies (ONNX Runtime's
    IO binding): a CUDA batch stays on its GPU instead of a round trip through the host."""
    x = x.detach().float().contiguous()
    out = torch.empty((x.shape[0], 1), dtype=torch.float32, device=x.device)
    kind, index = ("cuda", x.device.index or 0) if x.device.type == "cuda" else ("cpu", 0)
    if kind == "cuda":
        torch.cuda.current_stream(x.device).synchronize()  # ONNX Runtime runs on its own stream
    binding = session.io_binding()
    binding.bind_input(INPUT_NAME, kind, index, np.float32, tuple(x.shape), x.data_ptr())
    binding.bind_output(OUTPUT_NAME, kind, index, np.float32, tuple(out.shape), out.data_ptr())
    session.run_with_iobinding(binding)
    return out


def _set_contract(proto, contract: dict) -> None:
    """Put the contract into the model's ``metadata_props`` under ``contract.json``."""
    kept = [p for p in proto.metadata_props if p.key != CONTRACT_FILE]
    del proto.metadata_props[:]
    proto.metadata_props.extend(kept)
    entry = proto.metadata_props.add()
    entry.key, entry.value = CONTRACT_FILE, json.dumps(contract)


def _stem_conv(proto) -> str | None:
    """Name of the first Conv node in graph order (the one that sees the image)."""
    return next((node.name for node in proto.graph.node if node.op_type == "Conv"), None)


@contextlib.contextmanager
def _quiet(logger_name: str | None):
    """Only errors from ``logger_name`` (None: the root logger) inside the block: onnxscript
    logs each optimisation pass, ONNX Runtime's quantisation tools log through the root logger,
    and the check after export is what decides whether the file is good."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)
