"""Personal data (PIPL): phone numbers are encrypted at rest with a versioned key, found again by a
blind index, masked in every response, revealed only to those allowed (and every attempt audited),
re-encrypted by key rotation, and never written in plain text to the database or the logs.
"""

from __future__ import annotations

import base64
import os
from datetime import datetime, timezone

import pytest
from cryptography.exceptions import InvalidTag
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from capture_kit import (
    MOBILE_IN_TEXT, PHONE, PHONE_DISPLAY, PHONE_MASKED, answers, create_form, lead_of, submit,
)
from conftest import Api
from config.settings import Settings
from server.app import make_app
from server.clock import FixedClock
from server.context import build_context
from server.db import connect
from server.security import FieldCipher
from server.services.keys import rotate_field_key

pytestmark = pytest.mark.gen_test


@pytest.fixture
def clock():
    return FixedClock(datetime.now(timezone.utc))


def reveal_path(lead_id: str) -> str:
    return f"/api/v1/leads/{lead_id}/reveal"


async def new_lead(api, raw_db, phone: str = PHONE_DISPLAY, **kw) -> str:
    r = await submit(api, {"answers": answers(mobile=phone, **kw)})
    assert r.status == 201, r.body
    return lead_of(raw_db, r)


# ---------------------------------------------------------------- at rest
async def test_phone_is_encrypted_at_rest_with_a_blind_index_and_a_mask(api, form, ctx, raw_db):
    lead_id = await new_lead(api, raw_db)
    other_id = await new_lead(api, raw_db, "13900139000")
    lead = raw_db.leads.find_one({"_id": lead_id})
    assert set(lead["phone"]) == {"v", "n", "c"} and lead["phone"]["v"] == 1
    assert lead["phone_masked"] == PHONE_MASKED
    assert lead["phone_bidx"] == ctx.cipher.blind_index(PHONE) != ctx.cipher.blind_index("13900139000")
    assert PHONE not in str(lead)
    # AES-GCM with the lead id as associated data: the value only opens on its own document.
    assert ctx.cipher.decrypt(lead["phone"], lead_id) == PHONE
    with pytest.raises(InvalidTag):
        ctx.cipher.decrypt(lead["phone"], other_id)
    # A fresh nonce per value.
    other = raw_db.leads.find_one({"_id": other_id})
    assert other["phone"]["n"] != lead["phone"]["n"]


# ---------------------------------------------------------------- masked on the way out
async def test_phone_is_masked_in_every_response(api, form, people, raw_db):
    admin = await people.admin()
    manager = await people.manager()
    lead_id = await new_lead(api, raw_db)
    for token in (admin.token, manager.token):
        r = await api.get(f"/api/v1/leads/{lead_id}", token=token)
        assert r.status == 200, r.body
        assert r.json["phone"] == PHONE_MASKED
        assert "mobile" not in (r.json.get("answers") or {})
        assert PHONE.encode() not in r.body
    r = await api.get("/api/v1/leads", token=admin.token)
    assert r.status == 200 and [i["phone"] for i in r.json["items"]] == [PHONE_MASKED]
    assert PHONE.encode() not in r.body
    r = await api.get(f"/api/v1/leads/{lead_id}/timeline", token=admin.token)
    assert r.status == 200 and r.json["items"] and PHONE.encode() not in r.body


# ---------------------------------------------------------------- reveal
async def test_admin_and_the_teams_manager_may_reveal(api, form, people, raw_db):
    lead_id = await new_lead(api, raw_db)
    admin = await people.admin()
    manager = await people.manager()  # the form's team
    for person in (admin, manager):
        r = await api.post(reveal_path(lead_id), json={"field": "phone"}, token=person.token)
        assert r.status == 200, r.body
        assert r.json == {"field": "phone", "value": PHONE}
        assert r.headers["Cache-Control"] == "no-store"
    audit = list(raw_db.audit_log.find({"action": "lead.reveal"}).sort("at", 1))
    assert [(a["actor_id"], a["outcome"], a["target_id"]) for a in audit] == [(admin.id, "ok", lead_id), (manager.id, "ok", lead_id)]
    assert all(a["details"] == {"field": "phone"} for a in audit)
    assert PHONE not in str(audit)


async def test_the_owning_rep_may_reveal(api, form, people, raw_db):
    lead_id = await new_lead(api, raw_db)
    rep = await people.rep()
    raw_db.leads.update_one({"_id": lead_id}, {"$set": {"owner_id": rep.id}})  # setup: assigned to this rep
    r = await api.post(reveal_path(lead_id), json={"field": "phone"}, token=rep.token)
    assert r.status == 200 and r.json["value"] == PHONE
    assert raw_db.audit_log.count_documents({"action": "lead.reveal", "actor_id": rep.id, "outcome": "ok"}) == 1


async def test_refused_reveals_are_audited(api, form, people, wechat, raw_db):
    lead_id = await new_lead(api, raw_db)
    rep = await people.rep()  # same team, does not own it
    other_manager = await people.manager("华南销售部")
    customer = await people.customer(wechat[0])

    for person in (rep, other_manager):
        r = await api.post(reveal_path(lead_id), json={"field": "phone"}, token=person.token)
        # Same answer as a lead that does not exist: no hint that it does.
        assert r.status == 404 and r.error_code == "lead.not_found", r.body
        assert PHONE.encode() not in r.body
    r = await api.post(reveal_path("no-such-lead"), json={"field": "phone"}, token=rep.token)
    assert r.status == 404 and r.error_code == "lead.not_found"

    r = await api.post(reveal_path(lead_id), json={"field": "phone"}, token=customer.token)
    assert r.status == 403 and r.error_code == "auth.forbidden" and PHONE.encode() not in r.body
    r = await api.post(reveal_path(lead_id), json={"field": "phone"})
    assert r.status == 401

    refused = {(a["actor_id"], a["target_id"]) for a in raw_db.audit_log.find({"action": "lead.reveal", "outcome": "refused"})}
    assert refused == {(rep.id, lead_id), (other_manager.id, lead_id), (rep.id, "no-such-lead"), (customer.id, lead_id)}
    assert raw_db.audit_log.count_documents({"action": "lead.reveal", "outcome": "ok"}) == 0


@pytest.mark.parametrize("body", [{"field": "email"}, {"field": "phone", "why": "x"}, {}, {"field": {"$ne": None}}])
async def test_reveal_takes_only_the_phone_field(api, form, people, raw_db, body):
    lead_id = await new_lead(api, raw_db)
    admin = await people.admin()
    r = await api.post(reveal_path(lead_id), json=body, token=admin.token)
    assert r.status == 422 and PHONE.encode() not in r.body
    assert raw_db.audit_log.count_documents({"action": "lead.reveal", "outcome": "ok"}) == 0


async def test_reveal_of_a_lead_without_a_phone_says_so(api, people, raw_db):
    """409 `lead.no_phone`, not 404 `lead.not_found`: the lead is there and the caller may see it
    (schemathesis flagged the old 404 as "a resource just created is not found")."""
    admin = await people.admin()
    await create_form(api, admin, await people.team(), slug="survey", fields=[{"key": "name", "label": "姓名", "type": "text", "required": True}])
    r = await submit(api, {"answers": {"name": "王五"}}, slug="survey")
    lead_id = lead_of(raw_db, r)
    r = await api.post(reveal_path(lead_id), json={"field": "phone"}, token=admin.token)
    assert (r.status, r.error_code) == (409, "lead.no_phone"), r.body
    assert raw_db.audit_log.count_documents({"action": "lead.reveal", "outcome": "refused", "target_id": lead_id, "details.reason": "no_phone"}) == 1
    r = await api.post(reveal_path("0123456789abcdef01234567"), json={"field": "phone"}, token=admin.token)
    assert (r.status, r.error_code) == (404, "lead.not_found"), r.body


# ---------------------------------------------------------------- key rotation
def _settings_with_new_key(old: Settings) -> tuple[Settings, str]:
    new_key = base64.b64encode(os.urandom(32)).decode()
    values = {
        **old.model_dump(),
        "field_key": new_key,
        "field_key_version": 2,
        "field_old_keys": {"1": old.field_key.get_secret_value()},
    }
    return Settings(**values), new_key


async def test_key_rotation_re_encrypts_everything_and_keeps_it_readable(api, form, people, ctx, wechat, io_loop, mongo_uri, db_name, raw_db):
    phones = ["13800138000", "13900139000", "15000150000"]
    lead_ids = {phone: await new_lead(api, raw_db, phone) for phone in phones}
    customer = await people.customer(wechat[0])  # a sealed WeChat session key in users
    before = {d["_id"]: d["phone"] for d in raw_db.leads.find()}
    assert {p["v"] for p in before.values()} == {1}
    assert raw_db.users.find_one({"_id": customer.user["_id"]})["wechat_session"]["v"] == 1

    new_settings, new_key = _settings_with_new_key(ctx.settings)
    counts = await rotate_field_key(ctx.leads, ctx.users, FieldCipher(new_settings))
    assert counts == {"leads.phone": 3, "users.wechat_session": 1}

    after = {d["_id"]: d for d in raw_db.leads.find()}
    for lead_id, lead in after.items():
        assert lead["phone"]["v"] == 2 and lead["phone"]["c"] != before[lead_id]["c"]
        assert lead["phone_bidx"] and lead["phone_masked"]
    assert raw_db.users.find_one({"_id": customer.user["_id"]})["wechat_session"]["v"] == 2
    # The new key alone opens everything: the old key is no longer needed.
    only_new = FieldCipher(Settings(**{**ctx.settings.model_dump(), "field_key": new_key, "field_key_version": 2}))
    assert {only_new.decrypt(after[i]["phone"], i) for i in lead_ids.values()} == set(phones)

    # An instance started with the new settings reveals the right numbers and still de-duplicates.
    database = connect(mongo_uri, new_settings, db_name=db_name)
    new_ctx = build_context(new_settings, database, ctx.clock)
    sock, port = bind_unused_port()
    server = HTTPServer(make_app(new_ctx))
    server.add_sockets([sock])
    try:
        new_api = Api(f"http://127.0.0.1:{port}")
        admin = await people.admin()
        for phone, lead_id in lead_ids.items():
            r = await new_api.post(reveal_path(lead_id), json={"field": "phone"}, token=admin.token)
            assert r.status == 200 and r.json["value"] == phone, r.body
        r = await submit(new_api, {"answers": answers(mobile="+86 139-0013-9000")})
        assert r.status == 201 and lead_of(raw_db, r) == lead_ids["13900139000"]
        new_id = lead_of(raw_db, await submit(new_api, {"answers": answers(mobile="18600186000")}))
        assert raw_db.leads.find_one({"_id": new_id})["phone"]["v"] == 2

        # A second run finds nothing left to do.
        again = await rotate_field_key(new_ctx.leads, new_ctx.users, new_ctx.cipher)
        assert again == {"leads.phone": 0, "users.wechat_session": 0}
    finally:
        server.stop()
        await database.close()


# ---------------------------------------------------------------- nothing in plain text
@pytest.mark.parametrize("settings_overrides", [{"public_phone_limit": 2}])
async def test_no_plaintext_phone_anywhere_in_the_database_or_the_logs(api, form, people, wechat, raw_db, captured_logs):
    """Run the flows that touch phone numbers, then dump every collection and every log line."""
    state, _ = wechat
    customer = await people.customer(state)
    admin = await people.admin()
    used = [PHONE, "13900139000", "13700137000", "15800158000", "18612345678"]
    typed = ["+86 138-0013-8000", "139 0013 9000", "0086-158-0015-8000", "138-0013-8000", "139-0013-9000"]

    lead_id = await new_lead(api, raw_db, typed[0])
    assert (await submit(api, {"answers": answers(mobile=typed[1])}, token=customer.token, key="plain-scan-0001")).status == 201
    assert (await submit(api, {"answers": answers(mobile=None), "phone_code": state.issue_phone_code(used[2])["code"]})).status == 201
    assert (await submit(api, {"answers": answers(mobile=typed[2], name="赵六")}, headers={"X-Forwarded-For": "203.0.113.9"})).status == 201
    assert (await submit(api, {"answers": answers(mobile=typed[3])})).status == 201  # resubmitted
    assert (await submit(api, {"answers": answers(mobile=PHONE)})).status == 429  # per-phone limit
    assert (await submit(api, {"answers": answers(mobile="186123456789")})).status == 422  # invalid
    assert (await submit(api, {"answers": answers(mobile=used[4], interest="nope")})).status == 422  # valid phone, bad answer
    assert (await api.post(reveal_path(lead_id), json={"field": "phone"}, token=admin.token)).json["value"] == PHONE
    assert (await api.get("/api/v1/public/my-submissions", token=customer.token)).status == 200
    assert (await api.get(f"/api/v1/leads/{lead_id}", token=admin.token)).status == 200

    names = raw_db.list_collection_names()
    assert {"leads", "lead_events", "audit_log", "rate_limits", "idempotency_keys", "users", "forms"} <= set(names)
    found = []
    for name in names:
        for doc in raw_db[name].find():
            text = str(doc)
            found += [(name, m) for m in MOBILE_IN_TEXT.findall(text)]
            found += [(name, p) for p in used + ["186123456789"] if p in text]
            found += [(name, t) for t in typed if t in text]
    assert found == []

    lines = captured_logs()
    assert lines, "the requests were logged"
    leaked = [line for line in lines if MOBILE_IN_TEXT.search(line) or any(p in line for p in used + typed)]
    assert leaked == []
