"""Grad-CAM explanations and their pictures."""
