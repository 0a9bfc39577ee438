"""The error envelope: malformed and hostile bodies, size limits, unknown paths and methods,
languages, request ids, and a message for every error code the code base can raise."""

from __future__ import annotations

import ast
import re
import string
from pathlib import Path

import pytest

from server.errors import MESSAGES

ROOT = Path(__file__).resolve().parents[2]
LOGIN = "/api/v1/auth/password-login"
WX_LOGIN = "/api/v1/auth/wechat-login"
ME = "/api/v1/me"


def assert_envelope(resp, status: int, code: str) -> dict:
    assert resp.status == status, (resp.status, resp.body[:300])
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers.get("Content-Type")
    error = resp.json["error"]
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["details"], list)
    return error


# ---------------------------------------------------------------- bodies
@pytest.mark.gen_test
async def test_malformed_json_is_400(api):
    for raw in (b"{", b'{"username": "a",}', b"\xff\xfe{}", b"{'username': 'a'}", b'{"a": 1} trailing'):
        resp = await api.post(LOGIN, body=raw)
        assert_envelope(resp, 400, "request.malformed_json")


@pytest.mark.gen_test
async def test_json_that_is_not_an_object_is_400(api):
    for raw in (b'[{"username": "a", "password": "b"}]', b'"text"', b"42", b"null"):
        resp = await api.post(LOGIN, body=raw)
        assert_envelope(resp, 400, "request.not_object")


@pytest.mark.gen_test
async def test_nan_and_infinity_literals_are_400(api):
    for literal in ("NaN", "Infinity", "-Infinity"):
        resp = await api.post(LOGIN, body=f'{{"username": "a", "password": {literal}}}')
        assert_envelope(resp, 400, "request.malformed_json")


@pytest.mark.gen_test
async def test_operator_object_is_422(api, people):
    await people.rep(username="victim")
    for value in ({"$ne": None}, {"$gt": ""}, {"$where": "sleep(1000)"}, {"$regex": ".*"}):
        resp = await api.post(LOGIN, json={"username": value, "password": "x"})
        error = assert_envelope(resp, 422, "request.operator_key")
        assert error["details"][0]["field"].startswith("username.$")


@pytest.mark.gen_test
async def test_dotted_or_dollar_keys_anywhere_are_422(api):
    bodies = [
        {"$where": "1", "username": "a", "password": "b"},
        {"username": "a", "password": "b", "a.b": 1},
        {"code": "x", "extra": {"deep": {"deeper": [{"ok": 1}, {"$set": {"role": "admin"}}]}}},
        {"code": "x", "extra": [[[{"x.y": 1}]]]},
    ]
    for body in bodies:
        resp = await api.post(WX_LOGIN, json=body)
        error = assert_envelope(resp, 422, "request.operator_key")
        assert error["details"] and error["details"][0]["field"]


@pytest.mark.gen_test
async def test_body_over_the_limit_is_413(api, ctx):
    limit = ctx.settings.json_body_limit
    assert limit == 1024 * 1024
    filler = "a" * (limit + 1 - len('{"username": "", "password": "x"}'))
    too_big = f'{{"username": "{filler}", "password": "x"}}'
    assert len(too_big.encode()) == limit + 1
    resp = await api.post(LOGIN, body=too_big)
    error = assert_envelope(resp, 413, "request.too_large")
    assert str(limit) in error["message"]
    # just under the cap the body is read, and then refused for its content
    under = f'{{"username": "{"a" * (limit - 100)}", "password": "x"}}'
    assert (await api.post(LOGIN, body=under)).status == 422


@pytest.mark.gen_test
async def test_wrong_type_is_422_naming_the_field(api):
    resp = await api.post(LOGIN, json={"username": "li.lei", "password": 123})
    error = assert_envelope(resp, 422, "request.invalid")
    assert [d["field"] for d in error["details"]] == ["password"]
    assert "123" not in resp.body.decode(), "input values are not echoed"


@pytest.mark.gen_test
async def test_missing_and_unknown_fields_are_422(api):
    missing = await api.post(LOGIN, json={"username": "li.lei"})
    assert [d["field"] for d in assert_envelope(missing, 422, "request.invalid")["details"]] == ["password"]
    unknown = await api.post(LOGIN, json={"username": "a", "password": "b", "role": "admin"})
    assert "role" in [d["field"] for d in assert_envelope(unknown, 422, "request.invalid")["details"]]


@pytest.mark.gen_test
async def test_non_json_content_type_is_415(api):
    resp = await api.post(LOGIN, body="username=a&password=b", headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert_envelope(resp, 415, "request.unsupported_media_type")


# ---------------------------------------------------------------- paths and methods
@pytest.mark.gen_test
async def test_unknown_path_is_404_envelope(api, people):
    rep = await people.rep()
    for method, path in (("GET", "/api/v1/nope"), ("POST", "/api/v1/nope"), ("GET", "/"), ("DELETE", "/api/v2/me")):
        resp = await api.request(method, path, token=rep.token, json_body={} if method == "POST" else None)
        assert_envelope(resp, 404, "request.not_found")


@pytest.mark.gen_test
async def test_unsupported_method_is_405_envelope(api, people):
    rep = await people.rep()
    for method, path, token in (
        ("DELETE", ME, rep.token), ("DELETE", ME, None), ("PUT", "/api/v1/users", rep.token),
        ("PATCH", LOGIN, None), ("GET", LOGIN, None), ("PROPFIND", ME, rep.token),
    ):
        resp = await api.request(method, path, token=token, body=b"{}" if method in ("PUT", "PATCH") else None)
        assert_envelope(resp, 405, "request.method_not_allowed")


# ---------------------------------------------------------------- languages and request ids
@pytest.mark.gen_test
async def test_accept_language_changes_message_not_code(api):
    body = {"username": "nobody", "password": "x"}
    default = await api.post(LOGIN, json=body)
    zh = await api.post(LOGIN, json=body, headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    en = await api.post(LOGIN, json=body, headers={"Accept-Language": "en-US,en;q=0.9"})
    prefers_en = await api.post(LOGIN, json=body, headers={"Accept-Language": "zh;q=0.2, en;q=0.8"})
    codes = {r.error_code for r in (default, zh, en, prefers_en)}
    assert codes == {"auth.invalid_credentials"}
    assert default.json["error"]["message"] == zh.json["error"]["message"] == MESSAGES["auth.invalid_credentials"]["zh-CN"]
    assert en.json["error"]["message"] == prefers_en.json["error"]["message"] == MESSAGES["auth.invalid_credentials"]["en"]
    assert en.json["error"]["message"] != default.json["error"]["message"]
    # the 404 and 405 envelopes speak the language too
    nf = await api.get("/api/v1/nope", headers={"Accept-Language": "en"})
    assert nf.json["error"]["message"] == MESSAGES["request.not_found"]["en"]


@pytest.mark.gen_test
async def test_details_follow_accept_language_like_the_message(api, people):
    rep = await people.rep()
    body = {"name": "x" * 65, "colour": "red", "level": "Z"}
    zh = await api.post("/api/v1/leads", json=body, token=rep.token)
    en = await api.post("/api/v1/leads", json=body, token=rep.token, headers={"Accept-Language": "en"})
    assert zh.status == en.status == 422 and zh.error_code == en.error_code == "request.invalid"
    by_field = {lang: {d["field"]: d for d in r.json["error"]["details"]} for lang, r in (("zh", zh), ("en", en))}
    assert set(by_field["zh"]) == set(by_field["en"]) == {"name", "colour", "level"}
    for field in ("name", "colour", "level"):  # the code never changes, the message does
        assert by_field["zh"][field]["code"] == by_field["en"][field]["code"]
        assert by_field["zh"][field]["message"] != by_field["en"][field]["message"]
        assert set(by_field["zh"][field]) == {"field", "code", "message"}  # no internal params leak
    assert by_field["zh"]["name"]["code"] == "string_too_long" and by_field["zh"]["name"]["message"] == "最多 64 个字符"
    assert by_field["en"]["name"]["message"] == "String should have at most 64 characters"
    assert by_field["zh"]["colour"]["message"] == "不允许的字段"
    assert by_field["zh"]["level"]["message"] == "应为 'A', 'B', 'C' 之一"
    assert by_field["en"]["level"]["message"] == "Input should be 'A', 'B' or 'C'"  # pydantic's own, as before
    # query strings and the version rule too
    r = await api.get("/api/v1/leads?stage=new&stage=lost", token=rep.token)
    assert r.json["error"]["details"][0]["message"] == "该参数只能出现一次"
    r = await api.get("/api/v1/leads?stage=new&stage=lost", token=rep.token, headers={"Accept-Language": "en"})
    assert r.json["error"]["details"][0]["message"] == "give this parameter once"


@pytest.mark.gen_test
async def test_a_customers_form_problems_are_in_their_language(api, form):
    from capture_kit import answers, submit

    body = {"answers": answers(name="张" * 21, age=7, interest="tea", colour="red", mobile="12345")}
    zh = await submit(api, body)
    en = await submit(api, body, headers={"Accept-Language": "en"})
    assert zh.error_code == en.error_code == "submission.invalid_answers"
    messages = {lang: {d["field"]: (d["code"], d["message"]) for d in r.json["error"]["details"]} for lang, r in (("zh", zh), ("en", en))}
    assert messages["zh"] == {
        "answers.colour": ("unknown_field", "不是此表单的字段"),
        "answers.name": ("invalid", "不能超过 20 个字"),
        "answers.mobile": ("invalid", "不是有效的中国大陆手机号"),
        "answers.age": ("invalid", "不能小于 18"),
        "answers.interest": ("invalid", "请从选项中选择"),
    }
    assert messages["en"] == {
        "answers.colour": ("unknown_field", "not a field of this form"),
        "answers.name": ("invalid", "longer than 20 characters"),
        "answers.mobile": ("invalid", "not a mainland mobile number"),
        "answers.age": ("invalid", "below 18"),
        "answers.interest": ("invalid", "not one of the options"),
    }


def test_every_detail_code_has_zh_and_en_messages():
    from server.errors import DETAIL_MESSAGES

    formatter = string.Formatter()
    for code, texts in DETAIL_MESSAGES.items():
        assert texts.get("zh-CN") and texts.get("en"), code
        fields = {lang: {f for _, f, _, _ in formatter.parse(text) if f} for lang, text in texts.items()}
        assert fields["zh-CN"] <= fields["en"], f"{code}: the Chinese text names a value the English one lacks"


def _detail_keys(trees) -> tuple[dict[str, str], list[str]]:
    """(catalogue key → where) named by every ``detail(...)`` call (its ``text=``, else its code) and
    every form-answer problem (``_p(message, text)``); and the hand-built details (a dict literal with
    ``field``, ``code`` and ``message``), whose message could not follow the caller's language."""
    keys: dict[str, str] = {}
    hand_built: list[str] = []
    for path, tree in trees:
        rel = path.relative_to(ROOT)
        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call) and _name(node.func) == "detail":
                text = next((kw.value for kw in node.keywords if kw.arg == "text"), None)
                key = text if text is not None else (node.args[1] if len(node.args) > 1 else None)
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    keys.setdefault(key.value, where)
                elif text is None or not isinstance(text, ast.Name):
                    hand_built.append(f"{where}: detail() with a code or text that is not a literal")
            elif isinstance(node, ast.Call) and _name(node.func) == "_p" and len(node.args) > 1:
                if isinstance(node.args[1], ast.Constant):
                    keys.setdefault(node.args[1].value, where)
            elif isinstance(node, ast.Dict):
                named = {k.value for k in node.keys if isinstance(k, ast.Constant)}
                # pydantic's problems carry params (rendered from the catalogue); an import's rejected
                # rows carry a row and are written in the importer's language by the import itself
                if {"field", "code", "message"} <= named and not named & {"params", "row"}:
                    hand_built.append(f"{where}: a detail built by hand; use server.errors.detail(field, code, text=...)")
    return keys, hand_built


def test_every_detail_the_code_raises_has_zh_and_en_messages():
    from server.errors import DETAIL_MESSAGES

    keys, hand_built = _detail_keys(_source_trees())
    for known in ("operator_key", "version_missing", "answer_required", "allowed_moves", "visit_location_required", "end_before_start"):
        assert known in keys, f"the scanner should find {known}"
    problems = [f"{key} (at {where}) has no zh-CN and en message in DETAIL_MESSAGES" for key, where in sorted(keys.items())
                if not (DETAIL_MESSAGES.get(key, {}).get("zh-CN") and DETAIL_MESSAGES.get(key, {}).get("en"))]
    assert not problems + hand_built, "\n".join(problems + hand_built)


# ---------------------------------------------------------------- service details speak the language
async def _both(request) -> tuple[dict, dict]:
    """The same request with no Accept-Language and with ``en``: the first detail of each answer."""
    zh = await request({})
    en = await request({"Accept-Language": "en"})
    assert zh.status == en.status and zh.status >= 400 and zh.error_code == en.error_code, (zh.body, en.body)
    assert set(zh.json["error"]["details"][0]) == set(en.json["error"]["details"][0])
    return zh.json["error"]["details"][0], en.json["error"]["details"][0]


@pytest.mark.gen_test
async def test_business_rule_details_follow_accept_language(api, people):
    from leads_kit import LEADS, make_lead

    rep, admin = await people.rep(), await people.admin()
    lead = await make_lead(api, rep, name="语言")
    contract = {"lead_id": lead["id"], "title": "年度服务合同", "amount_fen": 5_000_000, "start_date": "2027-01-01", "end_date": "2027-12-31"}
    r = await api.post("/api/v1/contracts", json=contract, token=rep.token)
    assert r.status == 201, r.body
    draft = r.json  # moving the end before the start of the stored draft is the service's check
    zh, en = await _both(lambda h: api.patch(f"/api/v1/contracts/{draft['id']}", json={"end_date": "2026-12-31", "version": draft["version"]},
                                             token=rep.token, headers=h))
    assert (zh["field"], zh["code"], zh["message"]) == ("end_date", "before_start", "结束日期不能早于开始日期")
    assert en["message"] == "end_date is before start_date"

    zh, en = await _both(lambda h: api.post(f"{LEADS}/{lead['id']}/stage", json={"to": "lost"}, token=rep.token, headers=h))
    assert (zh["field"], zh["code"], zh["message"]) == ("reason", "required", "这次阶段变更需要填写原因")
    assert en["message"] == "this move needs a reason"

    zh, en = await _both(lambda h: api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "visit", "content": "到访"}, token=rep.token, headers=h))
    assert (zh["field"], zh["code"], zh["message"]) == ("location", "required", "拜访需要签到位置")
    assert en["message"] == "a visit needs a check-in location"

    from capture_kit import expo_form

    zh, en = await _both(lambda h: api.post("/api/v1/forms", json=expo_form(team_id="0123456789abcdef01234567"), token=admin.token, headers=h))
    assert (zh["field"], zh["code"], zh["message"]) == ("team_id", "unknown", "团队不存在")
    assert en["message"] == "no such team"


@pytest.mark.gen_test
async def test_a_detail_that_carries_data_keeps_it_in_value_beside_a_localized_message(api, people):
    from leads_kit import LEADS, make_lead

    rep = await people.rep()
    lead = await make_lead(api, rep, name="数据", phone="13900005555")
    zh, en = await _both(lambda h: api.post(f"{LEADS}/{lead['id']}/stage", json={"to": "customer"}, token=rep.token, headers=h))
    assert zh["code"] == en["code"] == "allowed" and zh["value"] == en["value"] == "contacted,lost"
    assert zh["message"] == "可以变为：contacted, lost" and en["message"] == "allowed moves: contacted, lost"

    zh, en = await _both(lambda h: api.post(LEADS, json={"name": "重复", "phone": "13900005555"}, token=rep.token, headers=h))
    assert zh["code"] == en["code"] == "duplicate" and zh["value"] == en["value"] == lead["id"]
    assert zh["message"] == f"已有该手机号的线索 {lead['id']}" and en["message"] == f"an existing lead: {lead['id']}"


@pytest.mark.gen_test
async def test_request_id_is_echoed_or_generated(api, people):
    rep = await people.rep()
    cases = [("GET", ME, rep.token), ("GET", ME, None), ("GET", "/api/v1/nope", None), ("DELETE", ME, rep.token), ("GET", "/healthz", None),
             ("PROPFIND", ME, rep.token)]
    for method, path, token in cases:
        supplied = await api.request(method, path, token=token, headers={"X-Request-Id": "mp-7f3a.b_9"})
        assert supplied.headers.get("X-Request-Id") == "mp-7f3a.b_9", (method, path, supplied.status)
        absent = await api.request(method, path, token=token)
        assert re.fullmatch(r"[0-9a-f]{32}", absent.headers.get("X-Request-Id", "")), (method, path)
        for bad in ("has space", "x" * 65, "semi;colon", "<script>"):
            resp = await api.request(method, path, token=token, headers={"X-Request-Id": bad})
            got = resp.headers.get("X-Request-Id", "")
            assert got != bad and re.fullmatch(r"[0-9a-f]{32}", got), (method, path, bad, got)
    first = await api.get("/healthz")
    second = await api.get("/healthz")
    assert first.headers["X-Request-Id"] != second.headers["X-Request-Id"]


def _new_request_ids(count: int) -> list[str]:
    from tornado.httputil import HTTPHeaders, HTTPServerRequest, RequestStartLine

    from handlers.base import request_id_for

    request = HTTPServerRequest(start_line=RequestStartLine("GET", "/healthz", "HTTP/1.1"), headers=HTTPHeaders({"Host": "localhost"}))
    return [request_id_for(request) for _ in range(count)]


def test_request_ids_stay_unique_in_forked_worker_processes():
    """Several server processes forked from one (``fork_processes``) never hand out the same id."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(2) as pool:
        children = pool.map(_new_request_ids, [200, 200])
    parent = _new_request_ids(200)
    every = [*parent, *children[0], *children[1]]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in every)
    assert len(set(every)) == len(every)


# ---------------------------------------------------------------- every code has its messages
SOURCE_DIRS = ("server", "handlers", "jobs", "config")


def _source_trees() -> list[tuple[Path, ast.Module]]:
    trees = []
    for folder in SOURCE_DIRS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            trees.append((path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))))
    return trees


def _name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _error_classes(trees) -> set[str]:
    names = {"ApiError"}
    changed = True
    while changed:
        changed = False
        for _, tree in trees:
            for node in ast.walk(tree):
                if isinstance(node, ast.ClassDef) and node.name not in names and any(_name(b) in names for b in node.bases):
                    names.add(node.name)
                    changed = True
    return names


def _code_params(trees) -> dict[str, tuple[int, str]]:
    """Functions that take an error code as a parameter (``parse_oid(value, not_found_code)``)."""
    found = {}
    for _, tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                params = [a.arg for a in node.args.posonlyargs + node.args.args]
                for index, param in enumerate(params):
                    if param.endswith("_code") and param not in ("bind_code", "phone_code", "js_code"):
                        found[node.name] = (index - (1 if params and params[0] in ("self", "cls") else 0), param)
    return found


CODE_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")


def raised_codes() -> tuple[dict[str, str], dict[str, str]]:
    """(literal codes → where, f-string patterns → where) used when raising errors."""
    trees = _source_trees()
    classes = _error_classes(trees)
    code_params = _code_params(trees)
    literal: dict[str, str] = {}
    patterns: dict[str, str] = {}

    def take(node: ast.AST, where: str) -> None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            literal.setdefault(node.value, where)
        elif isinstance(node, ast.JoinedStr):
            regex = "".join(re.escape(v.value) if isinstance(v, ast.Constant) else r"[a-z_]+" for v in node.values)
            patterns.setdefault(regex, where)

    for path, tree in trees:
        rel = path.relative_to(ROOT)
        for node in ast.walk(tree):
            where = f"{rel}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Call):
                callee = _name(node.func)
                if callee in classes:
                    if node.args:
                        take(node.args[0], where)
                    for kw in node.keywords:
                        if kw.arg == "code":
                            take(kw.value, where)
                elif callee in code_params:
                    index, param = code_params[callee]
                    if len(node.args) > index:
                        take(node.args[index], where)
                    for kw in node.keywords:
                        if kw.arg == param:
                            take(kw.value, where)
            # mappings such as {40029: ("auth.wechat_code_invalid", 401)}
            if isinstance(node, ast.Tuple) and len(node.elts) == 2:
                code, status = node.elts
                if (isinstance(code, ast.Constant) and isinstance(code.value, str) and CODE_RE.match(code.value)
                        and isinstance(status, ast.Constant) and isinstance(status.value, int) and 400 <= status.value < 600):
                    literal.setdefault(code.value, where)
    return literal, patterns


def test_scanner_finds_known_codes():
    literal, patterns = raised_codes()
    for known in ("auth.invalid_credentials", "request.bad_cursor", "user.not_found", "auth.wechat_code_invalid",
                  "service.unavailable", "request.operator_key", "team.not_found", "wechat.unavailable"):
        assert known in literal, known
    assert patterns, "the f-string codes (e.g. f'{kind}.not_found') should be found"


def test_every_error_code_has_zh_and_en_messages():
    literal, patterns = raised_codes()
    problems = []
    for code, where in sorted(literal.items()):
        texts = MESSAGES.get(code)
        if not texts or not texts.get("zh-CN") or not texts.get("en"):
            problems.append(f"{code} (raised at {where}) lacks a zh-CN or en message")
    for regex, where in sorted(patterns.items()):
        if not any(re.fullmatch(regex, key) for key in MESSAGES):
            problems.append(f"no message matches the code pattern {regex} ({where})")
    assert not problems, "\n".join(problems)


def test_messages_use_the_same_placeholders_in_both_languages():
    formatter = string.Formatter()
    problems = []
    for code, texts in MESSAGES.items():
        assert set(texts) >= {"zh-CN", "en"}, code
        fields = {lang: {f for _, f, _, _ in formatter.parse(text) if f} for lang, text in texts.items()}
        if fields["zh-CN"] != fields["en"]:
            problems.append(f"{code}: {fields}")
    assert not problems, "\n".join(problems)
