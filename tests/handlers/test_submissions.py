"""Customers fill in forms in the mini-program: the public form, submissions, one lead per person,
idempotent retries, the phone-number button (WeChat getuserphonenumber on the fake server), rate
limits that hold across instances, and the customer's own view of what they submitted.

The clock stands still in this module, so a fixed-window rate limit never rolls over mid-test.
"""

from __future__ import annotations

import asyncio
import time
from datetime import datetime, timezone

import pytest
from bson import ObjectId
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from capture_kit import (
    PHONE, PHONE_MASKED, answers, create_form, detail_fields, lead_of, submit, submit_path, unique_phone,
)
from conftest import Api
from miniprogram_stub.wechat_api import PATH_PHONE_NUMBER, Fault
from server.app import make_app
from server.clock import FixedClock
from server.context import build_context
from server.db import connect

pytestmark = pytest.mark.gen_test
PUBLIC_FORM = "/api/v1/public/forms/expo-2026"
MINE = "/api/v1/public/my-submissions"


@pytest.fixture
def clock():
    return FixedClock(datetime.now(timezone.utc))


def no_writes(raw_db) -> None:
    assert raw_db.leads.count_documents({}) == 0, list(raw_db.leads.find())
    assert raw_db.lead_events.count_documents({}) == 0


def one_event_per_lead(raw_db) -> None:
    """Every lead has exactly one ``created`` event and every event belongs to an existing lead."""
    lead_ids = {d["_id"] for d in raw_db.leads.find({}, {"_id": 1})}
    created = [e["lead_id"] for e in raw_db.lead_events.find({"kind": "created"}, {"lead_id": 1})]
    assert sorted(created) == sorted(lead_ids)
    assert {e["lead_id"] for e in raw_db.lead_events.find({}, {"lead_id": 1})} <= lead_ids


# ---------------------------------------------------------------- the public form
async def test_public_form_is_one_read(api, form, recorder):
    with recorder.counting() as cmds:
        r = await api.get(PUBLIC_FORM)
    assert r.status == 200 and r.json["slug"] == "expo-2026"
    assert len(cmds) <= 1, cmds


@pytest.mark.parametrize("slug", ["no-such-form", "EXPO-2026", "expo-2026%24"])
async def test_unknown_slug_is_404(api, form, raw_db, slug):
    r = await api.get(f"/api/v1/public/forms/{slug}")
    assert r.status == 404 and r.error_code == "form.not_found"
    r = await submit(api, {"answers": answers()}, slug=slug)
    assert r.status == 404 and r.error_code == "form.not_found"
    no_writes(raw_db)


# ---------------------------------------------------------------- a new person, a known person
async def test_new_person_becomes_an_unassigned_new_lead_with_a_created_event(api, form, ctx, raw_db, recorder):
    body = {"answers": answers(channels=["wechat", "ad"]), "source_channel": "moments-ad", "campaign": "spring-2026"}
    with recorder.counting() as cmds:
        r = await submit(api, body, key="first-try-0001")
    assert r.status == 201, r.body
    assert len(cmds) <= 6, cmds  # rate limit, form, idempotency claim, phone lookup, lead, event
    assert set(r.json) == {"submission_id", "status", "submitted_at"} and r.json["status"] == "received"

    lead = raw_db.leads.find_one({"_id": lead_of(raw_db, r)})
    assert lead["stage"] == "new" and lead["owner_id"] is None and lead["team_id"] == form["team_id"]
    assert lead["name"] == "张三" and lead["company"] == "北京某某科技有限公司" and lead["notes"] == "想了解一下价格"
    # Default tags plus the tags of the chosen options, no tag for untagged options.
    assert lead["tags"] == ["crm", "expo", "from-ad", "from-wechat"]
    assert lead["source"] == {"kind": "form", "form_slug": "expo-2026", "form_version": 1, "channel": "moments-ad", "campaign": "spring-2026"}
    # The phone is normalised: its blind index is that of the bare number.
    assert lead["phone_bidx"] == ctx.cipher.blind_index(PHONE) and lead["phone_masked"] == PHONE_MASKED
    assert ctx.cipher.decrypt(lead["phone"], lead["_id"]) == PHONE

    events = list(raw_db.lead_events.find())
    assert len(events) == 1
    event = events[0]
    assert event["_id"] == ObjectId(r.json["submission_id"]) and event["lead_id"] == lead["_id"]
    assert event["kind"] == "created" and event["actor_role"] == "public"
    assert event["data"]["form_version"] == 1 and event["data"]["channel"] == "moments-ad" and event["data"]["campaign"] == "spring-2026"
    assert event["data"]["answers"]["age"] == 35 and "mobile" not in event["data"]["answers"]


async def test_minimal_answers_make_a_lead_named_after_the_masked_phone(api, people, raw_db):
    admin = await people.admin()
    await create_form(api, admin, await people.team(), fields=[{"key": "mobile", "label": "手机", "type": "phone", "required": True}], default_tags=[])
    r = await submit(api, {"answers": {"mobile": PHONE}})
    assert r.status == 201, r.body
    lead = raw_db.leads.find_one()
    assert lead["name"] == f"表单访客 {PHONE_MASKED}" and lead["tags"] == []
    assert lead["source"]["channel"] is None and lead["source"]["campaign"] is None


async def test_known_person_gets_a_resubmitted_event_not_a_second_lead(api, form, raw_db):
    first = await submit(api, {"answers": answers()})
    assert first.status == 201
    second = await submit(api, {"answers": answers(mobile="138 0013 8000", interest="erp", name="张三丰"), "campaign": "autumn"})
    assert second.status == 201, second.body
    assert lead_of(raw_db, second) == lead_of(raw_db, first)
    assert second.json["submission_id"] != first.json["submission_id"]
    assert raw_db.leads.count_documents({}) == 1
    kinds = [e["kind"] for e in raw_db.lead_events.find({"lead_id": lead_of(raw_db, first)}).sort("_id", 1)]
    assert kinds == ["created", "resubmitted"]
    event = raw_db.lead_events.find_one({"_id": ObjectId(second.json["submission_id"])})
    assert event["data"]["campaign"] == "autumn" and event["data"]["answers"]["interest"] == "erp"
    lead = raw_db.leads.find_one()
    assert lead["stage"] == "new" and lead["name"] == "张三" and lead.get("winback_candidate") is not True


@pytest.mark.parametrize("typed", ["+86 138-0013-8000", "+8613800138000", "0086 138 0013 8000", "86-138-0013-8000", "(138) 0013-8000"])
async def test_written_forms_of_one_mobile_number_are_one_person(api, form, raw_db, typed):
    assert (await submit(api, {"answers": answers(mobile=PHONE)})).status == 201
    r = await submit(api, {"answers": answers(mobile=typed)})
    assert r.status == 201, r.body
    assert raw_db.leads.count_documents({}) == 1
    assert raw_db.lead_events.count_documents({"kind": "resubmitted"}) == 1


async def test_churned_customer_coming_back_is_flagged_for_winback(api, form, people, raw_db):
    first = await submit(api, {"answers": answers()})
    lead_id = lead_of(raw_db, first)
    raw_db.leads.update_one({"_id": lead_id}, {"$set": {"stage": "churned"}})  # test setup only
    r = await submit(api, {"answers": answers()})
    assert r.status == 201 and lead_of(raw_db, r) == lead_id
    lead = raw_db.leads.find_one({"_id": lead_id})
    # nx-27017 stores a top-level $set boolean as 1 (MongoDB keeps true); queries match either.
    assert lead["winback_candidate"] in (True, 1) and lead["stage"] == "churned" and lead["version"] == 2
    event = raw_db.lead_events.find_one({"_id": ObjectId(r.json["submission_id"])})
    assert event["kind"] == "resubmitted" and event["data"]["winback_candidate"] is True
    # Staff see the flag on the lead.
    admin = await people.admin()
    r = await api.get(f"/api/v1/leads/{lead_id}", token=admin.token)
    assert r.status == 200 and r.json["winback_candidate"] is True


async def test_concurrent_first_submissions_of_one_phone_make_one_lead(api, form, raw_db):
    responses = await asyncio.gather(*(submit(api, {"answers": answers(name=f"张三{i}")}) for i in range(5)))
    assert [r.status for r in responses] == [201] * 5, [r.body for r in responses]
    assert len({lead_of(raw_db, r) for r in responses}) == 1
    assert raw_db.leads.count_documents({}) == 1
    kinds = sorted(e["kind"] for e in raw_db.lead_events.find())
    assert kinds == ["created"] + ["resubmitted"] * 4


async def test_form_without_a_phone_still_makes_a_lead_each_time(api, people, raw_db):
    admin = await people.admin()
    await create_form(api, admin, await people.team(), slug="survey", fields=[{"key": "name", "label": "姓名", "type": "text", "required": True, "maps_to": "name"}])
    ids = {lead_of(raw_db, await submit(api, {"answers": {"name": "王五"}}, slug="survey")) for _ in range(2)}
    assert len(ids) == 2 and raw_db.leads.count_documents({"phone_bidx": {"$exists": True}}) == 0
    one_event_per_lead(raw_db)


# ---------------------------------------------------------------- idempotency
async def test_retry_with_the_same_key_replays_and_writes_nothing(api, form, raw_db, recorder):
    body = {"answers": answers()}
    first = await submit(api, body, key="retry-key-000001")
    assert first.status == 201
    lead_before = raw_db.leads.find_one()
    with recorder.counting() as cmds:
        again = await submit(api, body, key="retry-key-000001")
    assert again.status == 201 and again.json == first.json
    assert raw_db.leads.count_documents({}) == 1 and raw_db.lead_events.count_documents({}) == 1
    assert raw_db.leads.find_one() == lead_before  # not even the phone's submission times moved
    assert not [c for c in cmds if c in ("update", "delete")], cmds


async def test_same_key_with_a_different_body_is_refused(api, form, raw_db):
    first = await submit(api, {"answers": answers()}, key="reused-key-00001")
    assert first.status == 201
    r = await submit(api, {"answers": answers(mobile="13900009999")}, key="reused-key-00001")
    assert r.status == 422 and r.error_code == "idempotency.key_reused", r.body
    assert raw_db.leads.count_documents({}) == 1 and raw_db.lead_events.count_documents({}) == 1


async def test_five_concurrent_requests_with_one_key_make_one_lead(api, form, raw_db):
    body = {"answers": answers()}
    responses = await asyncio.gather(*(submit(api, body, key="same-key-concurrent-1") for _ in range(5)))
    created = [r for r in responses if r.status == 201]
    busy = [r for r in responses if r.status == 409]
    assert len(created) + len(busy) == 5, [(r.status, r.body) for r in responses]
    assert created, "at least the first request succeeds"
    assert all(r.json == created[0].json for r in created)
    assert all(r.error_code == "idempotency.in_progress" and r.headers.get("Retry-After") for r in busy)
    assert raw_db.leads.count_documents({}) == 1 and raw_db.lead_events.count_documents({}) == 1
    # Once it has finished, a retry gets the same answer.
    r = await submit(api, body, key="same-key-concurrent-1")
    assert r.status == 201 and r.json == created[0].json


async def test_rejected_submission_does_not_use_up_its_key(api, form, raw_db):
    r = await submit(api, {"answers": answers(mobile="12345")}, key="fix-and-retry-01")
    assert r.status == 422
    r = await submit(api, {"answers": answers()}, key="fix-and-retry-01")
    assert r.status == 201, r.body
    assert raw_db.leads.count_documents({}) == 1


async def test_keys_belong_to_their_client(api, form, wechat, people, raw_db):
    """The same key from a logged-in customer and from an anonymous client are two requests."""
    customer = await people.customer(wechat[0])
    a = await submit(api, {"answers": answers()}, key="shared-key-00001")
    b = await submit(api, {"answers": answers(mobile="13900002222")}, key="shared-key-00001", token=customer.token)
    assert a.status == 201 and b.status == 201, b.body
    assert lead_of(raw_db, a) != lead_of(raw_db, b) and raw_db.leads.count_documents({}) == 2


@pytest.mark.parametrize("key", ["short", "has space in it", "x" * 129, "emoji-🙂-key"])
async def test_malformed_idempotency_key_is_400(api, form, raw_db, key):
    r = await api.post(submit_path(), json={"answers": answers()}, headers={"Idempotency-Key": key.encode("utf-8").decode("latin-1")})
    assert r.status == 400 and r.error_code == "idempotency.bad_key", r.body
    no_writes(raw_db)


# ---------------------------------------------------------------- answers checked against the form
INVALID_ANSWERS = {
    "unknown field": ({"favourite_colour": "red"}, "answers.favourite_colour"),
    "number as text": ({"age": "thirty"}, "answers.age"),
    "boolean as number": ({"age": True}, "answers.age"),
    "text as number": ({"name": 12345}, "answers.name"),
    "missing required name": ({"name": None}, "answers.name"),
    "empty required name": ({"name": ""}, "answers.name"),
    "missing required select": ({"interest": None}, "answers.interest"),
    "missing phone": ({"mobile": None}, "answers.mobile"),
    "select value not in options": ({"interest": "blockchain"}, "answers.interest"),
    "select given a list": ({"interest": ["crm"]}, "answers.interest"),
    "multiselect value not in options": ({"channels": ["wechat", "tv"]}, "answers.channels"),
    "multiselect repeated choice": ({"channels": ["wechat", "wechat"]}, "answers.channels"),
    "multiselect given a string": ({"channels": "wechat"}, "answers.channels"),
    "text over its limit": ({"name": "张" * 21}, "answers.name"),
    "textarea over its limit": ({"message": "好" * 101}, "answers.message"),
    "number below min": ({"age": 17}, "answers.age"),
    "number above max": ({"age": 100}, "answers.age"),
    "bad email": ({"email": "not-an-email"}, "answers.email"),
    "impossible date": ({"visit_date": "2026-02-30"}, "answers.visit_date"),
    "date in another format": ({"visit_date": "2026/05/01"}, "answers.visit_date"),
    "invalid phone (too short)": ({"mobile": "1380013800"}, "answers.mobile"),
    "invalid phone (landline)": ({"mobile": "010-6552-8888"}, "answers.mobile"),
    "invalid phone (not mobile prefix)": ({"mobile": "12800138000"}, "answers.mobile"),
    "invalid phone (foreign)": ({"mobile": "+852 9123 4567"}, "answers.mobile"),
    "phone as a number": ({"mobile": 13800138000}, "answers.mobile"),
}


@pytest.mark.parametrize("case", list(INVALID_ANSWERS))
async def test_invalid_answer_is_422_naming_the_field_and_writes_nothing(api, form, raw_db, case):
    change, field = INVALID_ANSWERS[case]
    r = await submit(api, {"answers": answers(**change)}, key="bad-answer-0001")
    assert r.status == 422 and r.error_code == "submission.invalid_answers", r.body
    assert detail_fields(r) == [field], r.body
    no_writes(raw_db)
    assert raw_db.idempotency_keys.count_documents({}) == 0


async def test_every_problem_is_named_at_once(api, form, raw_db):
    r = await submit(api, {"answers": answers(name=None, age=5, interest="x", extra=1)})
    assert r.status == 422
    assert sorted(detail_fields(r)) == ["answers.age", "answers.extra", "answers.interest", "answers.name"]
    no_writes(raw_db)


async def test_error_details_never_echo_the_phone(api, form):
    r = await submit(api, {"answers": answers(mobile="138001380001")})
    assert r.status == 422 and b"138001380001" not in r.body


INJECTIONS = {
    "operator object": {"answers": answers(name={"$ne": None})},
    "operator in a list": {"answers": answers(channels=[{"$gt": ""}])},
    "$where key": {"answers": {**answers(), "$where": "sleep(1000)"}},
    "key with a dot": {"answers": {**answers(), "profile.admin": True}},
    "nested dotted key": {"answers": answers(name={"a": {"b.c": 1}})},
    "top-level operator": {"answers": answers(), "$set": {"stage": "customer"}},
    "phone as operator": {"answers": answers(mobile={"$regex": ".*"})},
}


@pytest.mark.parametrize("case", list(INJECTIONS))
async def test_operator_objects_and_dotted_keys_are_422(api, form, raw_db, case):
    r = await submit(api, INJECTIONS[case])
    assert r.status == 422, r.body
    assert r.error_code in ("request.operator_key", "submission.invalid_answers"), r.body
    no_writes(raw_db)


@pytest.mark.parametrize("extra", [{"owner_id": "x"}, {"stage": "customer"}, {"tags": ["vip"]}, {"team_id": "0" * 24}, {"source_channel": "a.b"}, {"campaign": "$x"}, {"answers": []}, {"phone_code": ""}])
async def test_body_outside_the_schema_is_422(api, form, raw_db, extra):
    r = await submit(api, {"answers": answers(), **extra})
    assert r.status == 422 and r.error_code == "request.invalid", r.body
    assert detail_fields(r) and detail_fields(r)[0].split(".")[0] == next(iter(extra)), r.body
    no_writes(raw_db)


# ---------------------------------------------------------------- phone number from WeChat
async def test_phone_code_fills_the_phone(api, form, wechat, ctx, raw_db):
    state, _ = wechat
    code = state.issue_phone_code("13700137000")["code"]
    r = await submit(api, {"answers": answers(mobile=None), "phone_code": code})
    assert r.status == 201, r.body
    lead = raw_db.leads.find_one()
    assert ctx.cipher.decrypt(lead["phone"], lead["_id"]) == "13700137000" and lead["phone_masked"] == "137****7000"
    # The same person typing their number later is the same lead.
    r2 = await submit(api, {"answers": answers(mobile="137-0013-7000")})
    assert lead_of(raw_db, r2) == lead_of(raw_db, r) and raw_db.leads.count_documents({}) == 1


async def test_reused_phone_code_is_refused(api, form, wechat, raw_db):
    state, _ = wechat
    code = state.issue_phone_code("13700137000")["code"]
    assert (await submit(api, {"answers": answers(mobile=None), "phone_code": code})).status == 201
    r = await submit(api, {"answers": answers(mobile=None, name="李四"), "phone_code": code})
    assert r.status == 422 and r.error_code == "submission.phone_code_invalid" and detail_fields(r) == ["phone_code"], r.body
    assert raw_db.leads.count_documents({}) == 1 and raw_db.lead_events.count_documents({}) == 1


async def test_expired_phone_code_is_refused(api, form, wechat, raw_db):
    state, _ = wechat
    code = state.issue_phone_code("13700137000")["code"]
    state.clock = lambda: time.time() + 301  # the stub's codes live 5 minutes
    r = await submit(api, {"answers": answers(mobile=None), "phone_code": code})
    assert r.status == 422 and r.error_code == "submission.phone_code_invalid", r.body
    no_writes(raw_db)


async def test_unknown_phone_code_is_refused(api, form, raw_db):
    r = await submit(api, {"answers": answers(mobile=None), "phone_code": "made-up-code"})
    assert r.status == 422 and r.error_code == "submission.phone_code_invalid"
    no_writes(raw_db)


@pytest.mark.parametrize(
    "fault, status, code",
    [
        (Fault(path=PATH_PHONE_NUMBER, errcode=-1), 503, "wechat.unavailable"),
        (Fault(path=PATH_PHONE_NUMBER, errcode=40029), 422, "submission.phone_code_invalid"),
        (Fault(path=PATH_PHONE_NUMBER, errcode=41008), 422, "submission.phone_code_invalid"),
        (Fault(path=PATH_PHONE_NUMBER, errcode=45011), 503, "wechat.rate_limited"),
        (Fault(path=PATH_PHONE_NUMBER, malformed=True), 503, "wechat.unavailable"),
        (Fault(path=PATH_PHONE_NUMBER, status=502), 503, "wechat.unavailable"),
    ],
    ids=["busy", "invalid-code", "not-a-code", "quota", "malformed", "http-502"],
)
async def test_wechat_trouble_while_resolving_the_code_writes_nothing(api, form, wechat, raw_db, fault, status, code):
    state, _ = wechat
    phone_code = state.issue_phone_code("13700137000")["code"]
    state.add_fault(fault)
    r = await submit(api, {"answers": answers(mobile=None), "phone_code": phone_code}, key="wechat-fault-01")
    assert r.status == status and r.error_code == code, r.body
    assert r.json["error"]["message"]
    no_writes(raw_db)
    if status == 503:
        # WeChat recovered: the customer taps submit again (same key) and it goes through.
        r = await submit(api, {"answers": answers(mobile=None), "phone_code": phone_code}, key="wechat-fault-01")
        assert r.status == 201, r.body
        assert raw_db.leads.count_documents({}) == 1 and raw_db.lead_events.count_documents({}) == 1


@pytest.mark.parametrize("settings_overrides", [{"wechat_timeout_s": 0.3}])
async def test_slow_wechat_is_a_clean_503(api, form, wechat, raw_db):
    state, _ = wechat
    phone_code = state.issue_phone_code("13700137000")["code"]
    state.add_fault(Fault(path=PATH_PHONE_NUMBER, delay=1.0))
    started = time.monotonic()
    r = await submit(api, {"answers": answers(mobile=None), "phone_code": phone_code})
    assert r.status == 503 and r.error_code == "wechat.unavailable", r.body
    assert time.monotonic() - started < 1.0
    no_writes(raw_db)


async def test_expired_access_token_is_refreshed_once(api, form, wechat, raw_db):
    state, _ = wechat
    assert (await submit(api, {"answers": answers(mobile=None), "phone_code": state.issue_phone_code("13700137000")["code"]})).status == 201
    state.expire_access_tokens()  # WeChat rotated the token behind our back; our cached one is dead
    r = await submit(api, {"answers": answers(mobile=None), "phone_code": state.issue_phone_code("13700137001")["code"]})
    assert r.status == 201, r.body
    assert raw_db.leads.count_documents({}) == 2


# ---------------------------------------------------------------- the customer's own submissions
async def test_customer_sees_own_submissions_and_their_status_only(api, people, wechat, raw_db):
    state, _ = wechat
    admin = await people.admin()
    team = await people.team()
    await create_form(api, admin, team)
    await create_form(api, admin, team, slug="trial", title="免费试用申请")
    alice = await people.customer(state)
    bob = await people.customer(state)

    a1 = await submit(api, {"answers": answers()}, token=alice.token)
    a2 = await submit(api, {"answers": answers(mobile="13900001234", name="张三")}, slug="trial", token=alice.token)
    a3 = await submit(api, {"answers": answers(mobile="13700007777")}, token=alice.token)
    again = await submit(api, {"answers": answers()}, slug="trial", token=alice.token)  # resubmits lead of a1
    b1 = await submit(api, {"answers": answers(mobile="13600006666")}, token=bob.token)
    anonymous = await submit(api, {"answers": answers(mobile="13500005555")})
    assert all(r.status == 201 for r in (a1, a2, a3, again, b1, anonymous))
    assert lead_of(raw_db, again) == lead_of(raw_db, a1)

    # Staff work on the leads; the customer only sees a coarse status, never staff data.
    rep = await people.rep()
    raw_db.leads.update_one({"_id": lead_of(raw_db, a1)}, {"$set": {"stage": "contacted", "owner_id": rep.id, "notes": "内部备注：预算紧张，压价", "level": "A"}})
    raw_db.leads.update_one({"_id": lead_of(raw_db, a2)}, {"$set": {"stage": "lost"}})

    r = await api.get(MINE, token=alice.token)
    assert r.status == 200, r.body
    items = r.json["items"]
    assert [i["submission_id"] for i in items] == [again.json["submission_id"], a3.json["submission_id"], a2.json["submission_id"], a1.json["submission_id"]]
    by_id = {i["submission_id"]: i for i in items}
    assert by_id[a1.json["submission_id"]]["status"] == "in_progress"
    assert by_id[again.json["submission_id"]]["status"] == "in_progress"
    assert by_id[again.json["submission_id"]]["form_slug"] == "trial" and by_id[again.json["submission_id"]]["form_title"] == "免费试用申请"
    assert by_id[a2.json["submission_id"]]["status"] == "closed"
    assert by_id[a3.json["submission_id"]]["status"] == "received"
    assert set(items[0]) == {"submission_id", "form_slug", "form_title", "submitted_at", "status"}
    text = r.body.decode()
    for secret in ("内部备注", rep.id, "contacted", "owner", "phone", PHONE, PHONE_MASKED, "13900001234", "****", "lead_id", lead_of(raw_db, a1)):
        assert secret not in text, secret

    r = await api.get(MINE, token=bob.token)
    assert [i["submission_id"] for i in r.json["items"]] == [b1.json["submission_id"]]

    # Paging works and never widens.
    r = await api.get(f"{MINE}?limit=2", token=alice.token)
    assert len(r.json["items"]) == 2 and r.json["next_cursor"]
    r2 = await api.get(f"{MINE}?limit=2&cursor={r.json['next_cursor']}", token=alice.token)
    assert [i["submission_id"] for i in r.json["items"] + r2.json["items"]] == [i["submission_id"] for i in items]


async def test_my_submissions_needs_a_customer(api, people, form):
    assert (await api.get(MINE)).status == 401
    for person in (await people.rep(), await people.admin()):
        r = await api.get(MINE, token=person.token)
        assert r.status == 403 and r.error_code == "auth.forbidden"


async def test_new_customer_has_no_submissions(api, people, wechat, form):
    customer = await people.customer(wechat[0])
    await submit(api, {"answers": answers()})  # someone else, anonymously
    r = await api.get(MINE, token=customer.token)
    assert r.status == 200 and r.json["items"] == []


async def test_a_staff_token_on_the_public_form_is_not_a_customer(api, people, form, raw_db):
    rep = await people.rep()
    r = await submit(api, {"answers": answers()}, token=rep.token)
    assert r.status == 201
    event = raw_db.lead_events.find_one()
    assert "customer_id" not in event and raw_db.leads.find_one()["created_by"] == "public"


async def test_a_bad_token_on_the_public_form_is_401(api, form, raw_db):
    r = await submit(api, {"answers": answers()}, token="not-a-jwt")
    assert r.status == 401
    no_writes(raw_db)


# ---------------------------------------------------------------- rate limits
def _assert_429(r) -> None:
    assert r.status == 429 and r.error_code == "request.rate_limited", (r.status, r.body)
    assert 1 <= int(r.headers["Retry-After"]) <= 60


@pytest.mark.parametrize("settings_overrides", [{"public_submit_limit": 5}])
async def test_per_address_limit(api, form, raw_db):
    for _ in range(5):
        assert (await submit(api, {"answers": answers(mobile=unique_phone())})).status == 201
    r = await submit(api, {"answers": answers(mobile=unique_phone())})
    _assert_429(r)
    assert raw_db.leads.count_documents({}) == 5 and raw_db.lead_events.count_documents({}) == 5
    # The limit covers the public form only for submissions: reading it is still fine.
    assert (await api.get(PUBLIC_FORM)).status == 200


@pytest.mark.parametrize("settings_overrides", [{"public_phone_limit": 2}])
async def test_per_phone_limit(api, form, raw_db):
    assert (await submit(api, {"answers": answers()})).status == 201
    assert (await submit(api, {"answers": answers()})).status == 201
    r = await submit(api, {"answers": answers(mobile="+86 13800138000")}, key="third-try-00001")
    _assert_429(r)
    assert raw_db.lead_events.count_documents({}) == 2
    assert raw_db.idempotency_keys.count_documents({}) == 0  # the refused request gave its key back
    # Another person from the same address is not affected.
    assert (await submit(api, {"answers": answers(mobile="13900001111")})).status == 201


@pytest.mark.parametrize("settings_overrides", [{"public_submit_limit": 4}])
async def test_limit_is_shared_by_every_instance(api, form, ctx, io_loop, mongo_uri, db_name, raw_db):
    other_db = connect(mongo_uri, ctx.settings, db_name=db_name)
    other_ctx = build_context(ctx.settings, other_db, ctx.clock)
    sock, port = bind_unused_port()
    other_server = HTTPServer(make_app(other_ctx))
    other_server.add_sockets([sock])
    other = Api(f"http://127.0.0.1:{port}")
    try:
        assert (await submit(api, {"answers": answers(mobile=unique_phone())})).status == 201
        assert (await submit(other, {"answers": answers(mobile=unique_phone())})).status == 201
        assert (await submit(api, {"answers": answers(mobile=unique_phone())})).status == 201
        assert (await submit(other, {"answers": answers(mobile=unique_phone())})).status == 201
        _assert_429(await submit(api, {"answers": answers(mobile=unique_phone())}))
        _assert_429(await submit(other, {"answers": answers(mobile=unique_phone())}))
        assert raw_db.leads.count_documents({}) == 4
    finally:
        other_server.stop()
        await other_db.close()


@pytest.mark.parametrize("settings_overrides", [{"public_submit_limit": 3, "trusted_proxies": []}])
async def test_forged_forwarded_for_from_an_untrusted_peer_does_not_escape_the_limit(api, form, raw_db):
    for i in range(3):
        r = await submit(api, {"answers": answers(mobile=unique_phone())}, headers={"X-Forwarded-For": f"198.51.100.{i}"})
        assert r.status == 201
    for forged in ("198.51.100.99", "10.0.0.1, 203.0.113.50", "127.0.0.2"):
        _assert_429(await submit(api, {"answers": answers(mobile=unique_phone())}, headers={"X-Forwarded-For": forged}))
    assert raw_db.leads.count_documents({}) == 3


@pytest.mark.parametrize("settings_overrides", [{"public_submit_limit": 2, "trusted_proxies": ["127.0.0.1"]}])
async def test_behind_a_trusted_proxy_each_client_has_its_own_budget(api, form, raw_db):
    alice = {"X-Forwarded-For": "203.0.113.10"}
    bob = {"X-Forwarded-For": "203.0.113.20"}
    for _ in range(2):
        assert (await submit(api, {"answers": answers(mobile=unique_phone())}, headers=alice)).status == 201
    _assert_429(await submit(api, {"answers": answers(mobile=unique_phone())}, headers=alice))
    # Alice putting a made-up address in front does not help: the proxy appends what it saw.
    _assert_429(await submit(api, {"answers": answers(mobile=unique_phone())}, headers={"X-Forwarded-For": "1.2.3.4, 203.0.113.10"}))
    for _ in range(2):
        assert (await submit(api, {"answers": answers(mobile=unique_phone())}, headers=bob)).status == 201
    _assert_429(await submit(api, {"answers": answers(mobile=unique_phone())}, headers=bob))
    assert raw_db.leads.count_documents({}) == 4


@pytest.mark.parametrize("settings_overrides", [{"public_submit_limit": 30}])
@pytest.mark.gen_test(timeout=90)
async def test_a_flood_from_one_address_is_cut_off_and_nothing_is_half_written(api, form, raw_db):
    # A flood: 1,000 submissions with rotating phone numbers from one address.
    statuses = []
    for _ in range(1000):
        r = await submit(api, {"answers": answers(mobile=unique_phone())})
        statuses.append(r.status)
        if r.status == 429:
            assert r.headers.get("Retry-After")
    assert statuses[:30] == [201] * 30
    assert set(statuses[30:]) == {429}
    assert raw_db.leads.count_documents({}) == 30 and raw_db.lead_events.count_documents({}) == 30
    one_event_per_lead(raw_db)
