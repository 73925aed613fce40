"""``maskcls serve``: a trained model behind HTTP (FastAPI under uvicorn).

POST /predict   multipart photos (field ``file`` or ``files``, one or several) -> per photo the face
                box used, mask / gender / age probabilities, the 18-class label and its name;
                ``?maps=png`` or ``?maps=array`` adds each head's class activation map (Grad-CAM)
                over the crop box, computed for that request only
GET  /health    liveness and counters        GET /model   what is being served
GET  /          a page to drop a photo on (no external assets)

Safe by default: localhost only unless told, ``weights_only`` checkpoints, limits on request
bytes, pixels and files per request, and a JSON 4xx naming the file for every bad upload.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from dataclasses import dataclass
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException

from maskcls import __version__
from maskcls.errors import UserError
from maskcls.inference.inference import MAP_FORMATS, BadImage, Predictor, decode_photo

log = logging.getLogger("maskcls")


@dataclass(frozen=True)
class Limits:
    max_request_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 40_000_000
    max_files: int = 16


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` gets 413, whether it says its length
    (refused before reading) or streams it (stopped at the limit)."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
            status, reason = (413, self.too_large()) if declared.isdigit() else (400, "bad Content-Length")
            return await send_json(send, status, {"error": reason})
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge(self.too_large())
            return message

        return await self.app(scope, limited_receive, send)

    def too_large(self) -> str:
        return f"request larger than {self.max_bytes / 1024 / 1024:g} MiB"


async def send_json(send, status: int, body: dict) -> None:
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


def page_html() -> str:
    return resources.files("maskcls.inference").joinpath("web/index.html").read_text(encoding="utf-8")


def create_app(predictor: Predictor, limits: Limits = Limits()):
    app = FastAPI(title="maskcls", version=__version__, docs_url=None, redoc_url=None)  # docs pages load a CDN
    app.add_middleware(BodyLimit, max_bytes=limits.max_request_bytes)
    started, counters = time.time(), {"requests": 0, "images": 0, "rejected": 0}
    page = page_html()

    def error(status: int, message: str) -> JSONResponse:
        counters["rejected"] += 1
        return JSONResponse({"error": message}, status_code=status)

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request, exc):
        return error(413, str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        return error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request, exc):
        return error(422, "; ".join(item["msg"] for item in exc.errors()))

    @app.exception_handler(Exception)
    async def unexpected(request, exc):  # the last guard: log it, answer JSON, keep serving
        log.error(f"{request.method} {request.url.path}: {type(exc).__name__}: {exc}")
        return error(500, "internal error (logged by the server)")

    @app.get("/", response_class=HTMLResponse)
    async def index():
        return page

    @app.get("/health")
    async def health():
        return {"status": "ok", "models": len(predictor.runs), "uptime_s": round(time.time() - started, 1), **counters}

    @app.get("/model")
    async def model():
        return predictor.describe()

    @app.post("/predict")
    async def predict(request: Request):
        maps_as = request.query_params.get("maps")
        if maps_as is not None and maps_as not in MAP_FORMATS:
            return error(422, f"maps={maps_as}: expected {' or '.join(MAP_FORMATS)}")
        if not request.headers.get("content-type", "").startswith("multipart/form-data"):
            return error(415, "send the photos as multipart/form-data in a field named 'file' (or 'files')")
        try:
            form = await request.form(max_files=limits.max_files, max_fields=limits.max_files + 8)
        except BodyTooLarge:
            raise
        except Exception as problem:  # malformed multipart, too many parts
            return error(400, f"cannot read the form: {getattr(problem, 'detail', problem)}")
        uploads = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
        if not uploads:
            return error(400, "no photo in the request: add a file field named 'file'")
        photos = []
        for index, upload in enumerate(uploads):
            name = upload.filename or f"file {index + 1}"
            try:
                photos.append(await run_in_threadpool(decode_photo, name, await upload.read(), limits.max_pixels))
            except BadImage as bad:
                return error(bad.status, str(bad))
        begun = time.perf_counter()
        predictions = await run_in_threadpool(predictor.predict, photos, maps_as is not None)
        counters["requests"] += 1
        counters["images"] += len(photos)
        results = [
            {
                "file": photo.name,
                "width": photo.pixels.shape[1],
                "height": photo.pixels.shape[0],
                **found.as_json(maps_as),
            }  # fmt: skip
            for photo, found in zip(photos, predictions, strict=True)
        ]
        return {"results": results, "milliseconds": round((time.perf_counter() - begun) * 1000, 1)}

    return app


def check_port_free(host: str, port: int) -> None:
    """Fail at once, before any model loads, when another program already listens there."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise UserError(f"host {host}: not an address of this machine ({error.strerror})") from None
    family, kind, protocol, _, address = infos[0]
    with socket.socket(family, kind, protocol) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does
        try:
            probe.bind(address)
        except OSError as error:
            raise UserError(
                f"port {port} on {host} is not free ({error.strerror}; another maskcls serve?): pick another port"
            ) from None


def serve(predictor: Predictor, *, host: str = "127.0.0.1", port: int = 8000, limits: Limits = Limits(), quiet=False):
    import uvicorn

    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning(f"serving on {host}: anyone who can reach this machine can send photos")
    uvicorn.run(create_app(predictor, limits), host=host, port=port, log_level="warning" if quiet else "info")
