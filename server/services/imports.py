"""Spreadsheet import of old contacts (CSV or XLSX) and lead export (CSV or XLSX).

Import: the upload is parsed and checked synchronously (a bad header or too many rows rejects the
whole file and writes nothing); the rows are then written by a background task that reports its
progress in an ``imports`` document. Every row ends up counted exactly once, as created, merged
(its phone matches a lead the importer may see) or rejected with a code, so
``created + merged + len(rejected) == total`` when the import is finished.

Cells are data, never formulas: a cell that looks like one is rejected on import, and exported
cells that a spreadsheet would evaluate are prefixed with ``'``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import logging
import re
import struct
import zipfile
from collections.abc import AsyncGenerator, AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.errors import BulkWriteError

from server.actor import Actor
from server.clock import Clock, as_utc
from server.errors import ApiError, Forbidden, Invalid, NotFound, detail
from server.schemas.common import text_problem
from server.security import FieldCipher, normalise_mainland_mobile
from server.services.allocation import SweepStats
from server.services.audit import AuditService
from server.services.leads import LeadService, event, new_lead_id
from server.workers import BoundedExecutor

log = logging.getLogger("mpcrm.imports")

MAX_ROWS = 10_000
MAX_COLUMNS = 50
CHUNK = 500
EXPORT_MAX_ROWS = 50_000
EXPORT_BATCH = 500
REPORT_REJECTED = 200  # rejected rows shown in the progress document's response; all in errors.csv

COLUMNS = ("name", "phone", "company", "email", "city", "tags", "notes", "level")
HEADER_ALIASES = {
    **{c: c for c in COLUMNS},
    "姓名": "name", "手机": "phone", "手机号": "phone", "公司": "company", "邮箱": "email",
    "城市": "city", "标签": "tags", "备注": "notes", "等级": "level",
}
MAX_LENGTH = {"name": 64, "company": 100, "email": 254, "city": 64, "notes": 2000}
FORMULA_PREFIXES = ("=", "+", "-", "@")
EXPORT_DANGEROUS = ("=", "+", "-", "@", "\t", "\r")
EXPORT_COLUMNS = ("id", "name", "company", "phone", "city", "level", "stage", "owner", "tags", "next_followup_at", "created_at")
# What a person reads in the first row, in the caller's Accept-Language. The zh-CN names of the
# columns an import knows are the import's own (姓名, 手机, 公司, 城市, 等级, 标签).
EXPORT_HEADERS = {
    "zh-CN": ("编号", "姓名", "公司", "手机", "城市", "等级", "阶段", "负责人", "标签", "下次跟进", "创建时间"),
    "en": ("ID", "Name", "Company", "Phone", "City", "Level", "Stage", "Owner", "Tags", "Next follow-up", "Created"),
}
STAGE_LABELS = {
    "zh-CN": {
        "new": "新线索", "contacted": "已联系", "qualified": "有意向", "customer": "客户", "retained": "留存",
        "at_risk": "流失预警", "churned": "已流失", "won_back": "已挽回", "lost": "已丢失",
    },
    "en": {
        "new": "New", "contacted": "Contacted", "qualified": "Qualified", "customer": "Customer", "retained": "Retained",
        "at_risk": "At risk", "churned": "Churned", "won_back": "Won back", "lost": "Lost",
    },
}
EXPORT_TIME_FORMAT = "%Y-%m-%d %H:%M"  # in the business time zone (MPCRM_TIMEZONE)
# Characters XML 1.0 (so XLSX) cannot hold. Data stored before text refused control characters may
# still contain them; the export drops them (in CSV too, for the same file either way).
UNPRINTABLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")
XLSX_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
REJECTED_DATA_TTL = timedelta(days=30)  # how long errors.csv still carries the rejected rows' cells
STALLED_AFTER = timedelta(minutes=10)  # progress is saved every 500 rows, far more often


# ---------------------------------------------------------------- parsing (pure, runs in a thread)
@dataclass(frozen=True)
class ParseLimits:
    """What an upload may unpack to, checked on the zip's central directory before any XML is read."""

    max_unzipped: int = 64 * 1024 * 1024
    max_member: int = 32 * 1024 * 1024
    max_shared_strings: int = 8 * 1024 * 1024

    @classmethod
    def from_settings(cls, settings) -> ParseLimits:
        return cls(settings.import_max_unzipped, settings.import_max_member, settings.import_max_shared_strings)


MAX_SHEET_ROWS = MAX_ROWS + 1  # the header and MAX_ROWS rows; blank rows and gaps count
MAX_MEMBERS = 1000  # an XLSX has a few dozen parts
MAX_CENTRAL_DIRECTORY = 1024 * 1024
MAX_CONTENT_TYPES = 1024 * 1024
PROLOG_WINDOW = 4096
KEPT_CELL = 4096  # characters of each cell kept for errors.csv (every valid field is shorter)
SHARED_STRINGS_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml"
# An XML part's prolog: declaration, whitespace, comments and processing instructions, then the root
# element. No DOCTYPE (so no entity of any kind, internal or external) gets past this.
_PROLOG = re.compile(
    rb"\A(?:<\?xml(?P<decl>(?:(?!\?>).)*)\?>)?(?:\s|<!--(?:(?!-->).)*-->|<\?(?:(?!\?>).)*\?>)*<[A-Za-z_:]", re.S
)
_ENCODING = re.compile(rb"""encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_PLAIN_ENCODINGS = {b"utf-8", b"utf8", b"us-ascii", b"ascii"}


@dataclass
class Cell:
    value: str
    formula: bool = False


@dataclass
class CleanRow:
    row: int
    name: str
    phone: str | None
    fields: dict[str, Any]
    tags: list[str]
    cells: list[str] = field(default_factory=list)  # the row as uploaded, for errors.csv

    def dedupe_key(self) -> tuple:
        if self.phone:
            return ("phone", self.phone)
        return ("row", self.name, *(str(self.fields.get(k)) for k in ("company", "email", "city", "notes", "level")), tuple(self.tags))


@dataclass
class ParsedUpload:
    format: str
    total: int
    rows: list[CleanRow] = field(default_factory=list)
    rejected: list[dict] = field(default_factory=list)  # {row, code, field, cells}
    header: list[str] = field(default_factory=list)


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value).strip()


def _header_map(header: list[Any]) -> list[str | None]:
    """Column index → field name; the whole file is rejected on an unknown, repeated or missing column."""
    mapped: list[str | None] = []
    problems = []
    for index, raw in enumerate(header):
        text = _text(raw).lstrip("\ufeff").strip()
        if not text:
            mapped.append(None)  # an empty header cell: an unused column
            continue
        name = HEADER_ALIASES.get(text.lower()) or HEADER_ALIASES.get(text)
        if name is None:
            problems.append(detail(f"column {index + 1}", "unknown", text="unknown_column", value=text[:64], header=text[:64]))
        elif name in mapped:
            problems.append(detail(f"column {index + 1}", "repeated", text="repeated_column", value=text[:64], header=text[:64]))
        mapped.append(name)
    if "name" not in mapped:
        problems.append(detail("name", "missing", text="name_column_required"))
    if problems:
        raise Invalid("import.bad_header", details=problems[:20])
    return mapped


def _csv_rows(data: bytes):
    for encoding in ("utf-8-sig", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    else:  # pragma: no cover - gb18030 decodes almost anything
        raise Invalid("import.bad_file")
    if "\x00" in text:
        raise Invalid("import.bad_file")
    try:
        for values in csv.reader(io.StringIO(text, newline="")):
            yield [Cell(v.strip()) for v in values[:MAX_COLUMNS]]
    except csv.Error:
        raise Invalid("import.bad_file") from None


def _too_large(limit: int) -> Invalid:
    return Invalid("import.unpacked_too_large", params={"limit": limit})


def _central_directory_is_small(data: bytes) -> bool:
    """The end-of-central-directory record, read before ``zipfile`` builds an object per member: a
    directory of a million entries (or a ZIP64 one) is refused without being walked."""
    at = data.rfind(b"PK\x05\x06", max(0, len(data) - 22 - 65535))
    if at < 0 or len(data) < at + 22:
        return False
    entries, size = struct.unpack("<HI", data[at + 10:at + 16])
    return 0 < entries <= MAX_MEMBERS and size <= MAX_CENTRAL_DIRECTORY


def _plain_xml(head: bytes) -> bool:
    """True unless the part's first bytes are XML with a DOCTYPE, an encoding other than UTF-8/ASCII,
    or a prolog longer than the window. Non-XML parts (images) pass; openpyxl never parses them."""
    if head.startswith(b"\xef\xbb\xbf"):
        head = head[3:]
    if head[:2] in (b"\xff\xfe", b"\xfe\xff") or b"\x00" in head[:4]:
        return False  # UTF-16/32: the checks below could not read it
    head = head.lstrip(b" \t\r\n")
    if not head.startswith(b"<"):
        return True
    match = _PROLOG.match(head)
    if match is None:
        return False
    declared = _ENCODING.search(match.group("decl") or b"")
    return declared is None or declared.group(1).lower() in _PLAIN_ENCODINGS


def _shared_strings_parts(archive: zipfile.ZipFile, names: set[str]) -> set[str]:
    """The parts openpyxl reads as shared strings: found by content type, as openpyxl finds them."""
    if "[Content_Types].xml" not in names:
        return set()
    from defusedxml.ElementTree import fromstring  # refuses entities even if a check above missed one

    raw = archive.read("[Content_Types].xml")
    root = fromstring(raw)
    parts = set()
    for node in root:
        if node.tag.endswith("}Override") and node.get("ContentType") == SHARED_STRINGS_TYPE:
            parts.add((node.get("PartName") or "").lstrip("/"))
    return parts


def check_xlsx(data: bytes, limits: ParseLimits) -> None:
    """Bounds checked before openpyxl touches the file: member count, every member's and the total
    uncompressed size (from the central directory; zipfile never inflates past the declared size),
    the shared strings (held in memory whole) and every XML part's prolog (no DTD, no entities)."""
    if not _central_directory_is_small(data):
        raise Invalid("import.bad_file")
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = archive.infolist()
        total = 0
        for info in members:
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED) or info.flag_bits & 0x1:
                raise Invalid("import.bad_file")  # other compressions, encryption: not a spreadsheet
            if info.file_size > limits.max_member:
                raise _too_large(limits.max_member)
            total += info.file_size
            if total > limits.max_unzipped:
                raise _too_large(limits.max_unzipped)
        names = {info.filename for info in members}
        if "[Content_Types].xml" in names and archive.getinfo("[Content_Types].xml").file_size > MAX_CONTENT_TYPES:
            raise _too_large(MAX_CONTENT_TYPES)
        for info in members:
            if info.is_dir():
                continue
            with archive.open(info) as member:
                if not _plain_xml(member.read(PROLOG_WINDOW)):
                    raise Invalid("import.bad_file")
        for name in _shared_strings_parts(archive, names):
            if name in names and archive.getinfo(name).file_size > limits.max_shared_strings:
                raise _too_large(limits.max_shared_strings)
    except ApiError:
        raise
    except Exception:  # a hostile or broken archive: whatever zipfile or the XML parser says
        raise Invalid("import.bad_file") from None


def _xlsx_rows(data: bytes, limits: ParseLimits):
    check_xlsx(data, limits)
    from openpyxl import load_workbook  # imported on use: only imports need it

    try:
        book = load_workbook(io.BytesIO(data), read_only=True, data_only=False)
    except Exception:
        raise Invalid("import.bad_file") from None
    try:
        sheet = book.worksheets[0]
        # max_row bounds the rows openpyxl makes up for gaps (a row numbered 1,000,000 after row 2),
        # whatever the sheet's declared dimension; one past the limit says "too many".
        for cells in sheet.iter_rows(max_row=MAX_SHEET_ROWS + 1, max_col=MAX_COLUMNS):
            yield [Cell(_text(c.value), getattr(c, "data_type", None) == "f") for c in cells]
    except ApiError:
        raise
    except Exception:  # malformed XML, a forbidden entity, a broken member: the file, not us
        raise Invalid("import.bad_file") from None
    finally:
        book.close()


def _is_formula(column: str | None, cell: Cell) -> bool:
    if cell.formula:
        return True
    if not cell.value.startswith(FORMULA_PREFIXES):
        return False
    # "+86 138 0013 8000" is a phone number, not a formula.
    return not (column == "phone" and normalise_mainland_mobile(cell.value) is not None)


def _kept(cells: list[Cell]) -> list[str]:
    values = [c.value[:KEPT_CELL] for c in cells]
    while values and not values[-1]:
        values.pop()
    return values


def _check_row(row_number: int, columns: list[str | None], cells: list[Cell]) -> CleanRow | dict:
    values: dict[str, str] = {}

    def rejected(code: str, column: str | None) -> dict:
        return {"row": row_number, "code": code, "field": column, "cells": _kept(cells)}

    for column, cell in zip(columns, cells):
        if column is None:
            continue
        if cell.value[:1] == "'" and cell.value[1:2] in EXPORT_DANGEROUS and not cell.formula:
            cell = Cell(cell.value[1:])  # neutralised by our own export or errors.csv: the text itself
        if _is_formula(column, cell):
            return rejected("import.formula", column)
        if text_problem(cell.value, multiline=column == "notes"):
            return rejected("import.control_character", column)
        values[column] = cell.value
    name = values.get("name", "")
    if not name:
        return rejected("import.name_required", "name")
    if len(name) > MAX_LENGTH["name"]:
        return rejected("import.name_too_long", "name")
    phone = None
    if values.get("phone"):
        phone = normalise_mainland_mobile(values["phone"])
        if phone is None:
            return rejected("import.bad_phone", "phone")
    for column, limit in MAX_LENGTH.items():
        if len(values.get(column) or "") > limit:
            return rejected("import.field_too_long", column)
    level = (values.get("level") or "").upper() or None
    if level not in (None, "A", "B", "C"):
        return rejected("import.bad_level", "level")
    tags = sorted({t.strip() for t in (values.get("tags") or "").replace("，", ",").split(",") if t.strip()})
    if len(tags) > 32 or any(len(t) > 32 or "$" in t or "." in t for t in tags):
        return rejected("import.bad_tag", "tags")
    fields = {k: (values.get(k) or None) for k in ("company", "email", "city", "notes")}
    fields["level"] = level
    return CleanRow(row=row_number, name=name, phone=phone, fields=fields, tags=tags, cells=_kept(cells))


def parse_upload(data: bytes, filename: str | None, limits: ParseLimits = ParseLimits()) -> ParsedUpload:
    """Header and row checks. Raises for problems with the whole file; rejects single rows.

    Every row of the sheet counts towards the limit, blank ones and gaps included, so the work is
    bounded by the limit whatever the file claims; blank rows are not imported."""
    is_xlsx = data[:4] == b"PK\x03\x04" or (filename or "").lower().endswith(".xlsx")
    rows = _xlsx_rows(data, limits) if is_xlsx else _csv_rows(data)
    parsed = ParsedUpload(format="xlsx" if is_xlsx else "csv", total=0)
    columns: list[str | None] | None = None
    for number, cells in enumerate(rows, start=1):
        if number > MAX_SHEET_ROWS:
            raise Invalid("import.too_many_rows", params={"limit": MAX_ROWS})
        if columns is None:
            if not any(c.value for c in cells):
                raise Invalid("import.bad_header", details=[detail("name", "missing", text="header_first_row")])
            columns = _header_map([c.value for c in cells])
            parsed.header = _kept(cells)
            continue
        if not any(c.value or c.formula for c in cells):
            continue  # blank lines are not imported (but they count towards the limit)
        parsed.total += 1
        checked = _check_row(number, columns, cells)
        if isinstance(checked, CleanRow):
            parsed.rows.append(checked)
        else:
            parsed.rejected.append(checked)
    if columns is None:
        raise Invalid("import.bad_header", details=[detail("name", "missing", text="file_empty")])
    return parsed


# ---------------------------------------------------------------- export helpers
def neutralise(value: Any) -> str:
    """A cell a spreadsheet would evaluate (``=``, ``+``, ``-``, ``@``, tab, CR) starts with ``'``."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(EXPORT_DANGEROUS) else text


def csv_bytes(rows: list[list[Any]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerows([[neutralise(v) for v in row] for row in rows])
    return buffer.getvalue().encode("utf-8")


def export_language(language: str) -> str:
    return language if language in EXPORT_HEADERS else "zh-CN"


def printable(value: Any) -> Any:
    return UNPRINTABLE.sub("", value) if isinstance(value, str) else value


def _local_time(value: Any, tz) -> str | None:
    if not isinstance(value, datetime):
        return None
    moment = as_utc(value)
    return (moment.astimezone(tz) if tz is not None else moment).strftime(EXPORT_TIME_FORMAT)


def _export_row(doc: dict, owners: dict[str, str], language: str, tz) -> list[Any]:
    """One lead as a person reads it: the owner's name, local times, the stage in words."""
    owner = doc.get("owner_id")
    stage: Any = doc.get("stage")  # as stored: a label when it is a known stage
    row = [
        doc["_id"], doc.get("name"), doc.get("company"), doc.get("phone_masked"), doc.get("city"), doc.get("level"),
        STAGE_LABELS[language].get(stage, stage), owners.get(owner, owner) if owner else None,
        ",".join(str(t) for t in doc.get("tags") or []),
        _local_time(doc.get("next_followup_at"), tz), _local_time(doc.get("created_at"), tz),
    ]
    return [printable(v) for v in row]


def _xlsx_file(rows: list[list[Any]], language: str = "zh-CN") -> bytes:
    from openpyxl import Workbook

    book = Workbook(write_only=True)
    sheet = book.create_sheet("leads")
    sheet.append(list(EXPORT_HEADERS[export_language(language)]))
    for row in rows:
        sheet.append([neutralise(v) for v in row])  # a string starting with "=" would become a formula
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


@dataclass
class _Progress:
    created: int = 0
    merged: int = 0
    rejected: list[dict] = field(default_factory=list)
    rows: set[int] = field(default_factory=set)  # rows whose outcome is known

    @property
    def done(self) -> int:
        return self.created + self.merged + len(self.rejected)

    def add(self, created: int, merged: int, rejected: list[dict], rows: Iterable[int] = ()) -> None:
        self.created += created
        self.merged += merged
        self.rejected.extend(rejected)
        self.rows.update(rows)
        self.rows.update(r["row"] for r in rejected)


def _oid(value: str) -> ObjectId:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise NotFound("import.not_found") from None


# ---------------------------------------------------------------- the service
class ImportService:
    def __init__(
        self, *, imports, import_rejects, leads_view, users_view, teams_view, clock: Clock, leads: LeadService, audit: AuditService,
        default_language: str = "zh-CN", tz=None, cipher: FieldCipher | None = None, limits: ParseLimits = ParseLimits(), parse_queue: int = 2,
        allocation=None,
    ) -> None:
        self._imports = imports
        self._allocation = allocation  # AllocationService: imports with allocate="rules"
        self._rejects = import_rejects  # rejected rows' cells (encrypted), for errors.csv
        self._cipher = cipher
        self._limits = limits
        # One parser thread of its own, and a short queue: uploads beyond it get 503 at once.
        self._parser = BoundedExecutor("import-parse", workers=1, queue=parse_queue)
        self._leads = leads_view  # read-only: phones already known, the export; LeadService writes leads
        self._users = users_view
        self._tz = tz  # business time zone: exported times are local
        self._teams = teams_view
        self._clock = clock
        self._lead_service = leads
        self._audit = audit
        self._language = default_language
        self._tasks: set[asyncio.Task] = set()

    # ------------------------------------------------------------ import
    async def start(self, actor: Actor, *, data: bytes, filename: str | None, team_id: str | None, allocate: str = "pool") -> str:
        """Check the file, record the import as queued and process it in the background. New leads
        go to the team's pool (``allocate="pool"``, the default) or through the team's allocation
        rules (``"rules"``: each chunk is allocated in bulk, as the sweep does)."""
        if allocate not in ("pool", "rules"):
            raise Invalid("request.invalid", details=[detail("allocate", "enum", text="import_allocate")])
        team = await self._import_team(actor, team_id)
        parsed = await self._parser.run(parse_upload, data, filename, self._limits)
        import_id = ObjectId()
        await self._imports.insert_one({
            "_id": import_id,
            "status": "queued",
            "format": parsed.format,
            "filename": (filename or "")[:200] or None,
            "header": parsed.header,
            "team_id": team,
            "allocate": allocate,
            "total": parsed.total,
            "done": 0,
            "created": 0,
            "merged": 0,
            "rejected": [],
            "created_by": actor.id,
            "created_at": self._clock.now(),
            "heartbeat_at": self._clock.now(),
            "finished_at": None,
        })
        task = asyncio.create_task(self._run(import_id, actor, team, parsed, allocate))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return str(import_id)

    async def wait_idle(self) -> None:
        """Wait for running imports (shutdown, tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _import_team(self, actor: Actor, team_id: str | None) -> str:
        if not actor.is_admin:
            if not actor.team_id or (team_id and team_id != actor.team_id):
                raise Forbidden("auth.forbidden")
            return actor.team_id
        if not team_id:
            raise Invalid("import.team_required", details=[detail("team_id", "required", text="import_team_required")])
        try:
            oid = ObjectId(team_id)
        except (InvalidId, TypeError):
            oid = None
        if oid is None or await self._teams.find_one({"_id": oid}, {"_id": 1}) is None:
            raise Invalid("team.not_found", details=[detail("team_id", "unknown", text="no_such_team")])
        return str(oid)

    def _reject(self, row: int, code: str, field: str | None) -> dict:
        return {"row": row, "code": code, "field": field, "message": ApiError(code).message(self._language)}

    async def _run(self, import_id: ObjectId, actor: Actor, team_id: str, parsed: ParsedUpload, allocate: str = "pool") -> None:
        # One task writes each import, so progress is written whole with $set (nx-27017 stores
        # sub-documents added with $push as JSON strings; see the report of this change).
        progress = _Progress()
        cells = {r.row: r.cells for r in parsed.rows} | {r["row"]: r["cells"] for r in parsed.rejected}
        try:
            pending = [self._reject(r["row"], r["code"], r["field"]) for r in parsed.rejected]
            unique: list[CleanRow] = []
            seen: set[tuple] = set()
            for row in parsed.rows:
                key = row.dedupe_key()
                if key in seen:
                    pending.append(self._reject(row.row, "import.duplicate_row", "phone" if row.phone else None))
                else:
                    seen.add(key)
                    unique.append(row)
            progress.add(0, 0, pending)
            await self._keep_rejected(import_id, pending, cells)
            await self._save(import_id, progress, "running")
            for start in range(0, len(unique), CHUNK):
                chunk = unique[start:start + CHUNK]
                created, merged, rejected = await self._write_chunk(import_id, actor, team_id, chunk, allocate)
                progress.add(created, merged, rejected, rows=[r.row for r in chunk])
                await self._keep_rejected(import_id, rejected, cells)
                await self._save(import_id, progress, "running")
            await self._save(import_id, progress, "done")
        except Exception:
            log.exception("import failed", extra={"import_id": str(import_id)})
            # Every row not yet accounted for is listed as aborted, so the report still adds up.
            rows = sorted(({r.row for r in parsed.rows} | {r["row"] for r in parsed.rejected}) - progress.rows)
            aborted = [self._reject(n, "import.aborted", None) for n in rows]
            progress.add(0, 0, aborted)
            try:
                await self._keep_rejected(import_id, aborted, cells)
                await self._save(import_id, progress, "failed")
            except Exception:  # pragma: no cover - the database is gone; the import stays "running"
                log.exception("could not record the failed import", extra={"import_id": str(import_id)})

    async def _keep_rejected(self, import_id: ObjectId, rejected: list[dict], cells: dict[int, list[str]]) -> None:
        """Each rejected row's cells as uploaded, encrypted (they hold phone numbers) and kept for
        ``REJECTED_DATA_TTL``, so errors.csv can give the row back to be fixed and uploaded again."""
        if not rejected or self._cipher is None:
            return
        expires = self._clock.now() + REJECTED_DATA_TTL
        docs = []
        for r in rejected:
            doc_id = f"{import_id}:{r['row']:06d}"
            docs.append({
                "_id": doc_id, "import_id": str(import_id), "row": r["row"],
                "cells": self._cipher.encrypt(json.dumps(cells.get(r["row"], []), ensure_ascii=False), doc_id),
                "expires_at": expires,
            })
        try:
            await self._rejects.insert_many(docs, ordered=False)
        except BulkWriteError as exc:  # a row kept already (only duplicates may fail here)
            if any(e.get("code") != 11000 for e in exc.details.get("writeErrors", [])):
                raise

    async def _save(self, import_id: ObjectId, progress: _Progress, status: str) -> None:
        update: dict[str, Any] = {"$set": {
            "status": status, "done": progress.done, "created": progress.created, "merged": progress.merged,
            "rejected": sorted(progress.rejected, key=lambda r: r["row"]),
        }}
        update["$currentDate"] = {"heartbeat_at": True, **({"finished_at": True} if status in ("done", "failed") else {})}
        await self._imports.update_one({"_id": import_id}, update)

    async def fail_stalled(self, now: datetime, stalled_after: timedelta = STALLED_AFTER) -> int:
        """Imports whose process died (no progress saved for a while) are marked failed, so nobody
        waits on them forever; ``done`` says how far they got."""
        result = await self._imports.update_many(
            {"status": {"$in": ["queued", "running"]}, "heartbeat_at": {"$lt": now - stalled_after}},
            {"$set": {"status": "failed", "failure": "the importing process stopped; import the remaining rows again"},
             "$currentDate": {"finished_at": True}},
        )
        return result.modified_count

    async def _write_chunk(self, import_id: ObjectId, actor: Actor, team_id: str, rows: list[CleanRow], allocate: str = "pool") -> tuple[int, int, list[dict]]:
        now = self._clock.now()
        source = {"kind": "import", "import_id": str(import_id)}
        docs: list[dict] = []
        row_of: dict[str, CleanRow] = {}
        for row in rows:
            lead_id = new_lead_id()
            doc: dict[str, Any] = {
                "_id": lead_id, "name": row.name, **row.fields, "tags": row.tags, "stage": "new",
                "owner_id": None, "team_id": team_id, "source": source, "pool": allocate == "pool", "customer_ids": [],
                "version": 1, "created_at": now, "updated_at": now, "created_by": actor.id,
            }
            if allocate == "rules":
                doc["awaiting_allocation"] = True
            if row.phone:
                doc.update(self._lead_service.seal_phone(row.phone, lead_id))
            docs.append(doc)
            row_of[lead_id] = row
        rejected: list[dict] = []
        merges: list[tuple[CleanRow, str]] = []
        # Phones that already belong to a lead: merge into it (when the importer may see it).
        by_bidx = {d["phone_bidx"]: d for d in docs if "phone_bidx" in d}
        existing = await self._existing(list(by_bidx))
        to_insert = []
        for doc in docs:
            hit = existing.get(doc["phone_bidx"]) if "phone_bidx" in doc else None
            if hit is None:
                to_insert.append(doc)
            elif self._visible(actor, hit):
                merges.append((row_of[doc["_id"]], hit["_id"]))
            else:
                rejected.append(self._reject(row_of[doc["_id"]].row, "import.phone_exists", "phone"))
        inserted = to_insert
        if to_insert:
            try:
                await self._lead_service.insert_imported(to_insert)
            except BulkWriteError as exc:
                failed = {e["index"]: e for e in exc.details.get("writeErrors", [])}
                inserted = [d for i, d in enumerate(to_insert) if i not in failed]
                raced = [to_insert[i] for i, e in failed.items() if e.get("code") == 11000 and to_insert[i].get("phone_bidx")]
                for index, error in failed.items():
                    if not (error.get("code") == 11000 and to_insert[index].get("phone_bidx")):
                        rejected.append(self._reject(row_of[to_insert[index]["_id"]].row, "import.write_failed", None))
                # Someone created a lead with the same phone since we looked: merge into it.
                winners = await self._existing([d["phone_bidx"] for d in raced])
                for doc in raced:
                    hit = winners.get(doc["phone_bidx"])
                    if hit is not None and self._visible(actor, hit):
                        merges.append((row_of[doc["_id"]], hit["_id"]))
                    else:
                        rejected.append(self._reject(row_of[doc["_id"]].row, "import.phone_exists", "phone"))
        events = [
            event(d["_id"], "created", actor, {"source": "import", "import_id": str(import_id), "row": row_of[d["_id"]].row}, at=now)
            for d in inserted
        ]
        if merges:
            await self._lead_service.merge_imported([(lead_id, row.tags) for row, lead_id in merges])
            events += [
                event(lead_id, "imported", actor, {"import_id": str(import_id), "row": row.row, "tags": row.tags}, at=now)
                for row, lead_id in merges
            ]
        await self._lead_service.add_events(events)
        if allocate == "rules" and inserted and self._allocation is not None:
            await self._allocation.allocate(inserted, now, SweepStats())  # the whole chunk at once, as the sweep does
        return len(inserted), len(merges), rejected

    async def _existing(self, bidxs: list[str]) -> dict[str, dict]:
        if not bidxs:
            return {}
        found = await self._leads.find({"phone_bidx": {"$in": bidxs}}, {"phone_bidx": 1, "team_id": 1, "owner_id": 1}).to_list(None)
        return {d["phone_bidx"]: d for d in found}

    @staticmethod
    def _visible(actor: Actor, lead: dict) -> bool:
        return all(lead.get(k) == v for k, v in LeadService.scope(actor).items())

    # ------------------------------------------------------------ reports
    @staticmethod
    def _scope(actor: Actor) -> dict:
        if actor.is_admin:
            return {}
        if actor.is_manager:
            return {"team_id": actor.team_id or "-"}
        return {"created_by": actor.id}

    async def get(self, actor: Actor, import_id: str, language: str) -> dict:
        doc = await self._imports.find_one({"_id": _oid(import_id), **self._scope(actor)})
        if doc is None:
            raise NotFound("import.not_found")
        rejected = doc.get("rejected") or []
        return {
            **doc,
            "id": str(doc["_id"]),
            "rejected_count": len(rejected),
            "rejected": [{**r, "message": ApiError(r["code"]).message(language)} for r in rejected[:REPORT_REJECTED]],
        }

    async def errors_csv(self, actor: Actor, import_id: str, language: str) -> bytes:
        doc = await self._imports.find_one({"_id": _oid(import_id), **self._scope(actor)}, {"rejected": 1, "header": 1})
        if doc is None:
            raise NotFound("import.not_found")
        kept: dict[int, list[str]] = {}
        async for item in self._rejects.find({"import_id": str(doc["_id"])}).sort("row", 1):
            kept[item["row"]] = json.loads(self._cipher.decrypt(item["cells"], item["_id"])) if self._cipher else []
        # The row number and the reason, then the row as uploaded under the file's own header.
        rows = [["row", "code", "field", "message", *(doc.get("header") or [])]]
        rows += [
            [r["row"], r["code"], r.get("field") or "", ApiError(r["code"]).message(language), *kept.get(r["row"], [])]
            for r in sorted(doc.get("rejected") or [], key=lambda r: r["row"])
        ]
        # The rows carry what was uploaded, phone numbers included: the download is on the record.
        await self._audit.record(actor, "import.errors_csv", target_type="import", target_id=str(doc["_id"]), details={"rows": len(rows) - 1})
        return "\ufeff".encode() + csv_bytes(rows)

    # ------------------------------------------------------------ export
    async def _export_docs(self, actor: Actor) -> AsyncIterator[list[dict]]:
        projection = {
            "name": 1, "company": 1, "phone_masked": 1, "city": 1, "level": 1, "stage": 1, "owner_id": 1, "tags": 1,
            "next_followup_at": 1, "created_at": 1,
        }
        cursor = self._leads.find(LeadService.scope(actor), projection).sort("_id", 1).limit(EXPORT_MAX_ROWS).batch_size(EXPORT_BATCH)
        batch: list[dict] = []
        async for doc in cursor:
            batch.append(doc)
            if len(batch) >= EXPORT_BATCH:
                yield batch
                batch = []
        if batch:
            yield batch

    async def _export_rows(self, actor: Actor, language: str) -> AsyncIterator[list[list[Any]]]:
        """Rows in batches; the owners' names are read once per batch for owners not seen yet."""
        owners: dict[str, str] = {}
        async for batch in self._export_docs(actor):
            unseen = {d["owner_id"] for d in batch if d.get("owner_id") and d["owner_id"] not in owners}
            oids = [ObjectId(i) for i in unseen if ObjectId.is_valid(i)]
            if oids:
                for user in await self._users.find({"_id": {"$in": oids}}, {"name": 1, "username": 1}).to_list(None):
                    owners[str(user["_id"])] = user.get("name") or user.get("username") or str(user["_id"])
            yield [_export_row(d, owners, language, self._tz) for d in batch]

    async def export_csv(self, actor: Actor, language: str | None = None) -> AsyncGenerator[bytes, None]:
        """UTF-8 CSV with a BOM (Excel), in batches; audited with the row count when it ends."""
        language = export_language(language or self._language)
        rows = 0
        outcome = "interrupted"
        try:
            yield "\ufeff".encode() + csv_bytes([list(EXPORT_HEADERS[language])])
            async for batch in self._export_rows(actor, language):
                rows += len(batch)
                yield csv_bytes(batch)
            outcome = "ok"
        finally:
            await self._audit.record(actor, "lead.export", target_type="lead", target_id="*", outcome=outcome, details={"format": "csv", "rows": rows})

    async def export_xlsx(self, actor: Actor, language: str | None = None) -> bytes:
        language = export_language(language or self._language)
        rows: list[list[Any]] = []
        async for batch in self._export_rows(actor, language):
            rows.extend(batch)
        data = await asyncio.to_thread(_xlsx_file, rows, language)
        await self._audit.record(actor, "lead.export", target_type="lead", target_id="*", details={"format": "xlsx", "rows": len(rows)})
        return data
