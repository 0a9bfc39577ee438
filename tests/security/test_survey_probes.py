"""Surveys under attack: another customer's survey, scores that are not small whole numbers,
operator keys, odd ids and filters, and two answers racing — a clear 4xx, nothing written, one
answer."""

from __future__ import annotations

import asyncio

import pytest

from surveys_kit import SURVEYS, answer, customer_lead, offer


def untouched(raw_db, survey: dict) -> bool:
    stored = raw_db.surveys.find_one({"_id": survey["_id"]})
    return stored["status"] == "pending" and stored["version"] == 1 and raw_db.lead_events.count_documents({"kind": "survey_answered"}) == 0


@pytest.mark.gen_test(timeout=60)
async def test_another_customers_survey_is_not_found_and_stays_unanswered(api, ctx, people, wechat, raw_db):
    mine = await customer_lead(api, people, wechat[0], raw_db, stage="new")
    theirs = await customer_lead(api, people, wechat[0], raw_db, stage="new")
    survey = await offer(ctx, theirs)
    r = await answer(api, mine, survey["_id"])
    assert r.status == 404 and r.error_code == "survey.not_found", r.body
    r = await api.get(f"{SURVEYS}/{survey['_id']}", token=mine.person.token)
    assert r.status == 404 and r.error_code == "survey.not_found"
    r = await api.get(SURVEYS, token=mine.person.token)
    assert r.json["items"] == []
    r = await api.get(f"{SURVEYS}?lead_id={theirs.lead_id}", token=mine.person.token)  # a staff filter never widens a customer's scope
    assert r.json["items"] == []
    for odd in ("x" * 500, "%7B%22%24ne%22%3Anull%7D", "000000000000000000000000"):
        r = await api.post(f"{SURVEYS}/{odd}/answer", json={"csat": 5, "nps": 10}, token=mine.person.token)
        assert r.status == 404, (odd, r.body)
    assert untouched(raw_db, survey)


BAD_BODIES = [
    {"csat": "5", "nps": 10}, {"csat": 5, "nps": "10"}, {"csat": 4.0, "nps": 9}, {"csat": 4.5, "nps": 9}, {"csat": True, "nps": 9},
    {"csat": 5, "nps": 2**64}, {"csat": -2**63, "nps": 5}, {"csat": None, "nps": 5}, {"csat": {"$gt": 0}, "nps": 5},
    {"csat": 5, "nps": 5, "$set": {"status": "pending"}}, {"csat": 5, "nps": 5, "comment": "坏\u0000了"}, {"csat": 5, "nps": 5, "handler_id": "x"},
    {"csat": [5], "nps": 5}, {"csat": 1e400, "nps": 5},
]


@pytest.mark.gen_test(timeout=60)
async def test_scores_must_be_small_whole_numbers(api, ctx, people, wechat, raw_db):
    who = await customer_lead(api, people, wechat[0], raw_db, stage="new")
    survey = await offer(ctx, who)
    for body in BAD_BODIES:
        r = await api.post(f"{SURVEYS}/{survey['_id']}/answer", json=body, token=who.person.token)
        assert 400 <= r.status < 500 and r.error_code in ("request.invalid", "request.operator_key", "request.malformed_json"), (body, r.body)
    r = await api.post(f"{SURVEYS}/{survey['_id']}/answer", body='{"csat": 5, "nps": NaN}', token=who.person.token)
    assert r.status == 400 and r.error_code == "request.malformed_json", r.body
    assert untouched(raw_db, survey)


@pytest.mark.gen_test(timeout=60)
async def test_two_answers_racing_give_exactly_one_200(api, ctx, people, wechat, raw_db):
    who = await customer_lead(api, people, wechat[0], raw_db, stage="new")
    for _ in range(3):  # three surveys, each raced by two answers
        survey = await offer(ctx, who)
        first, second = await asyncio.gather(answer(api, who, survey["_id"], csat=5, nps=10), answer(api, who, survey["_id"], csat=1, nps=0))
        assert sorted((first.status, second.status)) == [200, 409], (first.body, second.body)
        loser = first if first.status == 409 else second
        assert loser.error_code == "survey.answered"
        winner = (second if loser is first else first).json
        stored = raw_db.surveys.find_one({"_id": survey["_id"]})
        assert (stored["csat"], stored["nps"], stored["version"]) == (winner["csat"], winner["nps"], 2)
        assert raw_db.lead_events.count_documents({"kind": "survey_answered", "data.survey_id": survey["_id"]}) == 1


@pytest.mark.gen_test(timeout=60)
async def test_list_filters_refuse_operators_and_repeats(api, ctx, people, wechat, raw_db):
    who = await customer_lead(api, people, wechat[0], raw_db, stage="new")
    await offer(ctx, who)
    for query in ("status=%7B%22%24ne%22%3Anull%7D", "status=pending&status=answered", "limit=1000", "status=expired", "cursor=!!"):
        r = await api.get(f"{SURVEYS}?{query}", token=who.person.token)
        assert r.status in (400, 422), (query, r.body)
