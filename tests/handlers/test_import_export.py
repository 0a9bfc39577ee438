"""Spreadsheet import of old contacts and lead export: what an admin, a manager and a rep see."""

from __future__ import annotations

import asyncio
import csv
import io
import time
import uuid

import pytest
from openpyxl import Workbook, load_workbook
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.httpserver import HTTPServer
from tornado.testing import bind_unused_port

from server.actor import Actor
from server.schemas.leads import LeadCreate

IMPORT = "/api/v1/leads/import"


def multipart(data: bytes, filename: str = "contacts.csv", fields: dict | None = None) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in (fields or {}).items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
    )
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), {"Content-Type": f"multipart/form-data; boundary={boundary}"}


def csv_file(rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    return buffer.getvalue().encode("utf-8")


def xlsx_file(rows: list[list]) -> bytes:
    book = Workbook()
    sheet = book.active
    for row in rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


async def upload(api, person, data: bytes, filename: str = "contacts.csv", **fields):
    body, headers = multipart(data, filename, fields)
    return await api.request("POST", IMPORT, body=body, token=person.token, headers=headers, timeout=60)


async def wait_done(api, person, import_id: str, deadline_s: float = 30) -> dict:
    until = time.monotonic() + deadline_s
    while True:
        r = await api.get(f"/api/v1/imports/{import_id}", token=person.token)
        assert r.status == 200, r.body
        if r.json["status"] in ("done", "failed"):
            return r.json
        assert time.monotonic() < until, f"import still {r.json['status']} after {deadline_s} s: {r.json}"
        await asyncio.sleep(0.05)


async def lead_as(ctx, person, **fields) -> dict:
    doc, _ = await ctx.leads.create(Actor.from_user(person.user), LeadCreate(**fields))
    return doc


def adds_up(report: dict) -> None:
    assert report["created"] + report["merged"] + report["rejected_count"] == report["total"] == report["done"], report


# ---------------------------------------------------------------- import
@pytest.mark.gen_test(timeout=60)
async def test_csv_import_creates_pool_leads_with_sealed_phones(api, people, raw_db):
    admin = await people.admin()
    team = await people.team()
    rep = await people.rep()
    data = csv_file([
        ["姓名", "手机", "公司", "邮箱", "城市", "标签", "备注", "等级"],
        ["张三", "13800138000", "华为", "z@example.com", "北京", "展会,老客户", "2019 年签过", "a"],
        ["李四", "+86 139-0013-9000", "", "", "", "", "", ""],
        ["", "13700137000", "无名公司", "", "", "", "", ""],
        ["王五", "12345", "", "", "", "", "", ""],
        ["赵六", "", "", "", "", "", "", ""],
    ])
    r = await upload(api, admin, data, team_id=team)
    assert r.status == 202, r.body
    report = await wait_done(api, admin, r.json["import_id"])
    assert report["status"] == "done" and report["format"] == "csv" and report["total"] == 5, report
    assert report["created"] == 3 and report["merged"] == 0, report
    assert {(x["row"], x["code"]) for x in report["rejected"]} == {(4, "import.name_required"), (5, "import.bad_phone")}
    adds_up(report)
    leads = {d["name"]: d for d in raw_db.leads.find({})}
    assert set(leads) == {"张三", "李四", "赵六"}
    zhang = leads["张三"]
    assert zhang["pool"] is True and zhang["owner_id"] is None and zhang["stage"] == "new" and zhang["team_id"] == team
    assert zhang["source"] == {"kind": "import", "import_id": r.json["import_id"]}
    assert zhang["tags"] == ["展会", "老客户"] and zhang["level"] == "A" and zhang["phone_masked"] == "138****8000"
    assert "13800138000" not in str(zhang) and leads["李四"]["phone_masked"] == "139****9000"
    assert raw_db.lead_events.count_documents({"kind": "created", "lead_id": {"$in": [d["_id"] for d in leads.values()]}}) == 3
    # They are in the team's public pool for reps to claim.
    pool = await api.get("/api/v1/pool", token=rep.token)
    assert {x["name"] for x in pool.json["items"]} == {"张三", "李四", "赵六"}, pool.body
    errors = await api.get(f"/api/v1/imports/{r.json['import_id']}/errors.csv", token=admin.token, headers={"Accept-Language": "en"})
    assert errors.status == 200 and errors.headers["Content-Type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(errors.body.decode("utf-8-sig"))))
    # Each rejected row comes back whole, under the file's own header, to be fixed and uploaded again.
    assert lines[0] == ["row", "code", "field", "message", "姓名", "手机", "公司", "邮箱", "城市", "标签", "备注", "等级"]
    assert [line[:3] for line in lines[1:]] == [["4", "import.name_required", "name"], ["5", "import.bad_phone", "phone"]]
    assert lines[1][4:] == ["", "13700137000", "无名公司"] and lines[2][4:] == ["王五", "12345"], lines


@pytest.mark.gen_test(timeout=60)
async def test_errors_csv_gives_back_every_rejected_row_to_fix_and_upload_again(api, people, raw_db):
    manager = await people.manager()
    data = xlsx_file([
        ["姓名", "手机", "公司", "备注"],
        ["张三", "13800138000", "华为", "老客户"],
        ["张三 again", "+86 138 0013 8000", "华为", "same phone"],  # a duplicate, found while writing
        ["李四", "12345", "=1+2", "bad phone"],
        ["王五", "+86 139 0013 9000", "", ""],
    ])
    r = await upload(api, manager, data, filename="old.xlsx")
    assert r.status == 202, r.body
    report = await wait_done(api, manager, r.json["import_id"])
    assert {(x["row"], x["code"]) for x in report["rejected"]} == {(3, "import.duplicate_row"), (4, "import.formula")}, report
    # Stored encrypted: the database holds no plaintext phone of the rejected rows.
    kept = list(raw_db.import_rejects.find({}))
    assert len(kept) == 2 and "13800138000" not in str(kept) and "12345" not in str(kept)
    errors = await api.get(f"/api/v1/imports/{r.json['import_id']}/errors.csv", token=manager.token)
    assert errors.status == 200, errors.body
    lines = list(csv.reader(io.StringIO(errors.body.decode("utf-8-sig"))))
    assert lines[0][4:] == ["姓名", "手机", "公司", "备注"]
    assert lines[1][0] == "3" and lines[1][4:] == ["张三 again", "'+86 138 0013 8000", "华为", "same phone"], lines
    assert lines[2][0] == "4" and lines[2][4:] == ["李四", "12345", "'=1+2", "bad phone"], lines
    assert raw_db.audit_log.count_documents({"action": "import.errors_csv", "actor_id": manager.id}) == 1
    # Fixed in place (the cells our CSV neutralised with ' read back as text) and uploaded again.
    fixed = csv_file([lines[0][4:], [lines[2][4], "13700137000", "Acme", lines[2][7]], ["赵六", lines[1][5], "", ""]])
    r = await upload(api, manager, fixed)
    report = await wait_done(api, manager, r.json["import_id"])
    assert (report["created"], report["merged"], report["rejected_count"]) == (1, 1, 0), report


@pytest.mark.gen_test(timeout=60)
async def test_xlsx_import_and_formula_cells_are_rejected_not_stored(api, people, raw_db):
    manager = await people.manager()
    data = xlsx_file([
        ["name", "phone", "company", "tags"],
        ["Alice", 13800138001, "Acme", "vip"],
        ["Bob", "13800138002", "=HYPERLINK(\"http://evil.example\",\"click\")", ""],
        ["Carol", "13800138003", "Carol Co", "=1+1"],
        ["Dave", 13800138004.0, "@SUM(A1)", ""],
        ["Erin", "13800138005", "Erin Ltd", ""],
    ])
    r = await upload(api, manager, data, filename="old.xlsx")
    assert r.status == 202, r.body
    report = await wait_done(api, manager, r.json["import_id"])
    assert report["format"] == "xlsx" and report["created"] == 2, report
    assert sorted((x["row"], x["code"], x["field"]) for x in report["rejected"]) == [
        (3, "import.formula", "company"), (4, "import.formula", "tags"), (5, "import.formula", "company"),
    ]
    adds_up(report)
    stored = list(raw_db.leads.find({}))
    assert sorted(d["name"] for d in stored) == ["Alice", "Erin"]
    assert all(d["team_id"] == manager.team_id for d in stored)
    assert not any("HYPERLINK" in str(d) or "SUM" in str(d) for d in stored)


@pytest.mark.gen_test(timeout=60)
async def test_csv_formula_cells_are_rejected(api, people, raw_db):
    manager = await people.manager()
    data = csv_file([
        ["name", "phone", "company", "notes"],
        ["=cmd|' /C calc'!A0", "", "", ""],
        ["Ok", "+86 138 0013 8010", "", ""],  # a phone with +86 is not a formula
        ["Minus", "", "-2+3", ""],
        ["Plus", "", "", "+SUM(1)"],
        ["At", "", "@foo", ""],
    ])
    r = await upload(api, manager, data)
    report = await wait_done(api, manager, r.json["import_id"])
    assert report["created"] == 1 and [x["code"] for x in report["rejected"]] == ["import.formula"] * 4, report
    adds_up(report)
    assert [d["name"] for d in raw_db.leads.find({})] == ["Ok"]


@pytest.mark.gen_test(timeout=60)
async def test_existing_phone_is_merged_and_duplicates_in_the_file_rejected(api, people, ctx, raw_db):
    manager = await people.manager()
    rep = await people.rep()
    existing = await lead_as(ctx, rep, name="老王", phone="13900001111", tags=["old"])
    data = csv_file([
        ["name", "phone", "tags"],
        ["王先生", "139-0000-1111", "vip,展会"],
        ["New Person", "13900002222", ""],
        ["Same Again", "13900002222", "x"],
        ["王先生 again", "+8613900001111", ""],
    ])
    r = await upload(api, manager, data)
    report = await wait_done(api, manager, r.json["import_id"])
    assert report["merged"] == 1 and report["created"] == 1, report
    assert sorted((x["row"], x["code"]) for x in report["rejected"]) == [(4, "import.duplicate_row"), (5, "import.duplicate_row")]
    adds_up(report)
    assert raw_db.leads.count_documents({}) == 2
    lead = raw_db.leads.find_one({"_id": existing["_id"]})
    assert sorted(lead["tags"]) == sorted(["old", "vip", "展会"]) and lead["name"] == "老王" and lead["owner_id"] == rep.id
    assert lead["version"] == 2
    timeline = await api.get(f"/api/v1/leads/{existing['_id']}/timeline", token=rep.token)
    assert timeline.json["items"][0]["kind"] == "imported", timeline.body


@pytest.mark.gen_test(timeout=60)
async def test_a_phone_outside_the_managers_team_is_not_touched(api, people, ctx, raw_db):
    manager = await people.manager()
    other_rep = await people.rep(team="华南销售部")
    theirs = await lead_as(ctx, other_rep, name="Theirs", phone="13900003333", tags=["t"])
    r = await upload(api, manager, csv_file([["name", "phone", "tags"], ["Mine", "13900003333", "hijack"]]))
    report = await wait_done(api, manager, r.json["import_id"])
    assert [x["code"] for x in report["rejected"]] == ["import.phone_exists"] and report["merged"] == 0, report
    assert raw_db.leads.find_one({"_id": theirs["_id"]})["tags"] == ["t"]


@pytest.mark.gen_test(timeout=60)
async def test_bad_header_rejects_the_whole_file(api, people, raw_db):
    manager = await people.manager()
    for rows in ([["name", "phone", "salary"], ["A", "13800138000", "1"]], [["phone", "company"], ["13800138000", "X"]], [["名称"], ["A"]]):
        r = await upload(api, manager, csv_file(rows))
        assert r.status == 422 and r.error_code == "import.bad_header", r.body
    # the unknown header comes back as data (value) beside a message in the caller's language
    body, headers = multipart(csv_file([["姓名", "薪水"], ["A", "1"]]), "contacts.csv", {})
    for language, message in ((None, "未知的列：薪水"), ("en", "unknown column: 薪水")):
        r = await api.request("POST", IMPORT, body=body, token=manager.token, timeout=60,
                              headers={**headers, **({"Accept-Language": language} if language else {})})
        assert r.error_code == "import.bad_header", r.body
        assert r.json["error"]["details"] == [{"field": "column 2", "code": "unknown", "message": message, "value": "薪水"}]
    r = await upload(api, manager, xlsx_file([["姓名", "职位"], ["A", "CEO"]]), filename="x.xlsx")
    assert r.status == 422 and r.error_code == "import.bad_header", r.body
    r = await upload(api, manager, b"PK\x03\x04 not really a zip", filename="x.xlsx")
    assert r.status == 422 and r.error_code == "import.bad_file", r.body
    assert raw_db.imports.count_documents({}) == 0 and raw_db.leads.count_documents({}) == 0


@pytest.mark.gen_test(timeout=60)
async def test_too_many_rows_rejects_the_whole_file(api, people, raw_db):
    manager = await people.manager()
    rows = [["name", "phone"]] + [[f"P{i}", ""] for i in range(10_001)]
    r = await upload(api, manager, csv_file(rows))
    assert r.status == 422 and r.error_code == "import.too_many_rows", r.body
    assert raw_db.imports.count_documents({}) == 0 and raw_db.leads.count_documents({}) == 0


@pytest.mark.gen_test(timeout=60)
async def test_request_shape_and_team_rules(api, people, raw_db):
    admin = await people.admin()
    manager = await people.manager()
    other_team = await people.team("华南销售部")
    rep = await people.rep()
    data = csv_file([["name"], ["A"]])
    r = await upload(api, rep, data)
    assert r.status == 403 and r.error_code == "auth.forbidden", r.body
    r = await upload(api, admin, data)
    assert r.status == 422 and r.error_code == "import.team_required", r.body
    r = await upload(api, admin, data, team_id="0" * 24)
    assert r.status == 422 and r.error_code == "team.not_found", r.body
    r = await upload(api, manager, data, team_id=other_team)
    assert r.status == 403, r.body
    r = await api.post(IMPORT, json={"name": "A"}, token=manager.token)
    assert r.status == 415 and r.error_code == "import.multipart_required", r.body
    body, headers = multipart(b"", "empty.csv")
    r = await api.request("POST", IMPORT, body=body, token=manager.token, headers=headers)
    assert r.status == 422 and r.error_code == "import.file_required", r.body
    assert raw_db.imports.count_documents({}) == 0


@pytest.mark.gen_test(timeout=60)
async def test_import_reports_are_scoped(api, people):
    manager = await people.manager()
    rep = await people.rep()
    other_manager = await people.manager(team="华南销售部")
    admin = await people.admin()
    r = await upload(api, manager, csv_file([["name"], ["A"]]))
    import_id = r.json["import_id"]
    await wait_done(api, manager, import_id)
    assert (await api.get(f"/api/v1/imports/{import_id}", token=rep.token)).status == 403
    for path in (f"/api/v1/imports/{import_id}", f"/api/v1/imports/{import_id}/errors.csv", "/api/v1/imports/nope"):
        r = await api.get(path, token=other_manager.token)
        assert r.status == 404 and r.error_code == "import.not_found", (path, r.body)
    assert (await api.get(f"/api/v1/imports/{import_id}", token=admin.token)).status == 200


@pytest.mark.gen_test(timeout=120)
async def test_fifty_megabytes_get_a_413_envelope(app, people, settings):
    """The server is configured as in production (max_body_size = the upload cap)."""
    manager = await people.manager()
    sock, port = bind_unused_port()
    server = HTTPServer(app, max_body_size=settings.upload_body_limit)
    server.add_sockets([sock])
    try:
        body, headers = multipart(b"name\r\n" + b"x" * (50 * 1024 * 1024), "huge.csv")
        req = HTTPRequest(f"http://127.0.0.1:{port}{IMPORT}", method="POST", body=body, request_timeout=100,
                          headers={**headers, "Authorization": f"Bearer {manager.token}"})
        resp = await AsyncHTTPClient().fetch(req, raise_error=False)
        assert resp.code == 413, (resp.code, resp.error)
        assert resp.headers["Content-Type"].startswith("application/json")
        assert b'"request.too_large"' in resp.body
    finally:
        server.stop()


@pytest.mark.gen_test(timeout=120)
async def test_ten_thousand_rows_import_in_reasonable_time(api, people, raw_db):
    manager = await people.manager()
    rows = [["name", "phone", "company", "tags"]] + [[f"客户{i}", f"139{i:08d}", f"公司{i % 97}", "老客户"] for i in range(10_000)]
    started = time.monotonic()
    r = await upload(api, manager, csv_file(rows))
    assert r.status == 202, r.body
    report = await wait_done(api, manager, r.json["import_id"], deadline_s=90)
    elapsed = time.monotonic() - started
    assert report["status"] == "done" and report["created"] == 10_000, {k: v for k, v in report.items() if k != "rejected"}
    adds_up(report)
    assert raw_db.leads.count_documents({}) == 10_000
    print(f"\n10,000-row import: {elapsed:.1f} s")


# ---------------------------------------------------------------- export
@pytest.mark.gen_test(timeout=60)
async def test_rep_exports_only_their_leads_masked_and_neutralised(api, people, ctx, raw_db):
    rep = await people.rep()
    other = await people.rep()
    await lead_as(ctx, rep, name="Mine", phone="13800138000", company='=HYPERLINK("http://evil.example","x")', tags=["a", "b"])
    await lead_as(ctx, rep, name="Also mine", company="-1+2")
    await lead_as(ctx, other, name="Not mine", phone="13800138111")
    r = await api.get("/api/v1/leads/export?format=csv", token=rep.token)
    assert r.status == 200, r.body
    assert r.headers["Content-Type"] == "text/csv; charset=utf-8"
    assert r.headers["Content-Disposition"].startswith("attachment;")
    assert r.body.startswith("\ufeff".encode())
    rows = list(csv.DictReader(io.StringIO(r.body.decode("utf-8-sig"))))
    assert list(rows[0]) == ["编号", "姓名", "公司", "手机", "城市", "等级", "阶段", "负责人", "标签", "下次跟进", "创建时间"]
    by_name = {row["姓名"]: row for row in rows}
    assert set(by_name) == {"Mine", "Also mine"}
    assert by_name["Mine"]["手机"] == "138****8000" and "13800138000" not in r.body.decode("utf-8-sig")
    assert by_name["Mine"]["公司"] == '\'=HYPERLINK("http://evil.example","x")'
    assert by_name["Also mine"]["公司"] == "'-1+2"
    assert by_name["Mine"]["标签"] == "a,b" and by_name["Mine"]["负责人"] == rep.user["name"]
    audit = list(raw_db.audit_log.find({"action": "lead.export"}))
    assert len(audit) == 1 and audit[0]["actor_id"] == rep.id and audit[0]["details"] == {"format": "csv", "rows": 2}


@pytest.mark.gen_test(timeout=60)
async def test_xlsx_export_opens_and_holds_no_formulas(api, people, ctx, raw_db):
    admin = await people.admin()
    rep = await people.rep()
    await lead_as(ctx, rep, name="A", phone="13800138000", company='=HYPERLINK("http://evil.example","x")')
    await lead_as(ctx, rep, name="B")
    r = await api.get("/api/v1/leads/export?format=xlsx", token=admin.token)
    assert r.status == 200, r.body
    assert r.headers["Content-Type"] == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    sheet = load_workbook(io.BytesIO(r.body)).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("编号", "姓名", "公司", "手机", "城市", "等级", "阶段", "负责人", "标签", "下次跟进", "创建时间")
    assert sorted(row[1] for row in rows[1:]) == ["A", "B"]
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)
    a = next(row for row in rows[1:] if row[1] == "A")
    assert a[2].startswith("'=") and a[3] == "138****8000"
    assert raw_db.audit_log.find_one({"action": "lead.export"})["details"] == {"format": "xlsx", "rows": 2}
    r = await api.get("/api/v1/leads/export?format=pdf", token=admin.token)
    assert r.status == 422


@pytest.mark.gen_test(timeout=60)
async def test_export_speaks_the_callers_language_with_owner_names_and_local_times(api, people, ctx):
    from datetime import datetime, timezone

    rep = await people.rep(name="李雷")
    manager = await people.manager()
    follow_up = datetime(2030, 1, 7, 3, 0, tzinfo=timezone.utc)  # 11:00 in Shanghai
    lead = await lead_as(ctx, rep, name="王先生", city="北京", level="A", next_followup_at=follow_up)
    created_local = lead["created_at"].astimezone(ctx.settings.tz).strftime("%Y-%m-%d %H:%M")
    # A manager's export, in English.
    r = await api.get("/api/v1/leads/export?format=csv", token=manager.token, headers={"Accept-Language": "en-US,en;q=0.9"})
    assert r.status == 200, r.body
    [row] = list(csv.DictReader(io.StringIO(r.body.decode("utf-8-sig"))))
    assert list(row) == ["ID", "Name", "Company", "Phone", "City", "Level", "Stage", "Owner", "Tags", "Next follow-up", "Created"]
    assert row["Name"] == "王先生" and row["City"] == "北京" and row["Level"] == "A" and row["Stage"] == "New"
    assert row["Owner"] == "李雷" and row["Next follow-up"] == "2030-01-07 11:00" and row["Created"] == created_local
    # The same in Chinese, and in XLSX.
    r = await api.get("/api/v1/leads/export?format=xlsx", token=manager.token, headers={"Accept-Language": "zh-CN"})
    assert r.status == 200, r.body
    header, values = list(load_workbook(io.BytesIO(r.body)).active.iter_rows(values_only=True))
    got = dict(zip(header, values))
    assert got["姓名"] == "王先生" and got["城市"] == "北京" and got["等级"] == "A" and got["阶段"] == "新线索"
    assert got["负责人"] == "李雷" and got["下次跟进"] == "2030-01-07 11:00" and got["创建时间"] == created_local


@pytest.mark.gen_test(timeout=60)
async def test_export_and_import_need_a_token(api):
    assert (await api.get("/api/v1/leads/export")).status == 401
    body, headers = multipart(csv_file([["name"], ["A"]]))
    assert (await api.request("POST", IMPORT, body=body, headers=headers)).status == 401


@pytest.mark.gen_test
async def test_an_import_whose_process_died_is_marked_failed(api, people, ctx, raw_db):
    from datetime import datetime, timedelta, timezone

    from bson import ObjectId

    from jobs.registry import load_jobs, run_job

    load_jobs()
    mgr = await people.manager()
    then = datetime.now(timezone.utc) - timedelta(minutes=30)
    # A crash leaves this state behind; no API produces it, so it is written directly.
    stalled = {"_id": ObjectId(), "status": "running", "format": "csv", "filename": "a.csv", "team_id": mgr.team_id, "total": 10,
               "done": 5, "created": 5, "merged": 0, "rejected": [], "created_by": mgr.id, "created_at": then, "heartbeat_at": then,
               "finished_at": None}
    fresh = {**stalled, "_id": ObjectId(), "heartbeat_at": datetime.now(timezone.utc)}
    raw_db.imports.insert_many([stalled, fresh])
    result = await run_job(ctx, "fail_stalled_imports")
    assert result["failed"] == 1
    r = await api.get(f"/api/v1/imports/{stalled['_id']}", token=mgr.token)
    assert r.status == 200 and r.json["status"] == "failed" and r.json["done"] == 5, r.body
    assert (await api.get(f"/api/v1/imports/{fresh['_id']}", token=mgr.token)).json["status"] == "running"
