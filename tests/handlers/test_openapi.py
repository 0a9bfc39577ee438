"""The OpenAPI document tells the truth: every status a request can get back is listed for its
operation, and the constraints it documents are the ones enforced (``make fuzz`` checks the same
over generated requests; these are the cases it found, answered by the real app)."""

from __future__ import annotations

import re

import pytest

from leads_kit import LEADS, make_lead, release
from server.services.idempotency import KEY_RE
from tasks_kit import TASKS, create_task

TEAMS = "/api/v1/teams"


async def spec(api) -> dict:
    resp = await api.get("/openapi.json")
    assert resp.status == 200
    return resp.json


def documented(doc: dict, method: str, path: str) -> set[int]:
    return {int(s) for s in doc["paths"][path][method.lower()]["responses"]}


def body_schema(doc: dict, method: str, path: str) -> dict:
    ref = doc["paths"][path][method.lower()]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    return doc["components"]["schemas"][ref.rsplit("/", 1)[1]]


@pytest.mark.gen_test
async def test_statuses_the_app_answers_are_documented(api, people):
    doc = await spec(api)
    admin, rep = await people.admin(), await people.rep()
    lead = await make_lead(api, rep)
    lead_path = f"{LEADS}/{lead['id']}"
    answered = [
        ("POST", "/api/v1/auth/password-login", await api.post("/api/v1/auth/password-login", json={"username": "nobody", "password": "wrong-password"})),
        ("POST", "/api/v1/auth/refresh", await api.post("/api/v1/auth/refresh", json={"refresh_token": "not-a-refresh-token"})),
        ("POST", "/api/v1/auth/wechat-login", await api.post("/api/v1/auth/wechat-login", json={"code": "no-such-code"})),
        ("POST", "/api/v1/leads/{lead_id}/stage", await api.post(f"{lead_path}/stage", json={"to": "new"}, token=rep.token)),
        ("PATCH", "/api/v1/leads/{lead_id}", await api.patch(lead_path, json={"notes": "x", "version": lead["version"] + 5}, token=rep.token)),
    ]
    await release(api, rep, lead["id"])
    # re-claiming what you just released waits out the team's cool-down
    answered.append(("POST", "/api/v1/leads/{lead_id}/claim", await api.post(f"{lead_path}/claim", token=rep.token)))
    first = await api.post(TEAMS, json={"name": "同名团队"}, token=admin.token)
    assert first.status == 201
    answered.append(("POST", "/api/v1/teams", await api.post(TEAMS, json={"name": "同名团队"}, token=admin.token)))
    expected = {
        "/api/v1/auth/password-login": 401, "/api/v1/auth/refresh": 401, "/api/v1/auth/wechat-login": 401,
        "/api/v1/leads/{lead_id}/stage": 409, "/api/v1/leads/{lead_id}": 412, "/api/v1/leads/{lead_id}/claim": 409,
        "/api/v1/teams": 409,
    }
    for method, path, resp in answered:
        assert resp.status == expected[path], (method, path, resp.status, resp.body)
        assert resp.status in documented(doc, method, path), f"{method} {path} answers {resp.status}, not in its OpenAPI responses"


@pytest.mark.gen_test
async def test_every_operation_documents_the_shared_errors(api):
    doc = await spec(api)
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            statuses = {int(s) for s in op["responses"]}
            assert {401, 404, 503} <= statuses, (method, path)
            if op.get("security") != []:
                assert 403 in statuses, (method, path)
            if "application/json" in op.get("requestBody", {}).get("content", {}):
                assert {400, 413, 415, 422} <= statuses, (method, path)
            if any(p["name"] == "Idempotency-Key" for p in op.get("parameters", [])):
                assert {400, 409, 422} <= statuses, (method, path)


@pytest.mark.gen_test
async def test_version_is_required_where_the_handler_requires_it(api, people):
    doc = await spec(api)
    rep = await people.rep()
    lead = await make_lead(api, rep)
    task = await create_task(api, rep)
    for method, path in (
        ("PATCH", "/api/v1/leads/{lead_id}"), ("PATCH", "/api/v1/tasks/{task_id}"), ("PATCH", "/api/v1/users/{user_id}"),
        ("PATCH", "/api/v1/teams/{team_id}"), ("PATCH", "/api/v1/forms/{form_id}"), ("PATCH", "/api/v1/allocation-rules/{rule_id}"),
        ("PATCH", "/api/v1/contracts/{contract_id}"), ("POST", "/api/v1/contracts/{contract_id}/submit"),
        ("POST", "/api/v1/contracts/{contract_id}/approve"),
    ):
        schema = body_schema(doc, method, path)
        assert "version" in schema.get("required", []), (method, path)
        assert schema["properties"]["version"]["type"] == "integer", (method, path)
        assert 412 in documented(doc, method, path), (method, path)
    missing = await api.patch(f"{LEADS}/{lead['id']}", json={"notes": "x"}, token=rep.token)
    assert missing.status == 422 and missing.error_code == "request.version_required"
    # completing a task takes an optional version: the document says so, and no body is fine
    complete = doc["paths"]["/api/v1/tasks/{task_id}/complete"]["post"]
    assert "version" not in body_schema(doc, "POST", "/api/v1/tasks/{task_id}/complete").get("required", [])
    assert complete["requestBody"]["required"] is False
    done = await api.post(f"{TASKS}/{task['id']}/complete", token=rep.token)
    assert done.status == 200 and done.json["status"] == "done"
    assert doc["paths"]["/api/v1/tasks"]["post"]["requestBody"]["required"] is True
    empty = await api.post(TASKS, token=rep.token)
    assert empty.status == 422


@pytest.mark.gen_test
async def test_idempotency_key_format_is_documented_as_enforced(api, people):
    doc = await spec(api)
    rep = await people.rep()
    for path, methods in doc["paths"].items():
        for method, op in methods.items():
            for param in op.get("parameters", []):
                if param["name"] == "Idempotency-Key":
                    assert param["in"] == "header" and param["required"] is False
                    assert param["schema"]["pattern"] == KEY_RE.pattern, (method, path)
    pattern = re.compile(KEY_RE.pattern)
    body = {"title": "回访", "due_at": "2030-01-01T09:00:00+08:00"}
    for key, ok in (("abcdefgh", True), ("a:b.c-d_e", True), ("abcdefg", False), ("k" * 129, False), ("bad/key!", False)):
        assert bool(pattern.match(key)) is ok
        resp = await api.post(TASKS, json=body, token=rep.token, headers={"Idempotency-Key": key})
        assert resp.status == (201 if ok else 400), (key, resp.status, resp.body)


@pytest.mark.gen_test
async def test_free_form_objects_document_the_keys_the_api_refuses(api, form, people):
    doc = await spec(api)
    answers = body_schema(doc, "POST", "/api/v1/public/forms/{slug}/submissions")["properties"]["answers"]
    names = re.compile(answers["propertyNames"]["pattern"])
    assert names.match("name") and names.match("") and not names.match("$where") and not names.match("a.b")
    # and all the way down: the free-form values are JsonValue, whose objects carry the same rule
    assert answers["additionalProperties"] == {"$ref": "#/components/schemas/JsonValue"}
    nested = next(o for o in doc["components"]["schemas"]["JsonValue"]["anyOf"] if o["type"] == "object")
    assert nested["propertyNames"] == answers["propertyNames"]
    for bad in ({"$where": "1"}, {"name": [{"a.b": 1}]}, {"name": {"x": {"$gt": ""}}}):
        resp = await api.post(f"/api/v1/public/forms/{form['slug']}/submissions", json={"answers": bad})
        assert resp.status == 422 and resp.error_code == "request.operator_key", (bad, resp.body)


@pytest.mark.gen_test
async def test_numeric_rules_enforced_by_validators_are_in_the_schema(api, people):
    doc = await spec(api)
    schemas = doc["components"]["schemas"]
    days = schemas["WorkingHours"]["properties"]["days"]
    assert days["items"]["minimum"] == 1 and days["items"]["maximum"] == 7 and days["uniqueItems"] is True
    levels = schemas["ReclaimSettings"]["properties"]["no_followup_days_by_level"]["additionalProperties"]
    assert levels["minimum"] == 1 and levels["maximum"] == 365
    admin = await people.admin()
    refused = await api.post(TEAMS, json={"name": "回收规则", "reclaim": {"no_followup_days_by_level": {"A": 0}}}, token=admin.token)
    assert refused.status == 422
    accepted = await api.post(TEAMS, json={"name": "回收规则", "reclaim": {"no_followup_days_by_level": {"A": 365}}}, token=admin.token)
    assert accepted.status == 201


@pytest.mark.gen_test
async def test_text_patterns_the_server_enforces_are_in_the_schema(api, people):
    """Tags, channels and campaigns refuse `$` and `.`; the schema says so (schemathesis sent `$`
    as a tag, which the document allowed and the server refused)."""
    doc = await spec(api)
    schemas = doc["components"]["schemas"]
    assert schemas["LeadCreate"]["properties"]["tags"]["items"]["pattern"] == r"^[^$.]+$"
    for name in ("campaign", "source_channel"):
        variants = schemas["SubmissionIn"]["properties"][name]["anyOf"]
        assert any(v.get("pattern") == r"^[^$.]+$" for v in variants), (name, variants)
    rep = await people.rep()
    refused = await api.post("/api/v1/leads", json={"name": "标签", "tags": ["$"]}, token=rep.token)
    assert refused.status == 422


@pytest.mark.gen_test
async def test_every_throttled_operation_documents_429(api):
    """Login, the public form and phone reveals are throttled (429 with Retry-After); schemathesis
    met an undocumented 429 on reveal once its per-user budget was spent."""
    doc = await spec(api)
    for method, path in (("POST", "/api/v1/auth/password-login"), ("POST", "/api/v1/public/forms/{slug}/submissions"),
                         ("POST", "/api/v1/leads/{lead_id}/reveal")):
        assert 429 in documented(doc, method, path), (method, path)
