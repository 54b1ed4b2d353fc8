"""Turn the warnings PyTorch raises while exporting into one-line notes.

PyTorch 2.14 deprecates TorchScript and ``torch.ao.quantization``: every trace, freeze, save and
observer warns, dozens of lines per export. Those are known and say nothing about this model, so
they become (at most) one note each; any other warning is passed on unchanged.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import torch

TORCHSCRIPT_NOTE = (
    "TorchScript is deprecated in PyTorch 2.14: this file works today, "
    "but prefer --format pt2 for new deployments"
)
AO_QUANTIZATION_NOTE = (
    "int8 uses torch.ao FX quantization, deprecated in PyTorch 2.14 "
    "(its successor, torchao PT2E, is not a dependency)"
)
# Known noise, no note: torch.ao observers and quantized tensors; and the pt2 archive writer,
# which calls any non-contiguous weight (channels_last ones) "not complete" and then, as such a
# tensor has its storage to itself, saves that whole storage with its strides -- correctly, as
# the reloaded file's check against eager confirms on every export.
_SILENT = (
    "reduce_range will be deprecated",
    "quantized tensor creation functions",
    "No complete tensor found in the group",
)


def _note_for(warning: warnings.WarningMessage) -> str | None:
    """The note for a caught warning: a string, "" to drop it, None to pass it on."""
    text = str(warning.message)
    if issubclass(warning.category, torch.jit.TracerWarning):
        return "trace: " + text.splitlines()[0]
    if "torch.jit" in text and "deprecated" in text:
        return TORCHSCRIPT_NOTE
    if "torch.ao.quantization is deprecated" in text:
        return AO_QUANTIZATION_NOTE
    if any(fragment in text for fragment in _SILENT):
        return ""
    return None


@contextmanager
def warnings_to_notes(notes: list[str]) -> Iterator[None]:
    """Collect warnings raised inside the block into ``notes`` (deduplicated); warnings that
    are not known noise are passed on, also when the block fails."""
    caught: list[warnings.WarningMessage] = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            yield
    finally:
        for warning in caught:
            note = _note_for(warning)
            if note is None:
                warnings.warn_explicit(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
            elif note and note not in notes:
                notes.append(note)


@contextmanager
def quiet_torchscript() -> Iterator[None]:
    """Silence only the TorchScript deprecation warnings (loading: the note came at export)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*torch\.jit.*deprecated", category=Warning)
        yield
