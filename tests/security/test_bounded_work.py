"""Bounded work for every request (OWASP API4): the probes that found unbounded work, now regressions.

A spreadsheet's rows (gaps and blank rows included), zip members and shared strings are capped
before anything is parsed; hostile XML (malformed, DTDs, entities) is a 422, never a 500 or an
expansion; a body over an endpoint's cap is refused from ``Content-Length`` or while it streams,
before it is buffered; password logins and phone reveals are throttled in the database.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import tracemalloc
import uuid
import zipfile

import pytest
from openpyxl import Workbook
from tornado.tcpclient import TCPClient

from conftest import PASSWORD
from leads_kit import make_lead, unique_phone

IMPORT = "/api/v1/leads/import"
LOGIN = "/api/v1/auth/password-login"
SHARED_STRINGS = "xl/sharedStrings.xml"
SHEET = "xl/worksheets/sheet1.xml"


@pytest.fixture
def settings_overrides() -> dict:
    return {"reveal_limit": 3}


# ---------------------------------------------------------------- helpers
def multipart(data: bytes, filename: str) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    body = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


async def upload(api, person, data: bytes, filename: str = "contacts.xlsx"):
    body, headers = multipart(data, filename)
    return await api.request("POST", IMPORT, body=body, token=person.token, headers=headers, timeout=60)


def workbook(fill) -> bytes:
    book = Workbook()
    fill(book.active)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


def small_sheet() -> bytes:
    def fill(sheet):
        sheet.append(["姓名", "手机"])
        sheet.append(["张三", "13800138000"])

    return workbook(fill)


SHARED_STRINGS_OVERRIDE = (
    b'<Override PartName="/xl/sharedStrings.xml" '
    b'ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sharedStrings+xml" /></Types>'
)


def with_parts(base: bytes, parts: dict[str, bytes]) -> bytes:
    """The same XLSX with some members replaced or added (deflated at the highest level, like a
    bomb). A shared-strings part is declared in [Content_Types].xml, where openpyxl looks for it."""
    source = zipfile.ZipFile(io.BytesIO(base))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        for item in source.infolist():
            data = parts.get(item.filename, source.read(item))
            if item.filename == "[Content_Types].xml" and SHARED_STRINGS in parts and b"sharedStrings" not in data:
                data = data.replace(b"</Types>", SHARED_STRINGS_OVERRIDE)
            target.writestr(item.filename, data)
        for name, data in parts.items():
            if name not in source.namelist():
                target.writestr(name, data)
    return out.getvalue()


def shared_strings(*texts: bytes, prolog: bytes = b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n') -> bytes:
    items = b"".join(b"<si><t>" + t + b"</t></si>" for t in texts)
    return prolog + b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">' + items + b"</sst>"


async def raw_exchange(port: int, head: bytes, body_part: bytes) -> tuple[int, dict, bytes, float]:
    """Send the head and only part of the body, then read the answer: (status, headers, body, s)."""
    stream = await TCPClient().connect("127.0.0.1", port)
    started = time.monotonic()
    try:
        await stream.write(head + body_part)
        raw = await asyncio.wait_for(stream.read_until(b"\r\n\r\n"), 10)
        lines = raw.decode("latin1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:] if ":" in line)}
        body = await asyncio.wait_for(stream.read_bytes(int(headers.get("content-length", 0))), 10)
        return status, headers, body, time.monotonic() - started
    finally:
        stream.close()


# ---------------------------------------------------------------- spreadsheets
@pytest.mark.gen_test(timeout=60)
async def test_a_row_gap_to_row_one_million_is_refused_fast(api, people, raw_db):
    """4.6 KB with a row at 1,000,000 took 10 s of CPU: the gap counts towards the row limit."""
    manager = await people.manager()

    def fill(sheet):
        sheet.append(["姓名", "手机"])
        sheet.append(["张三", "13800138000"])
        sheet.cell(row=1_000_000, column=1, value="李四")

    data = workbook(fill)
    assert len(data) < 10_000
    started = time.monotonic()
    r = await upload(api, manager, data)
    elapsed = time.monotonic() - started
    assert (r.status, r.error_code) == (422, "import.too_many_rows"), r.body
    assert elapsed < 3, f"{elapsed:.1f} s"
    assert raw_db.imports.count_documents({}) == 0 and raw_db.leads.count_documents({}) == 0


@pytest.mark.gen_test(timeout=60)
async def test_blank_rows_count_towards_the_row_limit_in_csv_too(api, people, raw_db):
    manager = await people.manager()
    data = ("name\r\n" + "\r\n" * 10_001 + "张三\r\n").encode()
    r = await upload(api, manager, data, filename="contacts.csv")
    assert (r.status, r.error_code) == (422, "import.too_many_rows"), r.body
    assert raw_db.leads.count_documents({}) == 0


@pytest.mark.gen_test(timeout=60)
async def test_a_shared_strings_bomb_is_refused_before_it_is_parsed(api, people, raw_db):
    """A few KiB that inflate to 12 MiB of shared strings (which openpyxl holds in memory whole)."""
    manager = await people.manager()
    bomb = with_parts(small_sheet(), {SHARED_STRINGS: shared_strings(b"A" * (12 * 1024 * 1024), "张三".encode(), b"13800138000")})
    assert len(bomb) < 64 * 1024
    tracemalloc.start()
    try:
        started = time.monotonic()
        r = await upload(api, manager, bomb)
        elapsed = time.monotonic() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (r.status, r.error_code) == (422, "import.unpacked_too_large"), r.body
    assert r.json["error"]["message"] and elapsed < 3
    assert peak < 8 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB while refusing"
    assert raw_db.imports.count_documents({}) == 0


@pytest.mark.gen_test(timeout=60)
async def test_a_member_that_unpacks_past_the_cap_is_refused(api, people, raw_db):
    manager = await people.manager()
    padding = b"<!-- " + b" " * (40 * 1024 * 1024) + b" -->"
    sheet = zipfile.ZipFile(io.BytesIO(small_sheet())).read(SHEET)
    bomb = with_parts(small_sheet(), {SHEET: sheet.replace(b"</worksheet>", padding + b"</worksheet>")})
    r = await upload(api, manager, bomb)
    assert (r.status, r.error_code) == (422, "import.unpacked_too_large"), r.body


LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + b"".join(b'<!ENTITY lol%d "%s">' % (i, (b"&lol%d;" % (i - 1) if i > 1 else b"&lol;") * 10) for i in range(1, 10))
    + b"]>"
)
HOSTILE = {
    "billion laughs in shared strings": {SHARED_STRINGS: shared_strings(b"&lol9;", b"13800138000", prolog=LAUGHS)},
    "external entity (XXE)": {SHARED_STRINGS: shared_strings(b"&xxe;", b"13800138000", prolog=b'<?xml version="1.0"?><!DOCTYPE sst [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>')},
    "DTD in the worksheet": {SHEET: b'<?xml version="1.0"?><!DOCTYPE worksheet [<!ENTITY a "aaaaaaaaaa">]><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>&a;</t></is></c></row></sheetData></worksheet>'},
    "DTD hidden in UTF-16": {SHARED_STRINGS: ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE sst [<!ENTITY a "x">]>'
                                             '<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><si><t>&a;</t></si><si><t>1</t></si></sst>').encode("utf-16")},
    "malformed worksheet XML": {SHEET: b'<?xml version="1.0"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main"><sheetData><row r="1"><c r="A1"'},
    "malformed shared strings": {SHARED_STRINGS: b"<sst><si><t>unclosed"},
}


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("case", sorted(HOSTILE))
async def test_malformed_or_entity_xml_is_a_422_never_a_500(api, people, raw_db, case):
    manager = await people.manager()
    r = await upload(api, manager, with_parts(small_sheet(), HOSTILE[case]))
    assert (r.status, r.error_code) == (422, "import.bad_file"), (case, r.status, r.body)
    assert r.headers["Content-Type"].startswith("application/json")
    assert b"root:" not in r.body and b"lollollol" not in r.body
    assert raw_db.imports.count_documents({}) == 0 and raw_db.leads.count_documents({}) == 0


@pytest.mark.gen_test(timeout=120)
async def test_parallel_bombs_do_not_starve_a_login(api, people):
    """Six hostile uploads at once (they made a login take 27 s): each is refused (422, or 503 with
    Retry-After while the parser's queue is full) and a login meanwhile stays quick."""
    manager = await people.manager()
    await people.rep(username="quick.rep")

    def fill(sheet):
        sheet.append(["姓名"])
        sheet.cell(row=1_000_000, column=1, value="x")

    gap = workbook(fill)
    bomb = with_parts(small_sheet(), {SHARED_STRINGS: shared_strings(b"A" * (12 * 1024 * 1024), b"x")})
    uploads = [asyncio.ensure_future(upload(api, manager, gap if i % 2 else bomb)) for i in range(6)]
    started = time.monotonic()
    login = await api.post(LOGIN, json={"username": "quick.rep", "password": PASSWORD})
    login_s = time.monotonic() - started
    results = await asyncio.gather(*uploads)
    assert login.status == 200 and login_s < 2, (login.status, f"{login_s:.1f} s")
    for r in results:
        assert r.status in (422, 503), r.body
        if r.status == 503:
            assert r.error_code == "service.busy" and int(r.headers["Retry-After"]) >= 1
        else:
            assert r.error_code in ("import.too_many_rows", "import.unpacked_too_large")


# ---------------------------------------------------------------- request bodies
def post_head(path: str, length: int | None, content_type: str = "application/json") -> bytes:
    size = f"Content-Length: {length}\r\n" if length is not None else "Transfer-Encoding: chunked\r\n"
    return f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\n{size}\r\n".encode()


@pytest.mark.gen_test(timeout=60)
@pytest.mark.parametrize("path", [LOGIN, "/api/v1/public/forms/expo/submissions", "/api/v1/no-such-endpoint"])
async def test_a_19_mb_body_is_refused_before_it_is_sent(http_server, http_port, path):
    """Content-Length 19 MB, of which only 64 KiB is sent: the 413 envelope comes back anyway, so the
    server never waited for (nor buffered) the rest."""
    status, headers, body, elapsed = await raw_exchange(http_port, post_head(path, 19 * 1024 * 1024), b'{"a": "' + b"x" * 65536)
    assert status == 413 and headers["content-type"].startswith("application/json"), (status, body)
    assert json.loads(body)["error"]["code"] == "request.too_large"
    assert elapsed < 5


@pytest.mark.gen_test(timeout=60)
async def test_a_chunked_body_is_refused_once_it_passes_the_cap(http_server, http_port):
    chunk = b"x" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(20))  # 1.25 MiB, never terminated
    status, headers, body, _ = await raw_exchange(http_port, post_head(LOGIN, None), chunks)
    assert status == 413 and json.loads(body)["error"]["code"] == "request.too_large", (status, body)


@pytest.mark.gen_test(timeout=60)
async def test_a_body_within_the_cap_still_reaches_the_endpoint(api, people):
    await people.rep(username="padded.rep")
    r = await api.post(LOGIN, body=json.dumps({"username": "padded.rep", "password": PASSWORD}) + " " * 900_000)
    assert r.status == 200, r.body
    r = await api.post(LOGIN, body=json.dumps({"username": "padded.rep", "password": PASSWORD}) + " " * (1024 * 1024))
    assert (r.status, r.error_code) == (413, "request.too_large"), r.body


# ---------------------------------------------------------------- throttles
@pytest.mark.gen_test(timeout=60)
async def test_thirty_wrong_passwords_then_the_right_one_is_429(api, people):
    await people.rep(username="target.rep")
    statuses = []
    for _ in range(30):
        r = await api.post(LOGIN, json={"username": "target.rep", "password": "wrong-password"})
        statuses.append(r.status)
    assert set(statuses) <= {401, 429} and statuses[0] == 401 and statuses[-1] == 429, statuses
    r = await api.post(LOGIN, json={"username": "target.rep", "password": PASSWORD})
    assert (r.status, r.error_code) == (429, "request.rate_limited"), r.body
    assert 1 <= int(r.headers["Retry-After"]) <= 300


@pytest.mark.gen_test(timeout=60)
async def test_one_address_is_throttled_across_usernames_and_a_success_resets_nothing(api, people, raw_db):
    await people.rep(username="own.rep")
    answers = []
    for i in range(30):
        if i % 5 == 4:  # the attacker's own account, logging in fine now and then
            r = await api.post(LOGIN, json={"username": "own.rep", "password": PASSWORD})
        else:
            r = await api.post(LOGIN, json={"username": f"guess-{i}", "password": "x"})
        answers.append(r.status)
    assert 429 not in answers, answers
    r = await api.post(LOGIN, json={"username": "own.rep", "password": PASSWORD})  # the 31st
    assert (r.status, r.error_code) == (429, "request.rate_limited"), r.body
    assert int(r.headers["Retry-After"]) >= 1
    assert raw_db.rate_limits.count_documents({}) >= 1  # counted in the database: holds across instances


@pytest.mark.gen_test(timeout=60)
async def test_phone_reveals_are_throttled_per_user_and_still_audited(api, people, raw_db):
    rep = await people.rep()
    other = await people.rep()
    lead = await make_lead(api, rep, phone=unique_phone())
    path = f"/api/v1/leads/{lead['id']}/reveal"
    for _ in range(3):  # reveal_limit = 3 in this module
        r = await api.post(path, json={"field": "phone"}, token=rep.token)
        assert r.status == 200, r.body
    r = await api.post(path, json={"field": "phone"}, token=rep.token)
    assert (r.status, r.error_code) == (429, "request.rate_limited") and int(r.headers["Retry-After"]) >= 1, r.body
    assert "value" not in r.json
    audit = list(raw_db.audit_log.find({"action": "lead.reveal", "actor_id": rep.id}))
    assert [a["outcome"] for a in audit].count("ok") == 3
    assert any(a["outcome"] == "refused" and a["details"].get("reason") == "throttled" for a in audit), audit
    # Per user: someone else is not held back.
    r = await api.post(path, json={"field": "phone"}, token=other.token)
    assert r.status == 404, r.body
