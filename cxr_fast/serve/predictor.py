"""One trained run answering uploads: the prediction exactly as `cxr-fast score --model RUN`
computes it (the same model, export or eager, and the same pixels), and a Grad-CAM overlay on
request."""

from __future__ import annotations

import base64
import io
import threading

from PIL import Image

from cxr_fast.data.batch import stack_gray
from cxr_fast.data.decode import display_gray, read_gray_bytes
from cxr_fast.explain.explainer import DISPLAY_SIDE, Explainer
from cxr_fast.gate import NotChestXrayError
from cxr_fast.inference import sigmoid
from cxr_fast.labels import CLASS_NAMES
from cxr_fast.run_folder import METRICS_FILE, read_json
from cxr_fast.scoring.gating import gated_verdict, judge_batch
from cxr_fast.serve.limits import MAX_UPLOAD_PIXELS
from cxr_fast.text import format_probability


def png_base64(image: Image.Image) -> str:
    """``image`` as a base64 PNG string, for JSON."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def roc_auc_label(metrics: dict) -> str:
    """What the run's ROC-AUC was measured on, in the words the page shows: "out-of-fold
    ROC-AUC" for a fold ensemble (it has no validation set), "validation ROC-AUC" else."""
    split = metrics.get("split")
    if split in (None, "validation", "out-of-fold"):
        return f"{split or 'validation'} ROC-AUC"
    return f"ROC-AUC ({split})"


class ModelBusyError(Exception):
    """The model stayed busy past the request's time limit (the server answers 503)."""


class Predictor:
    """The run's models (an :class:`Explainer`'s, loaded once) answering uploads: the scoring
    model gives every probability, the eager one the Grad-CAM maps; :meth:`predict` is safe to
    call from several threads."""

    def __init__(
        self,
        explainer: Explainer,
        max_pixels: int = MAX_UPLOAD_PIXELS,
        wait_timeout: float | None = None,
        accept_ood: bool = False,
    ) -> None:
        self.explainer = explainer
        # Answer films the input gate refuses too (flagged in the answer's warnings).
        self.accept_ood = accept_ood
        # How long a request may wait for the model (None: as long as it takes).
        self.wait_timeout = wait_timeout
        # What `score --model RUN` would load for this device: one answer per film.
        self.scoring = self.explainer.scoring
        self.max_pixels = max_pixels
        # Grad-CAM hooks live on the shared model, so requests take turns on it.
        self._lock = threading.Lock()

    @property
    def model_id(self) -> str:
        return self.scoring.model_id

    def describe(self) -> dict:
        """What /api/model reports: architecture, contract, threshold and the run's metrics."""
        info, scoring = self.explainer.info, self.scoring
        path = info.path / METRICS_FILE
        metrics = read_json(path) if path.is_file() else {}
        return {
            "model": self.model_id,
            "arch": info.arch,
            "checksum": scoring.checksum,
            "contract": scoring.contract.to_dict(),
            "threshold": scoring.threshold,
            "threshold_source": scoring.threshold_source,
            "backend": scoring.backend,
            "backend_choice": scoring.choice,
            "precision": scoring.precision,
            "classes": list(CLASS_NAMES),
            "cam_layer": self.explainer.layer,
            "cam_method": self.explainer.method,
            "device": str(scoring.device),
            "metrics": metrics,
            "roc_auc_label": roc_auc_label(metrics),
        }

    def predict(self, data: bytes, name: str = "upload", cam: bool = False) -> dict:
        """The JSON answer for one uploaded file; raises ImageReadError for unreadable input."""
        contract = self.scoring.contract
        info: dict = {}
        pixels, size = read_gray_bytes(data, contract, name, self.max_pixels, info=info)
        # The gate first: a refused upload costs no forward pass and no Grad-CAM.
        (judgement,) = judge_batch(self.scoring, stack_gray([pixels], contract), [info])
        if judgement.refused and not self.accept_ood:
            raise NotChestXrayError(name, judgement.reason)
        # Grad-CAM reuses the model's pixels; only the picture for people is decoded anew.
        display = display_gray(data, DISPLAY_SIDE) if cam else None
        explanation = None
        if not self._lock.acquire(timeout=-1 if self.wait_timeout is None else self.wait_timeout):
            raise ModelBusyError(f"the model stayed busy for {self.wait_timeout:g} s")
        try:
            if display is None:  # the same preprocessing, batch layout and forward as `score`
                logits = self.scoring.logits(stack_gray([pixels], contract)).cpu().numpy()
                prob = float(sigmoid(logits)[0])
            else:  # the same forward, then the map (Explainer.heat_maps)
                explanation = self.explainer.explain_pixels(pixels, size, display, name)
                prob = explanation.prob
        finally:
            self._lock.release()
        # The same digits as the overlays and `explain`: enough to tell p from the threshold.
        prob_text, threshold_text = format_probability(prob, self.scoring.threshold)
        gated = gated_verdict(prob, self.scoring.threshold, judgement, self.accept_ood)
        answer = {
            "prob_pneumonia": prob,
            "pred": gated["pred"],
            "ood_score": gated["ood_score"],
            "warnings": gated["warnings"],
            "threshold": self.scoring.threshold,
            "prob_text": prob_text,
            "threshold_text": threshold_text,
            "model": self.model_id,
            "backend": self.scoring.backend,
            "width": size[0],
            "height": size[1],
        }
        if explanation is not None:
            answer["cam_png"] = png_base64(explanation.overlay)
            answer["image_png"] = png_base64(explanation.display)
            answer["cam_layer"] = self.explainer.layer
        return answer
