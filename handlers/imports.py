"""Spreadsheet import of old contacts (managers and admins) and lead export (everyone, in scope).

The import is the one endpoint whose body may be large: its operation declares
``body_limit="upload"``, so the base handler streams it against ``MPCRM_UPLOAD_BODY_LIMIT`` instead
of the JSON cap (an over-size upload is read to the end and discarded, never buffered, so the client
receives the 413 envelope; one declared far larger is answered at once).
"""

from __future__ import annotations

import urllib.parse
from contextlib import aclosing

from tornado.httputil import HTTPInputError, parse_body_arguments

from handlers.base import ApiHandler, operation
from server.actor import STAFF_ROLES
from server.errors import ApiError, Invalid, detail
from server.schemas.imports import ExportQuery, ImportAccepted, ImportOut
from server.services.imports import XLSX_TYPE

MANAGERS = ("manager", "admin")


def attachment(name: str) -> str:
    return f"attachment; filename=\"{name}\"; filename*=UTF-8''{urllib.parse.quote(name)}"


class LeadImportHandler(ApiHandler):
    @operation(
        "Import old contacts from a CSV or XLSX file (multipart field `file`; admins choose `team_id`; `allocate`: pool (default) or rules)",
        roles=MANAGERS, response=ImportAccepted, status=202, tags=("imports",),
        extra_responses={415: "Not multipart/form-data", 503: "The import queue is full; retry later"},
        body_limit="upload",
    )
    async def post(self) -> None:
        content_type = self.request.headers.get("Content-Type", "")
        if content_type.split(";")[0].strip().lower() != "multipart/form-data":
            raise ApiError("import.multipart_required", 415)
        arguments: dict = {}
        files: dict = {}
        try:
            parse_body_arguments(content_type, self.request.body, arguments, files, self.request.headers)
        except (HTTPInputError, ValueError):
            raise ApiError("import.bad_multipart", 400) from None
        self.request.body = b""  # the file lives on in `files` only
        uploads = files.get("file") or []
        if len(uploads) != 1 or not uploads[0].body:
            raise Invalid("import.file_required", details=[detail("file", "required", text="file_required")])
        team_values = arguments.get("team_id") or [b""]
        try:
            team_id = team_values[0].decode("utf-8").strip() or None
        except UnicodeDecodeError:
            team_id = "-"
        allocate_values = arguments.get("allocate") or [b"pool"]
        try:
            allocate = allocate_values[0].decode("utf-8").strip() or "pool"
        except UnicodeDecodeError:
            allocate = "-"
        import_id = await self.ctx.imports.start(self.actor, data=uploads[0].body, filename=uploads[0].filename, team_id=team_id, allocate=allocate)
        self.set_header("Location", f"/api/v1/imports/{import_id}")
        self.write_model(ImportAccepted, {"import_id": import_id}, 202)


class ImportHandler(ApiHandler):
    @operation("An import's progress and rejected rows (the creator's team, or admins)", roles=MANAGERS, response=ImportOut, tags=("imports",))
    async def get(self, import_id: str) -> None:
        self.write_model(ImportOut, await self.ctx.imports.get(self.actor, import_id, self.language))


class ImportErrorsHandler(ApiHandler):
    @operation("An import's rejected rows as CSV (row, code, field, message)", roles=MANAGERS, tags=("imports",))
    async def get(self, import_id: str) -> None:
        data = await self.ctx.imports.errors_csv(self.actor, import_id, self.language)
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", attachment(f"import-{import_id[:24]}-errors.csv"))
        self.finish(data)


class LeadExportHandler(ApiHandler):
    @operation("Export the leads in your scope as CSV or XLSX: headers and stages in your Accept-Language, owner names, local times (phones masked; audited)", roles=STAFF_ROLES, query=ExportQuery, tags=("leads",))
    async def get(self) -> None:
        query = self.parse_query(ExportQuery)
        stamp = self.ctx.clock.now().astimezone(self.ctx.settings.tz).strftime("%Y%m%d-%H%M%S")
        if query.format == "xlsx":
            data = await self.ctx.imports.export_xlsx(self.actor, self.language)
            self.set_header("Content-Type", XLSX_TYPE)
            self.set_header("Content-Disposition", attachment(f"leads-{stamp}.xlsx"))
            self.finish(data)
            return
        self.set_header("Content-Type", "text/csv; charset=utf-8")
        self.set_header("Content-Disposition", attachment(f"leads-{stamp}.csv"))
        async with aclosing(self.ctx.imports.export_csv(self.actor, self.language)) as chunks:
            async for chunk in chunks:
                self.write(chunk)
                await self.flush()
        self.finish()


routes = [
    (r"/api/v1/leads/import", LeadImportHandler),
    (r"/api/v1/leads/export", LeadExportHandler),
    (r"/api/v1/imports/(?P<import_id>[^/]+)", ImportHandler),
    (r"/api/v1/imports/(?P<import_id>[^/]+)/errors\.csv", ImportErrorsHandler),
]
