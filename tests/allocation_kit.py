"""Shared helpers for the allocation and reclaim tests (tests/services/test_allocation.py,
tests/handlers/test_allocation_rules.py, tests/jobs/test_reclaim.py). Kept out of conftest.py.
"""

from __future__ import annotations

import itertools
from collections import Counter
from datetime import datetime, timedelta, timezone

from bson import ObjectId

from server.actor import Actor
from server.services.lead_store import activity_ms
from server.schemas.allocation import RuleCreate
from server.schemas.forms import FormCreate, SubmissionIn

ADMIN = Actor(id="test-admin", role="admin", name="test")
RULES = "/api/v1/allocation-rules"

_phones = itertools.count(1)
_ips = itertools.count(1)

# A Monday, 10:00 in Asia/Shanghai: inside default working hours (Mon-Fri 09:00-18:00).
MONDAY_10 = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)
SATURDAY_10 = datetime(2026, 11, 28, 2, 0, tzinfo=timezone.utc)


def unique_phone() -> str:
    """A fresh mainland mobile number per call (136 + 8 digits; other kits use 137 and 139)."""
    return f"136{next(_phones):08d}"


async def make_form(ctx, team_id: str, slug: str = "north-expo", tags: tuple[str, ...] = ("north",)) -> dict:
    return await ctx.forms.create(ADMIN, FormCreate.model_validate({
        "slug": slug, "title": f"表单 {slug}", "team_id": team_id, "default_tags": list(tags),
        "fields": [
            {"key": "name", "label": "姓名", "type": "text", "required": True, "maps_to": "name"},
            {"key": "mobile", "label": "手机", "type": "phone", "required": True},
        ],
    }))


async def capture(ctx, slug: str, n: int, prefix: str = "客户") -> list[str]:
    """``n`` form submissions through the capture service (the real path a customer's form takes);
    each lead is created waiting for allocation. Returns lead ids in creation order."""
    ids = []
    for i in range(n):
        ip = next(_ips)
        done = await ctx.capture.submit(
            slug, SubmissionIn(answers={"name": f"{prefix}{i}", "mobile": unique_phone()}),
            client_ip=f"10.{ip // 65536 % 256}.{ip // 256 % 256}.{ip % 256}", customer=None,
            idempotency_key=None, fingerprint=f"fp-{ip}",
        )
        ids.append(done.lead_id)  # the server's own view: the submitter's receipt carries no lead id
    return ids


def insert_waiting(raw_db, team_id: str, n: int, tags: tuple[str, ...] = ("north",), start: datetime | None = None) -> list[str]:
    """Volume setup only (1,000+ leads): form submissions one by one are too slow for these counts,
    so the documents a form capture makes are inserted in bulk, with exactly the fields allocation
    reads (``awaiting_allocation``, ``team_id``, ``tags``, ``stage``, ``owner_id``, ``created_at``)."""
    start = start or datetime.now(timezone.utc)
    docs = []
    for i in range(n):
        at = start + timedelta(milliseconds=i)
        docs.append({
            "_id": str(ObjectId()), "name": f"批量{i}", "tags": list(tags), "stage": "new", "owner_id": None,
            "team_id": team_id, "source": {"kind": "form", "form_slug": "bulk"}, "pool": False,
            "awaiting_allocation": True, "customer_ids": [], "version": 1, "created_at": at, "updated_at": at, "updated_ms": activity_ms(at),
            "created_by": "public",
        })
    raw_db.leads.insert_many(docs)
    return [d["_id"] for d in docs]


async def make_rule(ctx, team_id: str, members: list, strategy: str = "round_robin", **fields) -> dict:
    body = {"name": fields.pop("name", "华北大客户"), "team_id": team_id, "strategy": strategy,
            "members": [m if isinstance(m, str) else m.id for m in members], "match": fields.pop("match", {"tags_any": ["north"]}), **fields}
    return await ctx.allocation.create_rule(ADMIN, RuleCreate.model_validate(body))


def owners(raw_db, lead_ids: list[str]) -> dict[str, str | None]:
    return {d["_id"]: d.get("owner_id") for d in raw_db.leads.find({"_id": {"$in": lead_ids}}, {"owner_id": 1})}


def counts(raw_db, lead_ids: list[str], people) -> list[int]:
    per = Counter(owners(raw_db, lead_ids).values())
    return [per.get(p.id, 0) for p in people]


def in_order(raw_db, lead_ids: list[str]) -> list[dict]:
    """The leads in the order allocation sees them (oldest first)."""
    return list(raw_db.leads.find({"_id": {"$in": lead_ids}}).sort([("created_at", 1), ("_id", 1)]))
