import pytest
from datetime import datetime, timezone
from jobs.registry import load_jobs, run_job
from server.schemas.allocation import RuleCreate

FORM = {"slug": "f1", "title": "T", "fields": [{"key": "name", "label": "n", "type": "text", "required": True, "maps_to": "name"}, {"key": "mobile", "label": "m", "type": "phone", "required": True}], "default_tags": ["north"]}


@pytest.mark.gen_test
async def test_round_robin(api, people, ctx, raw_db, recorder):
    load_jobs()
    admin = await people.admin()
    team = await people.team()
    reps = [await people.rep() for _ in range(3)]
    r = await api.post("/api/v1/forms", json={**FORM, "team_id": team}, token=admin.token)
    assert r.status == 201
    r = await api.post("/api/v1/allocation-rules", json={"name": "华北", "team_id": team, "strategy": "round_robin", "members": [p.id for p in reps], "match": {"tags_any": ["north"]}}, token=admin.token)
    assert r.status == 201, r.body
    rule = r.json
    r = await api.post(f"/api/v1/allocation-rules/{rule['id']}/preview", json={"tags": ["north"]}, token=admin.token)
    assert r.status == 200 and r.json["owner_id"] == reps[0].id, r.body
    for i in range(7):
        r = await api.post("/api/v1/public/forms/f1/submissions", json={"answers": {"name": f"n{i}", "mobile": f"1380000{i:04d}"}})
        assert r.status == 201
    start = len(recorder.commands)
    result = await run_job(ctx, "allocate_new_leads", datetime.now(timezone.utc))
    print(result, len(recorder.commands) - start)
    assert result["assigned"] == 7
    counts = sorted(raw_db.leads.count_documents({"owner_id": p.id}) for p in reps)
    assert counts == [2, 2, 3]
    lead = raw_db.leads.find_one({"owner_id": reps[1].id})
    assert "round-robin turn 2 of 3" in lead["assignment"]["reason"], lead["assignment"]
    assert raw_db.notifications.count_documents({"kind": "lead_assigned"}) == 7
    u = raw_db.users.find_one({"username": reps[0].user["username"]})
    assert u["open_leads"] == 3
    result = await run_job(ctx, "allocate_new_leads", datetime.now(timezone.utc))
    assert result["assigned"] == 0
