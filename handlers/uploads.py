"""Attachments (server/services/uploads.py): ``POST /uploads`` takes one image or PDF, checked by its
bytes; ``GET /uploads/{id}`` streams it to those who may see what it is attached to.

The upload's body is capped by ``body_limit="attachment"`` (``MPCRM_ATTACHMENT_MAX_BYTES`` plus room
for the multipart envelope), streamed and counted by the base handler before anything is parsed.
"""

from __future__ import annotations

import re
import urllib.parse

from tornado.httputil import HTTPInputError, parse_body_arguments

from handlers.base import ALL_ROLES, ApiHandler, operation
from server.errors import ApiError, Invalid, detail
from server.schemas.uploads import UploadOut, UploadQuery

MAX_PARTS = 8  # a multipart body with more parts than this is refused before it is parsed
_BOUNDARY = re.compile(r"""boundary=(?:"([^"]{1,200})"|([^\s;,"]{1,200}))""", re.IGNORECASE)


def disposition(name: str, content_type: str) -> str:
    """Images open in place; anything else is saved (RFC 6266, the UTF-8 name per RFC 5987)."""
    kind = "inline" if content_type.startswith("image/") else "attachment"
    fallback = "".join(ch if 32 <= ord(ch) < 127 and ch not in '"\\;%' else "_" for ch in name)
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{urllib.parse.quote(name, safe='')}"


class UploadListHandler(ApiHandler):
    @operation(
        "Upload one image (JPEG, PNG, WebP, GIF) or PDF: multipart field `file`, or the file as the body "
        "(`?name=`); the type is read from the bytes, whatever the name or Content-Type says",
        roles=ALL_ROLES, query=UploadQuery, response=UploadOut, status=201, tags=("uploads",), body_limit="attachment",
        extra_responses={409: "Too many uploads not attached to anything yet", 429: "Too many uploads; retry after Retry-After"},
    )
    async def post(self) -> None:
        query = self.parse_query(UploadQuery)
        data, filename = self._file()
        record = await self.ctx.uploads.create(self.actor, data, filename if filename is not None else query.name)
        self.set_header("Location", f"/api/v1/uploads/{record['_id']}")
        self.write_model(UploadOut, {**record, "id": record["_id"]}, 201)

    def _file(self) -> tuple[bytes, str | None]:
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "multipart/form-data":
            data, self.request.body = self.request.body, b""
            return data, None
        found = _BOUNDARY.search(content_type)
        if found is None:
            raise ApiError("upload.bad_multipart", 400)
        boundary = (found.group(1) or found.group(2)).encode("latin-1", "replace")
        if self.request.body.count(b"--" + boundary) - 1 > MAX_PARTS:
            raise ApiError("upload.too_many_parts", 400, params={"max": MAX_PARTS})
        arguments: dict = {}
        files: dict = {}
        try:
            parse_body_arguments(content_type, self.request.body, arguments, files, self.request.headers)
        except (HTTPInputError, ValueError, UnicodeDecodeError):
            raise ApiError("upload.bad_multipart", 400) from None
        self.request.body = b""  # the file lives on in `files` only
        uploads = files.get("file") or []
        if len(uploads) != 1:
            raise Invalid("upload.file_required", details=[detail("file", "required", text="file_required")])
        return uploads[0].body, uploads[0].filename or ""


class UploadHandler(ApiHandler):
    @operation(
        "The file, to its uploader while it is attached to nothing, then to those who may see what it is attached to (else 404)",
        roles=ALL_ROLES, tags=("uploads",),
    )
    async def get(self, upload_id: str) -> None:
        record, chunks = await self.ctx.uploads.open(self.actor, upload_id)
        self.set_header("Content-Type", record["content_type"])
        self.set_header("Content-Length", str(record["size"]))
        self.set_header("Content-Disposition", disposition(record["name"], record["content_type"]))
        self.set_header("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'; sandbox")
        self.set_header("Cross-Origin-Resource-Policy", "same-origin")
        self.set_header("Cache-Control", "private, max-age=300")
        async for chunk in chunks:
            self.write(chunk)
            await self.flush()
        self.finish()


class UploadMetaHandler(ApiHandler):
    @operation("An upload's name, type, size and checksum, for those who may read the file", roles=ALL_ROLES, response=UploadOut, tags=("uploads",))
    async def get(self, upload_id: str) -> None:
        record = await self.ctx.uploads.meta(self.actor, upload_id)
        self.write_model(UploadOut, {**record, "id": record["_id"]})


routes = [
    (r"/api/v1/uploads", UploadListHandler),
    (r"/api/v1/uploads/(?P<upload_id>[^/]+)", UploadHandler),
    (r"/api/v1/uploads/(?P<upload_id>[^/]+)/meta", UploadMetaHandler),
]
