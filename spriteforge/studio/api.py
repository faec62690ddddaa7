"""The studio's HTTP API for programs, under /api/v1 (documented in docs/studio.md).

Plain JSON over FastAPI (which Gradio already ships): generate and get file URLs back, list and
delete gallery items, upload images, start/stop/resume a training run and read its status. Every
route calls the same `Studio` methods as the web UI. Refusals are HTTP errors whose `detail` is
the studio's one-line message (400 bad request, 404 unknown item, 409 a training is already going).
With `--auth user:pass` every route needs HTTP Basic auth with those credentials.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

from fastapi import APIRouter, Body, Depends, File, HTTPException, Request, UploadFile
from fastapi.responses import FileResponse

from .. import __version__
from ..data.dataset import DataError
from ..training.checkpoint import CheckpointError
from .gallery import Item
from .generation import GenRequest
from .jobs import TrainRequest
from .safety import MAX_UPLOAD_BYTES, StudioError
from .service import Studio

PREFIX = "/api/v1"
_BAD_INPUT = (StudioError, DataError, CheckpointError, ValueError)


def make_router(studio: Studio, auth: tuple[str, str] | None = None) -> APIRouter:
    def check_auth(request: Request) -> None:
        if auth is None:
            return
        header = request.headers.get("authorization", "")
        try:
            scheme, _, value = header.partition(" ")
            user, _, password = base64.b64decode(value).decode().partition(":") if scheme.lower() == "basic" else ("", "", "")
        except (ValueError, UnicodeDecodeError):
            user, password = "", ""
        if not (secrets.compare_digest(user, auth[0]) and secrets.compare_digest(password, auth[1])):
            raise HTTPException(401, "this studio needs HTTP Basic auth (the --auth user:pass it was started with)",
                                headers={"WWW-Authenticate": "Basic"})

    r = APIRouter(prefix=PREFIX, dependencies=[Depends(check_auth)])

    def item_json(item: Item, request: Request) -> dict:
        base = str(request.base_url).rstrip("/") + f"{PREFIX}/gallery/{item.id}/files/"
        files = item.files()
        return {**item.to_dict(), "files": {f: base + f for f in files},
                "sheet_url": base + "sheet.png", "gif_url": base + "preview.gif", "zip_url": base + "bundle.zip"}

    @r.get("/health")
    def health() -> dict:
        return {"ok": True, "version": __version__, "workspace": str(studio.workspace)}

    @r.get("/models")
    def models() -> dict:
        return {"models": studio.models()}

    @r.post("/generate")
    def generate(request: Request, body: dict = Body(..., examples=[{"model": "builtin", "prompt": "knight",
                                                                      "frames": 8, "steps": 20, "seed": 1}])) -> dict:
        """Generate one animation (queued behind earlier requests; this call waits for it)."""
        with _errors():
            req = GenRequest.from_dict(body)
            item = studio.generate(req)
        return item_json(item, request)

    @r.post("/uploads")
    async def upload(file: UploadFile = File(...)) -> dict:
        """Store a checked image; pass the returned `path` as init / mask / control."""
        data = await file.read(MAX_UPLOAD_BYTES + 1)
        with _errors():
            return {"path": studio.upload(data, f"upload {file.filename!r}")}

    @r.get("/gallery")
    def gallery(request: Request, q: str = "", model: str = "", order: str = "newest", limit: int = 100,
                offset: int = 0) -> dict:
        with _errors():
            items = studio.gallery.search(q, model, order, min(max(limit, 0), 1000), offset)
        return {"items": [item_json(i, request) for i in items], "total": studio.gallery.count()}

    @r.get("/gallery/{item_id}")
    def gallery_item(item_id: str, request: Request) -> dict:
        with _errors():
            return item_json(studio.gallery.get(item_id), request)

    @r.delete("/gallery/{item_id}")
    def gallery_delete(item_id: str) -> dict:
        with _errors():
            studio.gallery.delete(item_id)
        return {"deleted": item_id}

    @r.get("/gallery/{item_id}/files/{rel:path}")
    def gallery_file(item_id: str, rel: str) -> FileResponse:
        with _errors():
            return FileResponse(studio.item_file(item_id, rel))

    @r.get("/gallery-check")
    def gallery_check() -> dict:
        return studio.gallery.check()

    @r.post("/train")
    def train_start(body: dict = Body(..., examples=[{"data": "builtin", "name": "my-run", "preset": "tiny",
                                                       "minutes": 5, "frames": 8}])) -> dict:
        with _errors():
            unknown = set(body) - set(TrainRequest.__dataclass_fields__)
            if unknown:
                raise StudioError(f"unknown field(s) {sorted(unknown)}; valid: {sorted(TrainRequest.__dataclass_fields__)}")
            return studio.training.start(TrainRequest(**body))

    @r.post("/train/stop")
    def train_stop() -> dict:
        with _errors():
            return studio.training.stop()

    @r.post("/train/resume")
    def train_resume(body: dict[str, Any] = Body(default={})) -> dict:
        with _errors():
            return studio.training.resume(body.get("name"), body.get("minutes"), body.get("steps"))

    @r.get("/train/status")
    def train_status() -> dict:
        return studio.training.status()

    return r


class _errors:
    """Library refusals -> HTTP errors carrying the one-line message."""

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if exc is None or isinstance(exc, HTTPException):
            return False
        if isinstance(exc, KeyError):
            raise HTTPException(404, str(exc.args[0]) if exc.args else "not found") from None
        if isinstance(exc, StudioError) and "already going" in str(exc):
            raise HTTPException(409, str(exc)) from None
        if isinstance(exc, _BAD_INPUT + (FileNotFoundError,)):
            raise HTTPException(400, str(exc)) from None
        return False
