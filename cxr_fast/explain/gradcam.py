"""Grad-CAM and Grad-CAM++ heat maps for the single-logit classifiers.

Written here rather than taken from the ``grad-cam`` package: for one logit and one target layer
it is a forward hook, one backward pass and a weighted sum (about thirty lines), while the
package would add OpenCV and its own preprocessing to a project whose preprocessing must come
from the checkpoint's contract alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cxr_fast.choices import CAM_METHODS
from cxr_fast.errors import UserInputError

_EPS = 1e-7


@dataclass(frozen=True)
class CamResult:
    """``heat`` [N,S,S] in 0..1 at the input's size; ``logits`` [N]; ``target`` the sign of the
    logit each map explains (+1: evidence for PNEUMONIA, -1: evidence for NORMAL)."""

    heat: torch.Tensor
    logits: torch.Tensor
    target: torch.Tensor


def find_layer(model: nn.Module, name: str) -> nn.Module:
    """The submodule called ``name`` (dotted), or a ValueError listing the candidates."""
    try:
        return model.get_submodule(name)
    except AttributeError:
        convs = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
        tail = ", ".join(convs[-4:])
        raise UserInputError(
            f"the model has no layer {name!r}; its last convolutions are: {tail}"
        ) from None


def _weights(acts: torch.Tensor, grads: torch.Tensor, method: str) -> torch.Tensor:
    if method == "gradcam":
        return grads.mean(dim=(2, 3), keepdim=True)
    # Grad-CAM++ (Chattopadhay et al. 2018), closed form for an exponential of the score:
    # alpha = g^2 / (2 g^2 + sum(A) g^3), weights = sum(alpha * relu(g)).
    g2, g3 = grads.pow(2), grads.pow(3)
    denom = 2 * g2 + acts.sum(dim=(2, 3), keepdim=True) * g3
    alpha = torch.where(grads != 0, g2 / torch.where(denom != 0, denom, _EPS), 0.0)
    return (alpha * F.relu(grads)).sum(dim=(2, 3), keepdim=True)


def grad_cam(
    model: nn.Module,
    x: torch.Tensor,
    layer: str | list[str],
    method: str = "gradcam",
    threshold: float = 0.5,
    target: torch.Tensor | None = None,
) -> CamResult:
    """Heat maps of ``layer`` for a batch ``x`` [N,1,S,S] (already preprocessed). Each map
    explains the predicted class at the run's decision ``threshold`` (a probability): the logit
    itself when the film is called PNEUMONIA, its negative otherwise. ``target`` [N] (+1/-1)
    gives the verdicts instead, when another model (the export that scores) made them.
    With several layers (an ensemble's members), each layer's map is computed from the same
    backward pass of the model's output and the maps are averaged."""
    if method not in CAM_METHODS:
        raise UserInputError(f"unknown method {method!r}; choose one of {', '.join(CAM_METHODS)}")
    layers = [layer] if isinstance(layer, str) else list(layer)
    modules = [find_layer(model, name) for name in layers]
    captured: list[dict[str, torch.Tensor]] = [{} for _ in layers]

    def keeper(store: dict[str, torch.Tensor]):
        def keep(_module, _inputs, output):
            store["acts"] = output
            output.register_hook(lambda grad: store.__setitem__("grads", grad))

        return keep

    handles = [m.register_forward_hook(keeper(c)) for m, c in zip(modules, captured, strict=True)]
    try:
        with torch.enable_grad():
            logits = model(x).reshape(-1)
            # The verdict's own boundary: with a threshold of 0.74 a film at p = 0.6 is NORMAL,
            # and its map must show the evidence for NORMAL.
            boundary = math.log(threshold / (1 - threshold)) if 0 < threshold < 1 else 0.0
            if target is None:
                target = torch.where(logits >= boundary, 1.0, -1.0)
            target = target.to(logits.device, logits.dtype)
            # Each image's map depends only on its own logit: summing keeps one backward pass.
            (logits * target).sum().backward()
    finally:
        for handle in handles:
            handle.remove()
    cams = []
    for name, store in zip(layers, captured, strict=True):
        if "grads" not in store:
            raise UserInputError(
                f"layer {name!r} received no gradient: it does not feed the output"
            )
        acts, grads = store["acts"].detach().float(), store["grads"].detach().float()
        cam = F.relu((_weights(acts, grads, method) * acts).sum(dim=1, keepdim=True))
        cams.append(F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False))
    cam = torch.stack(cams).mean(dim=0)[:, 0]
    peak = cam.amax(dim=(1, 2), keepdim=True)
    heat = torch.where(peak > 0, cam / peak.clamp_min(_EPS), torch.zeros_like(cam))
    return CamResult(heat=heat, logits=logits.detach(), target=target.detach())
