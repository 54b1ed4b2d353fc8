"""The Flask app: an upload page and a JSON API over a :class:`Predictor`.

Flask rather than FastAPI: the work per request is one synchronous model call behind a lock, so
async buys nothing here, and Flask's test client, multipart parsing and upload-size limit come
without the extra packages (an ASGI server, python-multipart, httpx) FastAPI would need.
"""

from __future__ import annotations

from importlib.resources import files

from flask import Flask, Response, jsonify, request
from PIL.Image import DecompressionBombError
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from cxr_fast.data.decode import ImageReadError
from cxr_fast.data.pixel_limit import ImageTooLargeError
from cxr_fast.serve.forms import FormLimitError, UploadRequest
from cxr_fast.serve.limits import DEFAULT_MAX_UPLOAD_MB
from cxr_fast.serve.predictor import ModelBusyError, Predictor
from cxr_fast.serve.server import RETRY_AFTER_S

# The upload's name only ever appears in captions: never used as a path.
_NAME_LIMIT = 80
_TRUE = {"1", "true", "yes", "on"}


def _error(status: int, message: str) -> tuple[Response, int]:
    return jsonify(error=message, status=status), status


def create_app(predictor: Predictor, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB) -> Flask:
    """The app for ``predictor`` (already loaded: requests never load a model)."""
    app = Flask(__name__)
    app.request_class = UploadRequest
    app.config["MAX_CONTENT_LENGTH"] = int(max_upload_mb * 1024 * 1024)
    page = files("cxr_fast.serve").joinpath("page.html").read_text(encoding="utf-8")

    @app.get("/")
    def index() -> Response:
        return Response(page, mimetype="text/html")

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", model=predictor.model_id)

    @app.get("/api/model")
    def model():
        return jsonify(predictor.describe())

    @app.post("/api/predict")
    def predict():
        upload = request.files.get("file")
        if upload is None:
            return _error(400, "send the image as a multipart/form-data field named 'file'")
        data = upload.read()
        name = (upload.filename or "upload").replace("\\", "/").rsplit("/", 1)[-1]
        cam = request.args.get("cam", "").lower() in _TRUE
        try:
            return jsonify(predictor.predict(data, name[:_NAME_LIMIT] or "upload", cam=cam))
        except ImageReadError as exc:
            too_large = isinstance(exc.__cause__, ImageTooLargeError | DecompressionBombError)
            return _error(413 if too_large else 422, f"{name[:_NAME_LIMIT]}: {exc.reason}")
        except ModelBusyError as exc:
            response, status = _error(503, f"server busy: {exc}")
            response.headers["Retry-After"] = str(RETRY_AFTER_S)
            return response, status

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge):
        if isinstance(exc, FormLimitError):  # too many fields, or a large one: not the size
            return _error(413, exc.description)
        return _error(413, f"upload larger than the {max_upload_mb:g} MB limit")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):
        return _error(exc.code or 500, exc.description or exc.name)

    return app
