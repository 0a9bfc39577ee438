"""Personal data on public endpoints: a public caller learns nothing about leads they did not
create; production refuses the public development secrets wherever they hide; operations
endpoints do not advertise themselves.

- The public submission answers with a receipt of the submission itself (its id, status, time):
  the same shape, and nothing of any lead, whether the phone was new or already a customer's.
- ``GET /public/my-submissions`` shows a customer their own submissions and what those did: the
  progress of a lead their submission started, and only "received" for one that reached a lead
  somebody else started.
- A deactivated customer's token on a public endpoint counts as no token.
"""

from __future__ import annotations

import base64
import json

import pytest
from bson import ObjectId

from capture_kit import answers, submit, unique_phone
from config.settings import DEV_BLIND_INDEX_KEY, DEV_FIELD_KEY, DEV_JWT_SECRET, SettingsError, load_settings
from leads_kit import LEADS, make_lead

MINE = "/api/v1/public/my-submissions"
RECEIPT = {"submission_id", "status", "submitted_at"}


def lead_of(raw_db, receipt: dict) -> str:
    """The lead a submission reached, as staff would find it (never from the public answer)."""
    return raw_db.lead_events.find_one({"_id": ObjectId(receipt["submission_id"])})["lead_id"]


# ---------------------------------------------------------------- the submission receipt
@pytest.mark.gen_test
async def test_a_known_phone_gets_the_same_receipt_as_a_new_one_and_no_lead_id(api, people, form, raw_db):
    rep = await people.rep()
    customer_phone = unique_phone()
    theirs = await make_lead(api, rep, name="老客户", phone=customer_phone)

    known = await submit(api, {"answers": answers(mobile=customer_phone)})
    new = await submit(api, {"answers": answers(mobile=unique_phone())})
    assert known.status == new.status == 201, (known.body, new.body)
    assert set(known.json) == set(new.json) == RECEIPT
    assert known.json["status"] == new.json["status"] == "received"
    assert theirs["id"] not in known.body.decode()
    assert lead_of(raw_db, known.json) == theirs["id"]  # it did reach the existing lead
    for r in (known, new):
        assert r.json["submission_id"] != lead_of(raw_db, r.json)


@pytest.mark.gen_test
async def test_a_replayed_submission_gets_the_same_receipt(api, form, raw_db):
    body = {"answers": answers(mobile=unique_phone())}
    first = await submit(api, body, key="receipt-key-0001")
    again = await submit(api, body, key="receipt-key-0001")
    assert first.status == again.status == 201
    assert again.json == first.json and set(first.json) == RECEIPT


# ---------------------------------------------------------------- what a customer sees
@pytest.mark.gen_test
async def test_my_submissions_never_shows_the_stage_of_a_lead_someone_else_started(api, people, wechat, form, raw_db):
    state, _ = wechat
    alice, mallory = await people.customer(state), await people.customer(state)
    phone = unique_phone()
    a = await submit(api, {"answers": answers(mobile=phone)}, token=alice.token)
    m = await submit(api, {"answers": answers(mobile=phone)}, token=mallory.token)  # alice's phone
    assert a.status == m.status == 201
    lead_id = lead_of(raw_db, a.json)
    assert lead_of(raw_db, m.json) == lead_id
    raw_db.leads.update_one({"_id": lead_id}, {"$set": {"stage": "contacted"}})  # setup: staff work on alice's lead

    r = await api.get(MINE, token=alice.token)
    assert [(i["submission_id"], i["status"]) for i in r.json["items"]] == [(a.json["submission_id"], "in_progress")]
    r = await api.get(MINE, token=mallory.token)
    assert [(i["submission_id"], i["status"]) for i in r.json["items"]] == [(m.json["submission_id"], "received")]
    raw_db.leads.update_one({"_id": lead_id}, {"$set": {"stage": "customer"}})
    r = await api.get(MINE, token=mallory.token)
    assert r.json["items"][0]["status"] == "received"
    assert lead_id not in r.body.decode()


@pytest.mark.gen_test
async def test_a_customer_coming_back_to_their_own_lead_sees_its_progress(api, people, wechat, form, raw_db):
    alice = await people.customer(wechat[0])
    phone = unique_phone()
    first = await submit(api, {"answers": answers(mobile=phone)}, token=alice.token)
    again = await submit(api, {"answers": answers(mobile=phone)}, token=alice.token)
    raw_db.leads.update_one({"_id": lead_of(raw_db, first.json)}, {"$set": {"stage": "qualified"}})
    r = await api.get(MINE, token=alice.token)
    assert [i["status"] for i in r.json["items"]] == ["in_progress", "in_progress"]
    assert [i["submission_id"] for i in r.json["items"]] == [again.json["submission_id"], first.json["submission_id"]]


# ---------------------------------------------------------------- a deactivated customer
@pytest.mark.gen_test
async def test_a_deactivated_customers_token_on_a_public_endpoint_is_no_token(api, people, wechat, form, raw_db):
    admin = await people.admin()
    customer = await people.customer(wechat[0])
    user = (await api.get(f"/api/v1/users/{customer.id}", token=admin.token)).json
    r = await api.patch(f"/api/v1/users/{customer.id}", json={"active": False, "version": user["version"]}, token=admin.token)
    assert r.status == 200, r.body

    r = await submit(api, {"answers": answers(mobile=unique_phone())}, token=customer.token)
    assert r.status == 201, r.body
    event = raw_db.lead_events.find_one({"_id": ObjectId(r.json["submission_id"])})
    assert "customer_id" not in event and event["actor_role"] == "public"
    lead = raw_db.leads.find_one({"_id": event["lead_id"]})
    assert lead["created_by"] == "public" and lead["customer_ids"] == []
    assert (await api.get(f"/api/v1/public/forms/{form['slug']}", token=customer.token)).status == 200
    assert (await api.get(MINE, token=customer.token)).status == 401
    # a forged token is still refused, not taken for "no token"
    assert (await submit(api, {"answers": answers(mobile=unique_phone())}, token=customer.token[:-4] + "AAAA")).status == 401


# ---------------------------------------------------------------- production secrets
STRONG = dict(
    jwt_secret="a-production-jwt-secret-that-is-long-0123",
    field_key="cHJvZHVjdGlvbi1maWVsZC1rZXktMzItYnl0ZXMhISE=",
    blind_index_key="cHJvZHVjdGlvbi1ibGluZC1pbmRleC0zMi1ieXRlcyE=",
    wechat_secret="a-real-wechat-app-secret",
    wechat_appid="wx1234567890abcdef",
    metrics_token="a-long-random-metrics-token-0123456789",
)


def test_production_refuses_the_development_jwt_secret_kept_as_an_old_key():
    load_settings(env="production", **STRONG)  # the baseline starts
    for old in ({"k0": DEV_JWT_SECRET}, {"k0": "short"}):
        with pytest.raises(SettingsError, match="MPCRM_JWT_OLD_KEYS"):
            load_settings(env="production", **STRONG, jwt_old_keys=old)
    load_settings(env="production", **STRONG, jwt_old_keys={"k0": "an-older-production-jwt-secret-0123456789"})


def test_production_refuses_a_development_field_key_kept_as_an_old_key():
    for dev in (DEV_FIELD_KEY, DEV_BLIND_INDEX_KEY):
        with pytest.raises(SettingsError, match="MPCRM_FIELD_OLD_KEYS"):
            load_settings(env="production", **{**STRONG, "field_key_version": 2}, field_old_keys={"1": dev})
    load_settings(env="production", **{**STRONG, "field_key_version": 2}, field_old_keys={"1": base64.b64encode(b"an-older-production-field-key-32"[:32]).decode()})


# ---------------------------------------------------------------- operations endpoints
@pytest.mark.gen_test
async def test_no_response_names_the_server_software_or_its_version(api, people):
    for path in ("/healthz", "/openapi.json", "/docs", "/docs/static/swagger-ui.css", "/api/v1/no-such-thing", "/api/v1/me"):
        r = await api.get(path)
        server = r.headers.get("Server", "")
        assert "tornado" not in server.lower() and not any(c.isdigit() for c in server), (path, server)


@pytest.fixture
def settings_overrides(request) -> dict:
    return getattr(request, "param", {})


PRODUCTION = {"env": "production", **{k: v for k, v in STRONG.items() if k != "metrics_token"}}
SCRAPE = "scrape-token-0123456789abcdef-0123456789"


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [PRODUCTION], indirect=True)
async def test_production_metrics_are_off_without_a_metrics_token(api, people):
    admin = await people.admin()
    for headers in ({}, {"Authorization": f"Bearer {admin.token}"}):
        r = await api.get("/metrics", headers=headers)
        assert r.status == 404 and b"# TYPE" not in r.body, (headers, r.body)
    assert (await api.get("/healthz")).status == 200


@pytest.mark.gen_test
@pytest.mark.parametrize("settings_overrides", [{**PRODUCTION, "metrics_token": SCRAPE}, {"metrics_token": SCRAPE}], indirect=True)
async def test_metrics_need_the_metrics_token_when_one_is_set(api, people):
    admin = await people.admin()
    for headers in ({}, {"Authorization": "Bearer wrong-token"}, {"Authorization": f"Bearer {admin.token}"}, {"Authorization": SCRAPE}):
        r = await api.get("/metrics", headers=headers)
        assert r.status == 401 and b"# TYPE" not in r.body, (headers, r.body)
        assert json.loads(r.body)["error"]["code"].startswith("auth.")
    r = await api.get("/metrics", headers={"Authorization": f"Bearer {SCRAPE}"})
    assert r.status == 200 and b"# TYPE" in r.body


@pytest.mark.gen_test
async def test_metrics_without_a_token_setting_are_open_outside_production(api):
    r = await api.get("/metrics")
    assert r.status == 200 and b"# TYPE" in r.body


@pytest.mark.gen_test
async def test_staff_still_find_the_submission_on_the_lead(api, people, form, raw_db):
    """The receipt hides the lead from the public only: staff still see the submission on it."""
    admin = await people.admin()
    r = await submit(api, {"answers": answers(mobile=unique_phone())})
    lead_id = lead_of(raw_db, r.json)
    r = await api.get(f"{LEADS}/{lead_id}/timeline", token=admin.token)
    assert r.status == 200 and r.json["items"][0]["kind"] == "created"


def test_production_sends_only_the_templates_it_was_given():
    """The built-in template ids are the fake WeChat's; in production they would only earn 40037,
    so a kind with no configured template stays in-app only."""
    from server.services.outbox import DEFAULT_TEMPLATES, templates_for

    real = {"template_id": "real-lead-tpl", "fields": {"title": "thing1"}}
    assert templates_for(load_settings(env="production", **STRONG, wechat_templates={"lead_assigned": real})) == {"lead_assigned": real}
    dev = templates_for(load_settings(env="development"))
    assert set(dev) == set(DEFAULT_TEMPLATES) and all(t["template_id"].startswith("DEMO_") for t in dev.values())
