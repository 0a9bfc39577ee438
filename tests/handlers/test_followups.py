"""Follow-ups from the road: calls, visits with a check-in, WeChat chats, meetings and notes."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from leads_kit import LEADS, make_lead, new_uuid


def _iso(days: float) -> str:
    return (datetime.now(timezone.utc) + timedelta(days=days)).isoformat()


def _at(value: str) -> datetime:
    return datetime.fromisoformat(value)


@pytest.mark.gen_test
@pytest.mark.parametrize("kind", ["call", "visit", "wechat", "meeting", "note"])
async def test_each_kind_is_logged(api, people, kind):
    rep = await people.rep()
    lead = await make_lead(api, rep, name="各种跟进")
    body = {"kind": kind, "content": f"{kind} 记录"}
    if kind == "visit":
        body["location"] = {"lat": 31.23, "lng": 121.47, "address": "上海市黄浦区"}
    r = await api.post(f"{LEADS}/{lead['id']}/followups", json=body, token=rep.token)
    assert r.status == 201, r.body
    assert r.json["kind"] == kind and r.json["lead_id"] == lead["id"] and r.json["author_id"] == rep.id
    if kind == "visit":
        assert r.json["location"]["address"] == "上海市黄浦区"
    r = await api.get(f"{LEADS}/{lead['id']}/timeline", token=rep.token)
    followups = [e for e in r.json["items"] if e["kind"] == "followup"]
    assert len(followups) == 1 and followups[0]["data"]["kind"] == kind


@pytest.mark.gen_test
@pytest.mark.parametrize("body,field", [
    ({"kind": "visit", "content": "到访"}, "location"),
    ({"kind": "visit", "content": "到访", "location": {"lat": 91, "lng": 116.4}}, "location.lat"),
    ({"kind": "visit", "content": "到访", "location": {"lat": 39.9, "lng": 181}}, "location.lng"),
    ({"kind": "call", "content": "电话", "next_followup_at": "2099-01-01T09:00:00+08:00"}, "next_followup_at"),
    ({"kind": "call", "content": "电话", "next_followup_at": "2026-01-01T09:00:00"}, "next_followup_at"),
    ({"kind": "fax", "content": "传真"}, "kind"),
    ({"kind": "call", "content": ""}, "content"),
    ({"kind": "call", "content": "电话", "lead_id": "0123456789abcdef01234567"}, "lead_id"),
])
async def test_bad_followups_are_refused_and_change_nothing(api, people, raw_db, body, field):
    rep = await people.rep()
    lead = await make_lead(api, rep, name="坏输入")
    before = raw_db.leads.find_one({"_id": lead["id"]})
    r = await api.post(f"{LEADS}/{lead['id']}/followups", json=body, token=rep.token)
    assert r.status == 422, r.body
    assert any(field in (d["field"] or "") for d in r.json["error"]["details"]), r.json
    assert raw_db.lead_events.count_documents({"kind": "followup"}) == 0
    assert raw_db.leads.find_one({"_id": lead["id"]}) == before


@pytest.mark.gen_test
async def test_followup_updates_the_lead_and_moves_new_to_contacted(api, people, recorder):
    rep = await people.rep()
    first = await make_lead(api, rep, name="早录的")
    second = await make_lead(api, rep, name="晚录的")
    next_at = _iso(3)
    started = datetime.now(timezone.utc) - timedelta(seconds=1)
    with recorder.counting() as cmds:
        r = await api.post(
            f"{LEADS}/{first['id']}/followups",
            json={"kind": "visit", "content": "上门拜访，聊了报价", "location": {"lat": 39.9, "lng": 116.4}, "next_followup_at": next_at},
            token=rep.token,
        )
    assert r.status == 201, r.body
    assert len(cmds) <= 5, cmds
    r = await api.get(f"{LEADS}/{first['id']}", token=rep.token)
    lead = r.json
    assert lead["stage"] == "contacted"
    assert _at(lead["last_activity_at"]) >= started
    assert abs(_at(lead["next_followup_at"]) - _at(next_at)) < timedelta(milliseconds=2)
    assert lead["version"] == 2
    # the lead just worked on is at the top of the list again
    r = await api.get(LEADS, token=rep.token)
    assert [x["id"] for x in r.json["items"]] == [first["id"], second["id"]]
    r = await api.get(f"{LEADS}?sort=next_followup", token=rep.token)
    assert [x["id"] for x in r.json["items"]] == [first["id"]]
    r = await api.get(f"{LEADS}/{first['id']}/timeline", token=rep.token)
    kinds = [e["kind"] for e in r.json["items"]]
    assert kinds == ["stage_changed", "followup", "created"], kinds
    change = r.json["items"][0]
    assert change["data"]["from"] == "new" and change["data"]["to"] == "contacted" and change["actor_id"] == rep.id
    # a second follow-up does not move the stage again
    r = await api.post(f"{LEADS}/{first['id']}/followups", json={"kind": "call", "content": "回访"}, token=rep.token)
    assert r.status == 201
    r = await api.get(f"{LEADS}/{first['id']}/timeline", token=rep.token)
    assert [e["kind"] for e in r.json["items"]] == ["followup", "stage_changed", "followup", "created"]
    r = await api.get(f"{LEADS}/{first['id']}", token=rep.token)
    assert r.json["stage"] == "contacted"
    assert abs(_at(r.json["next_followup_at"]) - _at(next_at)) < timedelta(milliseconds=2)  # kept


@pytest.mark.gen_test
async def test_followup_sent_twice_with_its_id_is_logged_once(api, people, raw_db):
    rep = await people.rep()
    lead = await make_lead(api, rep, name="离线跟进")
    fid = new_uuid()
    body = {"id": fid, "kind": "call", "content": "电梯里打的电话"}
    first = await api.post(f"{LEADS}/{lead['id']}/followups", json=body, token=rep.token)
    again = await api.post(f"{LEADS}/{lead['id']}/followups", json=body, token=rep.token)
    assert first.status == 201 and again.status == 201, (first.body, again.body)
    assert first.json["id"] == again.json["id"] == fid
    assert raw_db.lead_events.count_documents({"kind": "followup"}) == 1
    r = await api.get(f"{LEADS}/{lead['id']}/timeline", token=rep.token)
    assert [e["kind"] for e in r.json["items"]].count("followup") == 1
    assert raw_db.lead_events.count_documents({"lead_id": lead["id"], "kind": "stage_changed"}) == 1
    # the same id on another rep's lead does not hijack it
    other = await people.rep()
    theirs = await make_lead(api, other, name="别人的")
    r = await api.post(f"{LEADS}/{theirs['id']}/followups", json=body, token=other.token)
    assert r.status == 422
    assert raw_db.lead_events.find_one({"_id": fid})["lead_id"] == lead["id"]
    r = await api.get(f"{LEADS}/{theirs['id']}/timeline", token=other.token)
    assert "followup" not in [e["kind"] for e in r.json["items"]]


@pytest.mark.gen_test
async def test_manager_logs_on_team_lead_but_not_other_team(api, people, raw_db):
    rep = await people.rep()
    manager = await people.manager()
    other_manager = await people.manager(team="华南销售部")
    lead = await make_lead(api, rep, name="经理协访")
    r = await api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "meeting", "content": "经理陪同"}, token=manager.token)
    assert r.status == 201 and r.json["author_id"] == manager.id
    r = await api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "meeting", "content": "越界"}, token=other_manager.token)
    assert r.status == 404
    r = await api.get(f"{LEADS}/{lead['id']}/timeline", token=manager.token)
    notes = [e["data"]["content"] for e in r.json["items"] if e["kind"] == "followup"]
    assert notes == ["经理陪同"]
