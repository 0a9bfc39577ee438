"""Lost and churn reasons from the team's catalogue: a code of the catalogue on the move's event,
``other`` with a note, an old client's free text read as ``other``, an unknown code refused with
the field named and nothing written, and a team's own catalogue."""

from __future__ import annotations

import pytest

from leads_kit import LEADS, make_lead


async def move(api, person, lead_id: str, to: str, **body):
    r = await api.get(f"{LEADS}/{lead_id}", token=person.token)
    return await api.post(f"{LEADS}/{lead_id}/stage", json={"to": to, "version": r.json["version"], **body}, token=person.token)


async def churned(api, rep, **churn_reason) -> dict:
    lead = await make_lead(api, rep)
    for to in ("contacted", "qualified", "customer", "at_risk"):
        assert (await move(api, rep, lead["id"], to)).status == 200
    r = await move(api, rep, lead["id"], "churned", **churn_reason)
    assert r.status == 200, r.body
    return r.json


def last_move(raw_db, lead_id: str) -> dict:
    return raw_db.lead_events.find_one({"lead_id": lead_id, "kind": "stage_changed"}, sort=[("at", -1)])["data"]


@pytest.mark.gen_test
async def test_coded_reasons_other_with_a_note_and_old_clients(api, people, raw_db):
    rep = await people.rep()
    lead = await make_lead(api, rep)
    r = await move(api, rep, lead["id"], "lost", reason_code="competitor")
    assert r.status == 200, r.body
    assert last_move(raw_db, lead["id"]) == {"from": "new", "to": "lost", "reason_code": "competitor", "reason_note": None,
                                             "reason": {"zh-CN": "选择了竞争对手", "en": "Chose a competitor"}}
    r = await api.get(f"{LEADS}/{lead['id']}/timeline", token=rep.token, headers={"Accept-Language": "en"})
    assert r.json["items"][0]["data"]["reason"] == "Chose a competitor"

    second = await make_lead(api, rep)
    r = await move(api, rep, second["id"], "lost", reason_code="other")
    assert r.status == 422 and r.error_code == "lead.reason_required", r.body
    assert [d["field"] for d in r.json["error"]["details"]] == ["reason_note"]
    r = await move(api, rep, second["id"], "lost", reason_code="other", reason_note="老板出国了")
    assert r.status == 200, r.body
    assert last_move(raw_db, second["id"])["reason_code"] == "other" and last_move(raw_db, second["id"])["reason"] == "老板出国了"

    old = await make_lead(api, rep)  # an old client: free text only
    r = await move(api, rep, old["id"], "lost", reason="预算砍了")
    assert r.status == 200, r.body
    data = last_move(raw_db, old["id"])
    assert (data["reason_code"], data["reason_note"], data["reason"]) == ("other", "预算砍了", "预算砍了")

    customer = await churned(api, rep, reason_code="service", reason_note="响应太慢")
    data = last_move(raw_db, customer["id"])
    assert (data["reason_code"], data["reason_note"]) == ("service", "响应太慢")
    # other moves keep their free text and take no code
    assert "reason_code" not in raw_db.lead_events.find_one({"lead_id": customer["id"], "data.to": "at_risk"})["data"]


@pytest.mark.gen_test
async def test_unknown_code_or_a_code_on_another_move_is_refused_and_nothing_is_written(api, people, raw_db):
    rep = await people.rep()
    lead = await make_lead(api, rep)
    before = (raw_db.leads.find_one({"_id": lead["id"]})["version"], raw_db.lead_events.count_documents({"lead_id": lead["id"]}))
    for body, field in (({"reason_code": "moon_phase"}, "reason_code"), ({"reason_code": "service"}, "reason_code")):  # service is a churn reason
        r = await move(api, rep, lead["id"], "lost", **body)
        assert r.status == 422 and r.error_code == "lead.unknown_reason", r.body
        detail = r.json["error"]["details"][0]
        assert detail["field"] == field and set(detail["value"].split(",")) == {"price", "competitor", "no_need", "unreachable", "other"}
    r = await move(api, rep, lead["id"], "contacted", reason_code="price")
    assert r.status == 422 and [d["field"] for d in r.json["error"]["details"]] == ["reason_code"], r.body
    r = await move(api, rep, lead["id"], "lost", reason_code="Price!")
    assert r.status == 422 and "reason_code" in r.body.decode(), r.body
    r = await move(api, rep, lead["id"], "lost")
    assert r.status == 422 and r.error_code == "lead.reason_required", r.body
    after = (raw_db.leads.find_one({"_id": lead["id"]})["version"], raw_db.lead_events.count_documents({"lead_id": lead["id"]}))
    assert after == before and raw_db.leads.find_one({"_id": lead["id"]})["stage"] == "new"


@pytest.mark.gen_test
async def test_a_team_catalogue_replaces_the_defaults(api, people, raw_db):
    admin, rep = await people.admin(), await people.rep()
    r = await api.get(f"/api/v1/teams/{rep.team_id}/settings", token=admin.token)
    catalogue = [{"code": "budget_cut", "label": "预算被砍", "label_en": "Budget cut"}, {"code": "other", "label": "其他"}]
    r = await api.patch(f"/api/v1/teams/{rep.team_id}/settings", json={"version": r.json["version"], "reasons": {"lost": catalogue}}, token=admin.token)
    assert r.status == 200, r.body
    lead = await make_lead(api, rep)
    r = await move(api, rep, lead["id"], "lost", reason_code="price")
    assert r.status == 422 and r.error_code == "lead.unknown_reason", r.body
    r = await move(api, rep, lead["id"], "lost", reason_code="budget_cut")
    assert r.status == 200, r.body
    assert last_move(raw_db, lead["id"])["reason"] == {"zh-CN": "预算被砍", "en": "Budget cut"}
