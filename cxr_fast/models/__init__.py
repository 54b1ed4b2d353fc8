"""Model architectures (one grey channel in, one logit out)."""

from cxr_fast.models.registry import ARCHITECTURES, build_model

__all__ = ["ARCHITECTURES", "build_model"]
