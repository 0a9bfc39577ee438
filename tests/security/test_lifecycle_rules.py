"""Probes of the lifecycle rules (issue 17, items 5-7): the win-back list never widens a caller's
scope, a reason code is a plain catalogue code (operator keys and odd text refused, nothing
written), and a reason note with control characters is refused."""

from __future__ import annotations

import pytest

from leads_kit import LEADS, make_lead, walk


async def move(api, person, lead_id: str, to: str, **body):
    r = await api.get(f"{LEADS}/{lead_id}", token=person.token)
    return await api.post(f"{LEADS}/{lead_id}/stage", json={"to": to, "version": r.json["version"], **body}, token=person.token)


async def came_back(api, ctx, rep) -> str:
    lead = await make_lead(api, rep)
    for to in ("contacted", "qualified", "customer", "at_risk"):
        assert (await move(api, rep, lead["id"], to)).status == 200
    assert (await move(api, rep, lead["id"], "churned", reason_code="price")).status == 200
    assert await ctx.leads.note_return(lead["id"], "contract", ctx.clock.now())
    return lead["id"]


@pytest.mark.gen_test(timeout=60)
async def test_a_rep_sees_only_their_own_winback_leads(api, people, ctx):
    a, b = await people.rep(), await people.rep()
    outsider = await people.manager(team="华南销售部")
    mine, theirs = await came_back(api, ctx, a), await came_back(api, ctx, b)
    assert [x["id"] for x in await walk(api, a.token, f"{LEADS}?winback=true")] == [mine]
    r = await api.get(f"{LEADS}?winback=true&owner_id={b.id}", token=a.token)
    assert r.status == 200 and r.json["items"] == []
    manager = await people.manager()
    assert {x["id"] for x in await walk(api, manager.token, f"{LEADS}?winback=true")} == {mine, theirs}
    r = await api.get(f"{LEADS}?winback=true", token=outsider.token)
    assert r.status == 200 and r.json["items"] == []
    r = await api.get(f"{LEADS}?winback=maybe", token=a.token)
    assert r.status == 422


@pytest.mark.gen_test
async def test_reason_codes_with_operator_keys_or_odd_text_and_notes_with_control_characters(api, people, raw_db):
    rep = await people.rep()
    lead = await make_lead(api, rep)
    for bad in ({"$ne": None}, {"$gt": ""}, ["price"], "$where", "price\u0000", "PRICE", "价格", "x" * 33):
        r = await move(api, rep, lead["id"], "lost", reason_code=bad)
        assert r.status == 422 and any(str(d["field"]).startswith("reason_code") for d in r.json["error"]["details"]), (bad, r.body)
    for note in ("a\u0000b", "\u001b[31mred", "x\u0085y"):
        r = await move(api, rep, lead["id"], "lost", reason_code="other", reason_note=note)
        assert r.status == 422 and "reason_note" in [d["field"] for d in r.json["error"]["details"]], (note, r.body)
    stored = raw_db.leads.find_one({"_id": lead["id"]})
    assert stored["stage"] == "new" and stored["version"] == 1
    assert raw_db.lead_events.count_documents({"lead_id": lead["id"], "kind": "stage_changed"}) == 0
