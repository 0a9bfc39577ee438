"""Attachments: the upload's answer, how an attachment shows on what it is attached to, and the
``attachments`` list other request bodies take (upload ids, at most 9)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from server.schemas.common import IsoDatetime, OutModel, QueryModel, SingleLine
from server.schemas.users import OBJECT_ID_PATTERN

AttachmentType = Literal["image/jpeg", "image/png", "image/webp", "image/gif", "application/pdf"]
UploadId = Annotated[str, Field(pattern=OBJECT_ID_PATTERN, description="An id answered by POST /uploads")]
# The field other bodies take; the service checks each id (422 upload.unknown naming attachments.N).
Attachments = Annotated[list[UploadId], Field(max_length=9, description="Ids of your uploads (POST /uploads), at most 9")]


class UploadQuery(QueryModel):
    name: SingleLine | None = Field(None, max_length=255, description="The file's name, when the body is the file itself (not multipart)")


class AttachmentOut(OutModel):
    id: str
    name: str
    content_type: AttachmentType
    size: int


class UploadOut(AttachmentOut):
    sha256: str
    created_at: IsoDatetime
