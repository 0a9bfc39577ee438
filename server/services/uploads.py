"""Attachments: images and PDF files uploaded by anyone signed in, attached to tickets, replies,
follow-ups and contracts, and served only to those who may see what they are attached to.

* **Type by content.** Whatever a file's name or declared type says, its bytes decide: the magic
  number names one of JPEG, PNG, WebP, GIF or PDF; an image must also parse (Pillow, restricted to
  that one format, header and ``verify``) within a pixel cap; a PDF must have the header at byte 0
  and end in a ``startxref`` / ``%%EOF`` trailer whose offset points inside the file. A file that
  carries a second format (markup such as ``<script`` or ``<svg``, a ZIP directory at its tail,
  bytes after a PNG's ``IEND`` or a PDF's last ``%%EOF``) is refused: a polyglot. SVG is not an
  accepted type (it is a document that runs scripts).
* **Storage.** The bytes go to the GridFS bucket ``uploads`` (``uploads.files`` / ``uploads.chunks``),
  written once and never changed. What changes — who uploaded it, its team, ``attached_to`` and the
  version guarding it — is the upload's record in ``upload_records`` (same id), a plain collection:
  nx-27017 emulates GridFS collections with tables of its own that take no dates in ``metadata``
  and ignore a dotted or conditional ``$set`` (tests/compat/test_gridfs.py), and a record beside
  the bucket is the standard form on both. The record is written before the bytes, so a crash in
  between leaves a record the clean-up job removes, never bytes nobody can find.
* **Access.** The uploader reads their own upload while it is attached to nothing; after that,
  each ``attached_to`` entry's kind has an access function registered at start-up
  (``register_access(kind, fn)``, ``fn(actor, target_id) -> bool``); anyone else gets 404.
* **Bounded.** Uploads per user per hour (``RateLimiter``), a quota of unattached uploads per
  user, a size cap, at most 9 attachments per call; the checks run on a small executor of their
  own; unattached uploads older than a day are deleted in bulk (``uploads_gc``).
"""

from __future__ import annotations

import hashlib
import io
import re
import unicodedata
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from gridfs import AsyncGridFSBucket, NoFile
from PIL import Image, ImageOps, UnidentifiedImageError
from pymongo import DeleteMany, DeleteOne, UpdateOne

from config.settings import Settings
from server.actor import Actor
from server.clock import Clock
from server.db import C
from server.errors import ApiError, Conflict, Invalid, NotFound, detail
from server.workers import BoundedExecutor

AccessFn = Callable[[Actor, str], Awaitable[bool]]

MAX_ATTACHMENTS = 9  # WeChat's image picker takes at most 9
MAX_PIXELS = 50_000_000
NAME_MAX = 120
CHUNK_SIZE = 255 * 1024  # GridFS's default chunk size
IMAGE_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp", "GIF": "image/gif"}
EXTENSIONS = {"image/jpeg": (".jpg", ".jpeg"), "image/png": (".png",), "image/webp": (".webp",), "image/gif": (".gif",), "application/pdf": (".pdf",)}
# Another format riding inside an accepted one: markup a browser would run, or a ZIP (JAR, APK,
# DOCX) whose directory sits at the end of the file.
_MARKUP = re.compile(rb"<\s*(script|html|svg|iframe|body|object|embed|meta|!doctype)\b|<\?xml|javascript:", re.IGNORECASE)
_ZIP_DIRECTORY = b"PK\x05\x06"
_PDF_HEADER = re.compile(rb"%PDF-(1\.[0-7]|2\.0)[\r\n %]")
_PDF_TRAILER = re.compile(rb"startxref\s+(\d{1,12})\s+%%EOF\s*\Z")
_CONTROL = {"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"}  # control, format, surrogate, private, unassigned, separators


class ContentProblem(Exception):
    """What is wrong with a file's bytes: the error's detail (``upload.unsupported_type`` when the
    bytes are no accepted type at all, else ``upload.bad_content``)."""

    def __init__(self, item: dict[str, Any]) -> None:
        super().__init__(item["code"])
        self.detail = item


UNSUPPORTED = "unsupported_type"


def _magic(data: bytes) -> str | None:
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if data.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data.startswith(b"%PDF-"):
        return "PDF"
    return None


def _png_ends_at_iend(data: bytes) -> bool:
    """Walk the chunks: the last one is IEND and nothing follows it."""
    pos = 8
    while pos + 12 <= len(data):
        length = int.from_bytes(data[pos:pos + 4], "big")
        kind = data[pos + 4:pos + 8]
        pos += 12 + length
        if kind == b"IEND":
            return pos == len(data)
    return False


def _check_image(data: bytes, fmt: str) -> None:
    if fmt == "WEBP" and int.from_bytes(data[4:8], "little") + 8 != len(data):
        raise ContentProblem(detail("file", "trailing_data", text="upload_trailing_data"))
    if fmt == "PNG" and not _png_ends_at_iend(data):
        raise ContentProblem(detail("file", "trailing_data", text="upload_trailing_data"))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=[fmt]) as image:
                if image.format != fmt:
                    raise ContentProblem(detail("file", "unreadable", text="upload_unreadable"))
                if image.width * image.height > MAX_PIXELS:
                    raise ContentProblem(detail("file", "image_too_big", text="upload_image_too_big", max=MAX_PIXELS))
                image.verify()
    except ContentProblem:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise ContentProblem(detail("file", "image_too_big", text="upload_image_too_big", max=MAX_PIXELS)) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, ArithmeticError):
        raise ContentProblem(detail("file", "unreadable", text="upload_unreadable")) from None


def _check_pdf(data: bytes) -> None:
    if not _PDF_HEADER.match(data):
        raise ContentProblem(detail("file", "unreadable", text="upload_unreadable"))
    tail = data[-1024:]
    found = _PDF_TRAILER.search(tail)
    if found is None:
        # A trailer followed by something else is a second file riding on this one.
        trailing = re.search(rb"startxref\s+\d+\s+%%EOF", tail) is not None
        raise ContentProblem(detail("file", "trailing_data", text="upload_trailing_data")) if trailing else ContentProblem(detail("file", "unreadable", text="upload_unreadable"))
    offset = int(found.group(1))
    if not 0 < offset < len(data) or not re.match(rb"\s*(xref\b|\d+\s+\d+\s+obj\b)", data[offset:offset + 64]):
        raise ContentProblem(detail("file", "unreadable", text="upload_unreadable"))


def sniff(data: bytes) -> str:
    """The content type of ``data`` read from its bytes, or ``ContentProblem``."""
    fmt = _magic(data)
    if fmt is None:
        raise ContentProblem(detail("file", "unsupported_type", text="upload_type"))
    if _MARKUP.search(data) or _ZIP_DIRECTORY in data[-(65536 + 22):]:
        raise ContentProblem(detail("file", "embedded_markup", text="upload_embedded_markup"))
    if fmt == "PDF":
        _check_pdf(data)
        return "application/pdf"
    _check_image(data, fmt)
    return IMAGE_TYPES[fmt]


# What a re-encoded image keeps of what Pillow read: what its pixels need to look the same (the
# transparent colour, the colour profile) and an animation's timing. Nothing that says where, when
# or with what the picture was taken.
_KEPT_INFO = ("transparency", "icc_profile", "duration", "loop", "background", "disposal", "blend")
STRIPPED_FORMATS = ("JPEG", "PNG", "WEBP")
JPEG_QUALITY = 92


def _webp_lossless(data: bytes) -> bool:
    """Whether a WebP's first image chunk is lossless (``VP8L``): re-encoded the same way."""
    pos = 12
    while pos + 8 <= len(data):
        kind, size = data[pos:pos + 4], int.from_bytes(data[pos + 4:pos + 8], "little")
        if kind in (b"VP8 ", b"VP8L", b"ANMF"):
            return kind == b"VP8L"
        pos += 8 + size + (size & 1)
    return False


def strip_metadata(data: bytes, fmt: str) -> bytes:
    """``data`` (an image already checked by ``sniff``) re-encoded in its own format with its pixels
    only: EXIF (a phone's GPS position, make, time), XMP, comments and text chunks are gone. The
    EXIF orientation is applied to the pixels first (``ImageOps.exif_transpose``), so the picture
    stands as it was shown. Animated PNG and WebP keep their frames (and are not turned)."""
    with Image.open(io.BytesIO(data), formats=[fmt]) as source:
        animated = bool(getattr(source, "is_animated", False)) and fmt in ("PNG", "WEBP")
        image = source if animated else ImageOps.exif_transpose(source)
        kept: dict[str | tuple[int, int], Any] = {k: v for k, v in source.info.items() if k in _KEPT_INFO}
        image.info = dict(kept)  # nothing read from the file rides along by default
        options: dict[str, Any] = {str(k): v for k, v in kept.items() if k in ("transparency", "icc_profile")}
        if fmt == "JPEG":
            options.update(quality=JPEG_QUALITY)
        elif fmt == "WEBP":
            options.update({"lossless": True} if _webp_lossless(data) else {"quality": 90})
        if animated:
            options.update({str(k): v for k, v in kept.items() if k not in ("transparency", "icc_profile")}, save_all=True)
        out = io.BytesIO()
        image.save(out, format=fmt, **options)
        return out.getvalue()


def safe_name(raw: str | None, content_type: str) -> str:
    """The display name: at most ``NAME_MAX`` characters, ending in an extension of the detected
    type (``report.html`` that is a PNG is ``report.html.png``). A name with a control or format
    character (a right-to-left override) or a folder in it is refused, like any text in this API."""
    raw = raw or ""
    if any(unicodedata.category(ch) in _CONTROL for ch in raw) or "/" in raw or "\\" in raw:
        raise Invalid("upload.bad_name", details=[detail("file", "bad_name", text="upload_bad_name")])
    name = re.sub(r"\s+", " ", raw).strip(" .")
    extensions = EXTENSIONS[content_type]
    if not name.lower().endswith(extensions):
        name = f"{name or 'upload'}{extensions[0]}"
    if len(name) > NAME_MAX:
        stem, dot, ext = name.rpartition(".")
        name = f"{stem[:NAME_MAX - len(ext) - 1].rstrip(' .')}{dot}{ext}"
    return name


def _oid(value: Any) -> ObjectId | None:
    if not isinstance(value, str) or len(value) != 24:
        return None
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        return None


class UploadService:
    def __init__(self, *, upload_files, upload_chunks, upload_records, clock: Clock, settings: Settings, limiter) -> None:
        self._files = upload_files  # GridFS: file documents (written by the bucket, deleted here)
        self._chunks = upload_chunks  # GridFS: chunks
        self._records = upload_records  # who, which team, what it is attached to
        self._bucket = AsyncGridFSBucket(upload_files.database, bucket_name=C.UPLOAD_FILES.rsplit(".", 1)[0], chunk_size_bytes=CHUNK_SIZE)
        self._clock = clock
        self._settings = settings
        self._limiter = limiter
        self._access: dict[str, AccessFn] = {}
        self._checks = BoundedExecutor("uploads", workers=1, queue=4)

    # ------------------------------------------------------------ access
    def register_access(self, kind: str, fn: AccessFn) -> None:
        """Who may read an upload attached to a ``kind``: ``fn(actor, target_id)``."""
        self._access[kind] = fn

    async def _may_read(self, actor: Actor, record: dict) -> bool:
        targets = record.get("attached_to") or []
        if not targets:
            return record["uploader_id"] == actor.id
        for target in targets:
            fn = self._access.get(target["kind"])
            if fn is not None and await fn(actor, target["id"]):
                return True
        return False

    async def _readable(self, actor: Actor, upload_id: str) -> dict:
        oid = _oid(upload_id)
        record = await self._records.find_one({"_id": str(oid)}) if oid else None
        if record is None or not await self._may_read(actor, record):
            raise NotFound("upload.not_found")
        return record

    # ------------------------------------------------------------ upload
    async def create(self, actor: Actor, data: bytes, filename: str | None) -> dict:
        """Check the bytes, then store them: 201's record. Every attempt counts for the rate limit."""
        await self._limiter.hit("upload", actor.id, self._settings.attachment_rate_limit, self._settings.attachment_rate_window_s)
        if not data:
            raise Invalid("upload.empty", details=[detail("file", "empty", text="file_empty")])
        limit = self._settings.attachment_max_bytes
        if len(data) > limit:
            raise ApiError("upload.too_large", 413, params={"limit": limit}, details=[detail("file", "too_large", text="at_most", max=limit)])
        try:
            content_type, data, sha256 = await self._checks.run(self._inspect, data)
        except ContentProblem as problem:
            code = "upload.unsupported_type" if problem.detail["code"] == UNSUPPORTED else "upload.bad_content"
            raise Invalid(code, details=[problem.detail]) from None
        name = safe_name(filename, content_type)
        quota = self._settings.attachment_unattached_quota
        if await self._records.count_documents({"uploader_id": actor.id, "attached": False}) >= quota:
            raise Conflict("upload.quota_exceeded", params={"limit": quota})
        file_id = ObjectId()
        record: dict[str, Any] = {
            "_id": str(file_id),
            "uploader_id": actor.id,
            "uploader_role": actor.role,
            "team_id": actor.team_id,
            "name": name,
            "content_type": content_type,
            "size": len(data),
            "sha256": sha256,
            "attached_to": [],
            "attached": False,
            "created_at": self._clock.now(),
            "version": 1,
        }
        await self._records.insert_one(record)
        try:
            await self._bucket.upload_from_stream_with_id(file_id, record["name"], data, metadata={"content_type": content_type, "sha256": sha256})
        except BaseException:
            await self._records.delete_one({"_id": record["_id"]})
            raise
        return record

    @staticmethod
    def _inspect(data: bytes) -> tuple[str, bytes, str]:
        """The type read from the bytes, the bytes to store and their sha256: a JPEG, PNG or WebP
        without its metadata (``strip_metadata``), checked again as it will be served; anything else
        as sent."""
        content_type = sniff(data)
        fmt = next((f for f, t in IMAGE_TYPES.items() if t == content_type), None)
        if fmt in STRIPPED_FORMATS:
            try:
                data = strip_metadata(data, fmt)
            except (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError, ArithmeticError):
                raise ContentProblem(detail("file", "unreadable", text="upload_unreadable")) from None
            if sniff(data) != content_type:
                raise ContentProblem(detail("file", "unreadable", text="upload_unreadable"))
        return content_type, data, hashlib.sha256(data).hexdigest()

    # ------------------------------------------------------------ read
    async def meta(self, actor: Actor, upload_id: str) -> dict:
        return await self._readable(actor, upload_id)

    async def open(self, actor: Actor, upload_id: str) -> tuple[dict, AsyncIterator[bytes]]:
        """The record and the file's chunks, for those who may read it; else 404."""
        record = await self._readable(actor, upload_id)
        try:
            stream = await self._bucket.open_download_stream(ObjectId(record["_id"]))
        except NoFile:
            raise NotFound("upload.not_found") from None

        async def chunks() -> AsyncIterator[bytes]:
            try:
                while chunk := await stream.readchunk():
                    yield chunk
            finally:
                await stream.close()

        return record, chunks()

    # ------------------------------------------------------------ attach
    async def check(self, actor: Actor, upload_ids: list[str], *, kind: str, target_id: str) -> list[dict]:
        """What ``attach`` would attach, without writing: each id the caller's own upload (or one
        already attached to this target), at most ``MAX_ATTACHMENTS``; else 422 naming the index."""
        records = await self._lookup(actor, upload_ids, kind, target_id)
        return [self.brief(r) for r in records]

    async def attach(self, actor: Actor, upload_ids: list[str], *, kind: str, target_id: str) -> list[dict]:
        """Record ``{kind, id}`` in each upload's ``attached_to`` (idempotent); the attached files."""
        target = {"kind": kind, "id": str(target_id)}
        records = await self._lookup(actor, upload_ids, kind, target_id)
        pending = [r for r in records if target not in r["attached_to"]]
        for _ in range(5):  # a concurrent attach or clean-up: read those again and re-apply
            if not pending:
                break
            writes = [
                UpdateOne({"_id": r["_id"], "version": r["version"]},
                          {"$set": {"attached_to": [*r["attached_to"], target], "attached": True}, "$inc": {"version": 1}})
                for r in pending
            ]
            await self._records.bulk_write(writes, ordered=False)
            again = {r["_id"]: r for r in await self._records.find({"_id": {"$in": [r["_id"] for r in pending]}}).to_list(None)}
            gone = [r for r in pending if r["_id"] not in again]
            if gone:  # cleaned up meanwhile
                raise self._unknown(upload_ids, gone[0]["_id"])
            pending = [again[r["_id"]] for r in pending if target not in again[r["_id"]]["attached_to"]]
        if pending:
            raise Conflict("upload.attach_conflict")
        return [self.brief(r) for r in records]

    async def _lookup(self, actor: Actor, upload_ids: list[str], kind: str, target_id: str) -> list[dict]:
        ids = list(dict.fromkeys(upload_ids))
        if len(ids) > MAX_ATTACHMENTS:
            raise Invalid("upload.too_many", params={"max": MAX_ATTACHMENTS},
                          details=[detail("attachments", "too_many", text="upload_too_many", max=MAX_ATTACHMENTS)])
        if not ids:
            return []
        wanted = [str(o) if (o := _oid(i)) else None for i in ids]
        found = {r["_id"]: r for r in await self._records.find({"_id": {"$in": [w for w in wanted if w]}}).to_list(None)}
        target = {"kind": kind, "id": str(target_id)}
        records = []
        for raw, key in zip(ids, wanted):
            record = found.get(key) if key else None
            if record is None or (record["uploader_id"] != actor.id and target not in record["attached_to"]):
                raise self._unknown(upload_ids, raw)
            records.append(record)
        return records

    @staticmethod
    def _unknown(upload_ids: list[str], upload_id: str) -> ApiError:
        index = upload_ids.index(upload_id) if upload_id in upload_ids else 0
        return Invalid("upload.unknown", details=[detail(f"attachments.{index}", "unknown", text="upload_unknown")])

    @staticmethod
    def brief(record: dict) -> dict:
        """How an attachment is shown on what it is attached to."""
        return {"id": record["_id"], "name": record["name"], "content_type": record["content_type"], "size": record["size"]}

    # ------------------------------------------------------------ clean-up
    async def delete_unattached(self, now, batch: int = 500) -> int:
        """Delete uploads attached to nothing that are older than ``ATTACHMENT_UNATTACHED_HOURS``:
        records first (only those still unattached), then the bytes of the ones gone."""
        cutoff = now - timedelta(hours=self._settings.attachment_unattached_hours)
        deleted = 0
        while True:
            old = await self._records.find({"attached": False, "created_at": {"$lt": cutoff}}, {"_id": 1}).limit(batch).to_list(None)
            if not old:
                return deleted
            ids = [d["_id"] for d in old]
            await self._records.delete_many({"_id": {"$in": ids}, "attached": False})
            kept = {d["_id"] for d in await self._records.find({"_id": {"$in": ids}}, {"_id": 1}).to_list(None)}
            gone = [ObjectId(i) for i in ids if i not in kept]
            if gone:
                # One statement per file: nx-27017's GridFS tables take no $in (tests/compat/test_gridfs.py).
                await self._chunks.bulk_write([DeleteMany({"files_id": g}) for g in gone], ordered=False)
                await self._files.bulk_write([DeleteOne({"_id": g}) for g in gone], ordered=False)
            deleted += len(gone)
            if len(old) < batch:
                return deleted
