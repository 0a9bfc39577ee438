"""Satisfaction surveys over HTTP: the customer sees and answers their own once; staff read answers
in their scope; the answer is on the timeline; a low score raises at-risk once; a positive one is
activity for the silence rule; the customer hears of it by a subscribe message."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from bson import ObjectId

from jobs.registry import load_jobs, run_job
from leads_kit import LEADS, make_lead
from surveys_kit import SURVEYS, answer, customer_lead, offer
from tasks_kit import SUBSCRIPTIONS

load_jobs()
SHANGHAI = timezone(timedelta(hours=8))


@pytest.mark.gen_test(timeout=60)
async def test_the_customer_answers_once_and_staff_read_it_in_scope(api, ctx, people, wechat, raw_db):
    who = await customer_lead(api, people, wechat[0], raw_db)
    survey = await offer(ctx, who)
    again = await offer(ctx, who, source_id=survey["source_id"])  # a ticket resolved twice: one survey
    assert again["_id"] == survey["_id"] and raw_db.surveys.count_documents({}) == 1

    r = await api.get(f"{SURVEYS}?status=pending", token=who.person.token)
    assert r.status == 200, r.body
    [item] = r.json["items"]
    assert item["id"] == survey["_id"] and item["status"] == "pending" and item["source"] == "ticket"
    assert item["lead_id"] is None and item["owner_id"] is None  # nothing of staff data for the customer

    before = raw_db.leads.find_one({"_id": who.lead_id})["last_activity_at"]
    r = await answer(api, who, survey["_id"], csat=5, nps=9, comment="很及时")
    assert r.status == 200, r.body
    assert r.json["status"] == "answered" and r.json["csat"] == 5 and r.json["nps"] == 9 and r.json["comment"] == "很及时"
    r = await api.get(f"{SURVEYS}?status=pending", token=who.person.token)
    assert r.json["items"] == []

    # A second answer: 409, nothing written.
    r = await answer(api, who, survey["_id"], csat=1, nps=0)
    assert r.status == 409 and r.error_code == "survey.answered", r.body
    stored = raw_db.surveys.find_one({"_id": survey["_id"]})
    assert (stored["csat"], stored["nps"], stored["version"]) == (5, 9, 2)
    events = list(raw_db.lead_events.find({"lead_id": who.lead_id, "kind": "survey_answered"}))
    assert len(events) == 1
    assert {k: events[0]["data"][k] for k in ("survey_id", "source", "source_id", "csat", "nps", "ticket_id")} == {
        "survey_id": survey["_id"], "source": "ticket", "source_id": survey["source_id"], "csat": 5, "nps": 9, "ticket_id": survey["source_id"]}

    # The owner sees it on the lead's timeline and in the list; a positive survey is activity.
    r = await api.get(f"{LEADS}/{who.lead_id}/timeline", token=who.rep.token)
    assert "survey_answered" in [e["kind"] for e in r.json["items"]]
    lead = raw_db.leads.find_one({"_id": who.lead_id})
    assert lead["last_activity_at"] > before and lead["stage"] == "customer"
    for staff in (who.rep, who.manager):
        r = await api.get(SURVEYS, token=staff.token)
        assert [s["id"] for s in r.json["items"]] == [survey["_id"]], r.body
        r = await api.get(f"{SURVEYS}/{survey['_id']}", token=staff.token)
        assert r.status == 200 and r.json["lead_id"] == who.lead_id and r.json["csat"] == 5
    # Outside the scope: another rep, another team's manager: empty list, 404.
    for outsider in (await people.rep(), await people.manager(team="华南销售部")):
        r = await api.get(SURVEYS, token=outsider.token)
        assert r.json["items"] == []
        r = await api.get(f"{SURVEYS}/{survey['_id']}", token=outsider.token)
        assert r.status == 404 and r.error_code == "survey.not_found"
    # Staff do not answer surveys.
    r = await api.post(f"{SURVEYS}/{survey['_id']}/answer", json={"csat": 5, "nps": 10}, token=who.rep.token)
    assert r.status == 403


@pytest.mark.gen_test(timeout=60)
async def test_out_of_range_or_missing_scores_are_422_and_write_nothing(api, ctx, people, wechat, raw_db):
    who = await customer_lead(api, people, wechat[0], raw_db, stage="new")
    survey = await offer(ctx, who)
    for body, field in (
        ({"csat": 0, "nps": 5}, "csat"), ({"csat": 6, "nps": 5}, "csat"), ({"csat": 3, "nps": 11}, "nps"), ({"csat": 3, "nps": -1}, "nps"),
        ({"csat": 3}, "nps"), ({"nps": 3}, "csat"), ({"csat": 3, "nps": 3, "comment": "x" * 1001}, "comment"), ({"csat": 3, "nps": 3, "status": "pending"}, "status"),
    ):
        r = await api.post(f"{SURVEYS}/{survey['_id']}/answer", json=body, token=who.person.token)
        assert r.status == 422 and r.error_code == "request.invalid", (body, r.body)
        assert [d["field"] for d in r.json["error"]["details"]] == [field], (body, r.body)
    assert raw_db.surveys.find_one({"_id": survey["_id"]})["status"] == "pending"
    assert raw_db.lead_events.count_documents({"kind": "survey_answered"}) == 0


@pytest.mark.gen_test(timeout=60)
async def test_a_low_score_raises_at_risk_once(api, ctx, people, wechat, raw_db):
    who = await customer_lead(api, people, wechat[0], raw_db)
    before = raw_db.leads.find_one({"_id": who.lead_id})["last_activity_at"]
    first, second, third = [await offer(ctx, who) for _ in range(3)]
    r = await answer(api, who, first["_id"], csat=2, nps=8)  # low CSAT
    assert r.status == 200, r.body
    lead = raw_db.leads.find_one({"_id": who.lead_id})
    assert lead["stage"] == "at_risk" and lead["last_activity_at"] == before  # a low score is no activity
    r = await answer(api, who, second["_id"], csat=4, nps=3)  # low NPS: already at risk
    assert r.status == 200, r.body
    r = await answer(api, who, third["_id"], csat=1, nps=0)
    assert r.status == 200, r.body
    moves = list(raw_db.lead_events.find({"lead_id": who.lead_id, "kind": "stage_changed", "data.to": "at_risk"}))
    assert len(moves) == 1, moves
    assert raw_db.lead_events.count_documents({"lead_id": who.lead_id, "kind": "survey_answered"}) == 3
    owner_tasks = [t for t in raw_db.tasks.find({"lead_id": who.lead_id, "assignee_id": who.rep.id}) if t.get("kind") != "followup"]
    assert len(owner_tasks) == 1, owner_tasks


@pytest.mark.gen_test(timeout=60)
async def test_no_customer_account_no_survey_and_the_customer_is_told_by_subscribe_message(api, ctx, people, wechat, raw_db):
    state = wechat[0]
    rep = await people.rep()
    lead = await make_lead(api, rep)  # captured by the rep: nobody to ask
    assert await ctx.surveys.offer(lead_id=lead["id"], customer_id=None, team_id=rep.team_id, source="contract", source_id=str(ObjectId()), now=ctx.clock.now()) is None
    assert raw_db.surveys.count_documents({}) == 0

    who = await customer_lead(api, people, state, raw_db)
    openid = raw_db.users.find_one({"_id": ObjectId(who.person.id)})["openid"]
    state.accept_subscriptions(openid, ["DEMO_SURVEY_REQUEST"])
    r = await api.post(SUBSCRIPTIONS, json={"template_id": "DEMO_SURVEY_REQUEST", "accepted": True}, token=who.person.token)
    assert r.status == 200, r.body
    survey = await offer(ctx, who, source="contract")
    morning = datetime.now(SHANGHAI).replace(hour=10, minute=0, second=0, microsecond=0) + timedelta(days=1)  # outside quiet hours
    await run_job(ctx, "deliver_outbox", now=morning)
    [message] = [m for m in state.messages if m["touser"] == openid]
    assert message["template_id"] == "DEMO_SURVEY_REQUEST" and message["page"] == f"pages/home/home?id={survey['_id']}"
