"""Capture decides on allocation itself: whoever submits a form through ``CaptureService`` (the
public endpoint, or any other caller) gets the new lead allocated right after the write when
``allocate_on_capture`` is on, without the caller having to remember to ask for it."""

from __future__ import annotations

import asyncio

import pytest

from allocation_kit import capture, make_form, make_rule, owners


@pytest.fixture
def settings_overrides():
    return {"allocate_on_capture": True}


async def owner_soon(raw_db, lead_id: str) -> str | None:
    for _ in range(40):  # allocation runs in the background: usually well within a second
        owner = owners(raw_db, [lead_id])[lead_id]
        if owner:
            return owner
        await asyncio.sleep(0.05)
    return None


@pytest.mark.gen_test
async def test_a_lead_captured_through_the_service_is_allocated_without_the_caller_asking(ctx, people, raw_db):
    team = await people.team()
    rep = await people.rep(name="张三")
    await make_rule(ctx, team, [rep])
    await make_form(ctx, team)

    [lead_id] = await capture(ctx, "north-expo", 1)

    assert await owner_soon(raw_db, lead_id) == rep.id, "the rule's only member owns the new lead"
    lead = raw_db.leads.find_one({"_id": lead_id})
    assert lead["assignment"]["strategy"] == "round_robin" and not lead.get("awaiting_allocation")
