"""Retries with the same Idempotency-Key after a lost answer, on the two creates the journey found
unguarded: contract drafts, and form submissions whose phone came from the (single-use) phone button."""

from __future__ import annotations

import pytest


@pytest.mark.gen_test
async def test_a_retried_contract_draft_is_created_once(api, people):
    rep = await people.rep()
    lead = (await api.post("/api/v1/leads", json={"name": "赵女士", "phone": "13900001111"}, token=rep.token)).json
    body = {"lead_id": lead["id"], "title": "年度服务", "amount_fen": 120000, "start_date": "2026-12-01", "end_date": "2027-11-30"}
    headers = {"Idempotency-Key": "draft-key-0001"}
    first = await api.post("/api/v1/contracts", json=body, token=rep.token, headers=headers)
    again = await api.post("/api/v1/contracts", json=body, token=rep.token, headers=headers)
    assert (first.status, again.status) == (201, 201)
    assert again.json["id"] == first.json["id"]
    listed = await api.get(f"/api/v1/contracts?lead_id={lead['id']}", token=rep.token)
    assert len(listed.json["items"]) == 1
    other = await api.post("/api/v1/contracts", json={**body, "amount_fen": 1}, token=rep.token, headers=headers)
    assert other.status == 422  # same key, other body


@pytest.mark.gen_test
async def test_a_retried_submission_replays_although_its_phone_code_is_spent(api, people, wechat):
    state, _ = wechat
    admin = await people.admin()
    team = await people.team()
    form = {"slug": "retry-form", "title": "咨询", "team_id": team,
            "fields": [{"key": "name", "label": "姓名", "type": "text", "required": True, "maps_to": "name"},
                       {"key": "mobile", "label": "手机", "type": "phone", "required": True}]}
    assert (await api.post("/api/v1/forms", json=form, token=admin.token)).status == 201
    code = state.issue_phone_code("13700001234")["code"]
    body = {"answers": {"name": "钱先生"}, "phone_code": code}
    headers = {"Idempotency-Key": "submit-key-0001"}
    first = await api.post("/api/v1/public/forms/retry-form/submissions", json=body, headers=headers)
    again = await api.post("/api/v1/public/forms/retry-form/submissions", json=body, headers=headers)
    assert (first.status, again.status) == (201, 201), again.json
    assert again.json == first.json
    fresh = await api.post("/api/v1/public/forms/retry-form/submissions", json=body, headers={"Idempotency-Key": "submit-key-0002"})
    assert fresh.error_code == "submission.phone_code_invalid"  # without the key the spent code is refused
