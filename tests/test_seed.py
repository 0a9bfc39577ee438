"""``python -m server seed-demo`` (server/seed.py): what a newcomer sees after seeding — the demo
reps log in with the demo password and find their leads, followed up, one in the team's pool."""

from __future__ import annotations

import pytest

from server.seed import DEMO_LEADS, DEMO_PASSWORD, seed_demo

LOGIN = "/api/v1/auth/password-login"


async def login(api, username: str) -> str:
    r = await api.post(LOGIN, json={"username": username, "password": DEMO_PASSWORD})
    assert r.status == 200, r.body
    return r.json["access_token"]


@pytest.mark.gen_test(timeout=60)
async def test_seeded_reps_find_their_demo_leads_and_a_second_run_adds_nothing(api, ctx, raw_db):
    first = await seed_demo(ctx)
    assert first["leads"] == {"created": len(DEMO_LEADS), "existing": 0}
    again = await seed_demo(ctx)
    assert again["leads"] == {"created": 0, "existing": len(DEMO_LEADS)} and again["users"] == first["users"]
    assert raw_db.leads.count_documents({}) == len(DEMO_LEADS)

    li = await login(api, "li.rep")
    r = await api.get("/api/v1/leads", token=li)
    assert r.status == 200 and sorted(lead["name"] for lead in r.json["items"]) == ["刘女士", "王先生"]
    followed = next(lead for lead in r.json["items"] if lead["name"] == "王先生")
    assert followed["stage"] == "contacted" and followed["next_followup_at"] and followed["phone"] == "139****0001"

    han = await login(api, "han.rep")
    r = await api.get("/api/v1/pool", token=han)
    assert r.status == 200 and [lead["name"] for lead in r.json["items"]] == ["郑女士"]

    manager = await login(api, "zhao.manager")
    r = await api.get("/api/v1/leads", token=manager)
    assert sorted(lead["name"] for lead in r.json["items"]) == ["吴先生", "周女士"]
    r = await api.get("/api/v1/tasks", token=await login(api, "sun.rep"))
    assert [t["kind"] for t in r.json["items"]] == ["followup"]
