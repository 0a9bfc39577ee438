import pytest

FORM = {
    "slug": "expo-2026", "title": "展会报名", "team_id": None,
    "fields": [
        {"key": "name", "label": "姓名", "type": "text", "required": True, "maps_to": "name"},
        {"key": "mobile", "label": "手机", "type": "phone", "required": True},
        {"key": "interest", "label": "意向", "type": "select", "options": [{"value": "crm", "label": "CRM", "tag": "crm"}]},
    ],
    "default_tags": ["expo"],
}

@pytest.mark.gen_test
async def test_submit_twice_one_lead(api, people, recorder, raw_db):
    admin = await people.admin()
    team = await people.team()
    r = await api.post("/api/v1/forms", json={**FORM, "team_id": team}, token=admin.token)
    assert r.status == 201, r.body
    with recorder.counting() as cmds:
        r = await api.get("/api/v1/public/forms/expo-2026")
    assert r.status == 200 and len(cmds) <= 1, (r.body, cmds)
    body = {"answers": {"name": "张三", "mobile": "+86 138-0013-8000", "interest": "crm"}}
    with recorder.counting() as cmds:
        r1 = await api.post("/api/v1/public/forms/expo-2026/submissions", json=body, headers={"Idempotency-Key": "k-000000001"})
    assert r1.status == 201, r1.body
    print(cmds)
    assert len(cmds) <= 6
    r2 = await api.post("/api/v1/public/forms/expo-2026/submissions", json={"answers": {"name": "张三", "mobile": "13800138000"}})
    assert r2.status == 201, r2.body
    assert r2.json["lead_id"] == r1.json["lead_id"]
    with recorder.counting() as cmds:
        r3 = await api.post("/api/v1/public/forms/expo-2026/submissions", json=body, headers={"Idempotency-Key": "k-000000001"})
    print(cmds)
    assert r3.json == r1.json
    assert raw_db.leads.count_documents({}) == 1
    assert raw_db.lead_events.count_documents({}) == 2
    lead = raw_db.leads.find_one()
    assert lead["tags"] == ["crm", "expo"]
    assert "13800138000" not in str(lead)
