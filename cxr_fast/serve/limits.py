"""What the web app accepts (no Flask import: the CLI reads these for its --help)."""

DEFAULT_MAX_UPLOAD_MB = 20
# A chest film is at most ~4300 x 4300 px (18.5 MP); anything far beyond that is refused from
# its header, before decoding: a decompression-bomb guard.
MAX_UPLOAD_PIXELS = 50_000_000
# The WSGI server's load limits (cxr_fast/serve/server.py explains them; docs/serving.md
# measures them): threads answering, requests admitted beyond those, seconds a request may
# wait for the model.
DEFAULT_THREADS = 4
DEFAULT_MAX_QUEUE = 16
DEFAULT_REQUEST_TIMEOUT = 30.0
