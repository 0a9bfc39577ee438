"""Offline sync: the query and the page a phone receives."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from server.schemas.common import OutModel, QueryModel
from server.schemas.leads import FollowupOut, LeadOut

SYNC_DEFAULT_LIMIT = 100
SYNC_MAX_LIMIT = 500


class SyncQuery(QueryModel):
    since: str | None = Field(None, max_length=1024, description="The cursor of your last sync page; omit for a full snapshot")
    limit: int = Field(SYNC_DEFAULT_LIMIT, ge=1, le=SYNC_MAX_LIMIT, description="At most this many leads, follow-ups and deletions each per page")


class SyncOut(OutModel):
    """Apply a page in this order: drop ``deleted`` leads (and their follow-ups), then upsert
    ``leads`` and ``followups`` by id, keeping the higher ``version``/``updated_at``. Repeats are
    normal (the cursor overlaps by a few seconds) and harmless. Keep calling with ``cursor`` while
    ``has_more``; store the last ``cursor`` for the next sync."""

    leads: list[LeadOut]
    followups: list[FollowupOut]
    tasks: list[dict[str, Any]] = []
    deleted: list[str] = Field(description="Ids of leads that left your scope: remove them locally")
    cursor: str
    has_more: bool
