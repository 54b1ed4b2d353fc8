"""cxr-fast: train and serve chest X-ray classifiers (NORMAL vs PNEUMONIA) at high throughput."""

__version__ = "0.1.0"
