"""Shared helpers for the lead / follow-up / pool tests (tests/handlers/test_leads.py,
test_followups.py, test_pool.py). Kept out of conftest.py so other modules' fixtures are untouched.
"""

from __future__ import annotations

import itertools
import uuid
from typing import Any

LEADS = "/api/v1/leads"
POOL = "/api/v1/pool"

_counter = itertools.count(1)


def unique_phone() -> str:
    """A fresh valid mainland mobile number per call (137 + 8 digits; other kits use 139)."""
    return f"137{next(_counter):08d}"


def new_uuid() -> str:
    return str(uuid.uuid4())


async def make_lead(api, person, **fields: Any) -> dict:
    """A lead captured by ``person`` (a rep or manager owns it); returns the 201 body."""
    body = {"name": fields.pop("name", f"客户{next(_counter)}"), **fields}
    r = await api.post(LEADS, json=body, token=person.token)
    assert r.status == 201, r.body
    return r.json


async def release(api, person, lead_id: str, reason: str = "联系不上") -> dict:
    r = await api.post(f"{LEADS}/{lead_id}/release", json={"reason": reason}, token=person.token)
    assert r.status == 200, r.body
    return r.json


async def pool_lead(api, person, **fields: Any) -> dict:
    """A lead in ``person``'s team pool: captured by them, then released."""
    lead = await make_lead(api, person, **fields)
    return await release(api, person, lead["id"])


async def open_leads(api, admin, user_id: str) -> int:
    r = await api.get(f"/api/v1/users/{user_id}", token=admin.token)
    assert r.status == 200, r.body
    return r.json["open_leads"]


async def walk(api, token: str, path: str) -> list[dict]:
    """Every item of a cursor-paginated list, page by page."""
    items: list[dict] = []
    sep = "&" if "?" in path else "?"
    cursor = None
    for _ in range(50):
        url = path + (f"{sep}cursor={cursor}" if cursor else "")
        r = await api.get(url, token=token)
        assert r.status == 200, r.body
        items.extend(r.json["items"])
        cursor = r.json["next_cursor"]
        if not cursor:
            return items
    raise AssertionError("pagination did not end")
