"""The run folder behind an exported file: where Grad-CAM finds the eager model's gradients,
and where calibrate writes a calibrated run from."""

from __future__ import annotations

from pathlib import Path

from cxr_fast.errors import NotFoundError, UserInputError
from cxr_fast.export.sidecar import read_sidecar
from cxr_fast.run_folder import MODEL_FILE, sha256


def needs_run_folder(ref: Path, hint: str = "") -> UserInputError:
    """The error for Grad-CAM asked of an exported file (exports keep no gradients)."""
    return UserInputError(
        f"{ref} is an exported file: TorchScript, pt2 and TensorRT exports keep no gradients, so "
        "Grad-CAM needs the run folder the export came from (the folder holding model.pt)" + hint
    )


def run_folder_for(model_ref: Path) -> Path:
    """The run folder behind ``model_ref``: itself, or for an export written to its default
    place (RUN/export/FILE) that run, when its model.pt is the export's source."""
    if model_ref.is_dir():
        return model_ref
    candidate = model_ref.resolve().parent.parent
    source = read_sidecar(model_ref)["source_sha256"]
    if (candidate / MODEL_FILE).is_file() and sha256(candidate / MODEL_FILE) == source:
        return candidate
    raise needs_run_folder(model_ref)


def cam_run_for(model_ref: Path, cam_run: Path | None) -> Path:
    """The run folder for ``score --cam-dir``: ``cam_run`` when given, but only when its
    ``model.pt`` is the very checkpoint ``model_ref`` is (a run folder) or was exported from (the
    sidecar's ``source_sha256``), so the overlays always explain the model that scored the rows;
    else :func:`run_folder_for`."""
    if cam_run is None:
        if model_ref.is_dir():
            return model_ref
        try:
            return run_folder_for(model_ref)
        except UserInputError:
            raise needs_run_folder(
                model_ref, ": pass it with --cam-run RUN, or drop --cam-dir"
            ) from None
    if not (Path(cam_run) / MODEL_FILE).is_file():
        raise NotFoundError(f"--cam-run {cam_run} is not a trained run: {MODEL_FILE} is missing")
    if model_ref.is_dir():
        want, what = sha256(model_ref / MODEL_FILE), f"--model {model_ref}"
    else:
        want, what = read_sidecar(model_ref)["source_sha256"], f"the source of {model_ref}"
    got = sha256(Path(cam_run) / MODEL_FILE)
    if got != want:
        raise UserInputError(
            f"--cam-run {cam_run} is not the model that scores: its model.pt has checksum "
            f"{got[:12]}…, {what} has {want[:12]}…; pass the run the export was made from"
        )
    return Path(cam_run)


def source_run(path: Path, sidecar: dict) -> Path | None:
    """The run folder export ``path`` was made from, when one still holds that very model.pt:
    the folder its sidecar names, else the run above RUN/export/FILE; None when neither does."""
    places = [Path(path).resolve().parent.parent]
    if sidecar.get("source"):
        places.insert(0, Path(sidecar["source"]))
    for place in places:
        model = place / MODEL_FILE
        if model.is_file() and sha256(model) == sidecar["source_sha256"]:
            return place
    return None
