"""`cxr-fast serve`: a small web app and JSON API over one trained run."""
