import asyncio
import pytest


@pytest.mark.gen_test
async def test_rep_workflow(api, people, recorder):
    rep = await people.rep()
    other = await people.rep()
    mgr = await people.manager()
    r = await api.post("/api/v1/leads", json={"name": "王总", "phone": "13900001111", "company": "华为"}, token=rep.token, headers={"Idempotency-Key": "lead-key-0001"})
    assert r.status == 201, r.body
    lead = r.json
    assert lead["phone"] == "139****1111" and lead["owner_id"] == rep.id
    with recorder.counting() as cmds:
        r = await api.get("/api/v1/leads?q=王", token=rep.token)
    assert r.status == 200 and len(r.json["items"]) == 1 and len(cmds) <= 2, (r.body, cmds)
    r = await api.get("/api/v1/leads", token=other.token)
    assert r.json["items"] == []
    r = await api.get(f"/api/v1/leads/{lead['id']}", token=other.token)
    assert r.status == 404
    with recorder.counting() as cmds:
        r = await api.post(f"/api/v1/leads/{lead['id']}/followups", json={"kind": "visit", "content": "拜访", "location": {"lat": 39.9, "lng": 116.4}}, token=rep.token)
    assert r.status == 201 and len(cmds) <= 5, (r.body, cmds)
    r = await api.get(f"/api/v1/leads/{lead['id']}", token=rep.token)
    assert r.json["stage"] == "contacted"
    r = await api.post(f"/api/v1/leads/{lead['id']}/stage", json={"to": "customer"}, token=rep.token)
    assert r.status == 409 and r.error_code == "lead.invalid_transition", r.body
    r = await api.post(f"/api/v1/leads/{lead['id']}/release", json={"reason": "不合适"}, token=rep.token)
    assert r.status == 200, r.body
    r = await api.get("/api/v1/pool", token=other.token)
    assert [x["id"] for x in r.json["items"]] == [lead["id"]]
    with recorder.counting() as cmds:
        results = await asyncio.gather(*[api.post(f"/api/v1/leads/{lead['id']}/claim", token=t) for t in (other.token, mgr.token)])
    assert sorted(x.status for x in results) == [200, 409], [x.body for x in results]
    r = await api.post(f"/api/v1/leads/{lead['id']}/claim", token=rep.token)
    assert r.status in (404, 409)
    r = await api.get(f"/api/v1/leads/{lead['id']}/timeline", token=mgr.token)
    assert [e["kind"] for e in r.json["items"]][:3] == ["claimed", "released", "stage_changed"], r.body
