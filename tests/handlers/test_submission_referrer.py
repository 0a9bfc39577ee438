"""A rep shares a form (a share card or a QR code in the mini-program); the customer's submission
names the sharing rep as ``referrer_id`` and the lead remembers who brought it. Only an active staff
member can be a referrer: anyone else (a customer, a deactivated user, an id nobody has) is ignored
and the submission still goes through.
"""

from __future__ import annotations

import pytest
from bson import ObjectId

from capture_kit import answers, lead_of, submit, unique_phone

pytestmark = pytest.mark.gen_test


async def _lead_seen_by(api, admin, raw_db, submission) -> dict:
    r = await api.get(f"/api/v1/leads/{lead_of(raw_db, submission)}", token=admin.token)
    assert r.status == 200, r.body
    return r.json


async def test_the_sharing_rep_is_the_leads_referrer(api, form, people, raw_db):
    rep = await people.rep()
    admin = await people.admin()
    r = await submit(api, {"answers": answers(mobile=unique_phone()), "source_channel": "share", "referrer_id": rep.id}, key="shared-card-0001")
    assert r.status == 201, r.body
    assert set(r.json) == {"submission_id", "status", "submitted_at"}  # the receipt says nothing about the rep

    lead = await _lead_seen_by(api, admin, raw_db, r)
    assert lead["source"]["referrer_id"] == rep.id and lead["source"]["channel"] == "share"
    timeline = await api.get(f"/api/v1/leads/{lead['id']}/timeline", token=admin.token)
    created = [e for e in timeline.json["items"] if e["kind"] == "created"]
    assert created and created[0]["data"]["referrer_id"] == rep.id


async def test_a_known_person_shared_again_keeps_the_first_source_and_logs_the_new_referrer(api, form, people, raw_db):
    first, second = await people.rep(), await people.rep()
    admin = await people.admin()
    phone = unique_phone()
    r1 = await submit(api, {"answers": answers(mobile=phone), "referrer_id": first.id})
    r2 = await submit(api, {"answers": answers(mobile=phone), "referrer_id": second.id})
    assert r1.status == 201 and r2.status == 201
    lead = await _lead_seen_by(api, admin, raw_db, r2)
    assert lead["source"]["referrer_id"] == first.id
    events = (await api.get(f"/api/v1/leads/{lead['id']}/timeline", token=admin.token)).json["items"]
    assert [e["data"].get("referrer_id") for e in events if e["kind"] == "resubmitted"] == [second.id]


async def test_a_referrer_who_is_not_active_staff_is_ignored(api, form, people, raw_db, wechat):
    state, _ = wechat
    admin = await people.admin()
    gone = await people.rep()
    r = await api.patch(f"/api/v1/users/{gone.id}", json={"active": False, "version": gone.user["version"]}, token=admin.token)
    assert r.status == 200, r.body
    customer = await people.customer(state)
    for referrer in (gone.id, customer.id, str(ObjectId())):
        r = await submit(api, {"answers": answers(mobile=unique_phone()), "referrer_id": referrer})
        assert r.status == 201, r.body
        lead = await _lead_seen_by(api, admin, raw_db, r)
        assert lead["source"].get("referrer_id") is None, referrer
        assert raw_db.leads.find_one({"_id": lead["id"]})["source"].get("referrer_id") is None


async def test_a_referrer_that_is_not_an_id_is_refused_before_anything_is_written(api, form, raw_db):
    for bad in (12345, "li.rep", "64b7f0c2e4b0a1a2b3c4d5e6" + "0"):
        r = await submit(api, {"answers": answers(mobile=unique_phone()), "referrer_id": bad})
        assert r.status == 422 and [d["field"] for d in r.json["error"]["details"]] == ["referrer_id"], r.body
    assert raw_db.leads.count_documents({}) == 0
