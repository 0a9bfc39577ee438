"""Attachments over HTTP: images and PDF accepted and served back with safe headers, anything else
refused with nothing stored, and a file served only to those who may see what it is attached to
(follow-ups: the lead's timeline; contracts: the contract)."""

from __future__ import annotations

import hashlib
import urllib.parse

import pytest

from leads_kit import LEADS, make_lead
from uploads_kit import image, multipart, pdf, stored, upload

UPLOADS = "/api/v1/uploads"
LIMIT = 16 * 1024  # the module's file limit: small files, one just over it


@pytest.fixture
def settings_overrides() -> dict:
    return {"attachment_max_bytes": LIMIT}


@pytest.mark.gen_test
async def test_png_jpeg_pdf_are_stored_and_served_back_with_safe_headers(api, people, wechat, raw_db):
    customer = await people.customer(wechat[0])
    png, jpeg, doc = image("PNG"), image("JPEG"), pdf()
    r = await upload(api, customer, png, name="门头照.png")
    assert r.status == 201, r.body
    made = r.json
    assert made["content_type"] == "image/png" and made["size"] == len(png) and made["name"] == "门头照.png"
    assert made["sha256"] == hashlib.sha256(png).hexdigest() and made["created_at"] and r.headers["Location"] == f"{UPLOADS}/{made['id']}"
    # the declared type means nothing: a JPEG sent as application/octet-stream named .png is a JPEG
    r = await upload(api, customer, jpeg, name="scan.png", content_type="application/octet-stream")
    assert r.status == 201 and r.json["content_type"] == "image/jpeg" and r.json["name"] == "scan.png.jpg"
    # the file as the body itself, its name in the query
    r = await api.request("POST", f"{UPLOADS}?name=合同.pdf", body=doc, token=customer.token, headers={"Content-Type": "application/pdf"})
    assert r.status == 201, r.body
    pdf_id = r.json["id"]
    assert r.json["content_type"] == "application/pdf" and r.json["name"] == "合同.pdf"

    got = await api.get(f"{UPLOADS}/{made['id']}", token=customer.token)
    assert got.status == 200 and got.body == png
    assert got.headers["Content-Type"] == "image/png" and got.headers["X-Content-Type-Options"] == "nosniff"
    assert got.headers["Content-Disposition"] == "inline; filename=\"___.png\"; filename*=UTF-8''" + urllib.parse.quote("门头照.png")
    assert "default-src 'none'" in got.headers["Content-Security-Policy"] and got.headers["Cache-Control"].startswith("private")
    got = await api.get(f"{UPLOADS}/{pdf_id}", token=customer.token)
    assert got.status == 200 and got.body == doc and got.headers["Content-Disposition"].startswith("attachment;")
    meta = await api.get(f"{UPLOADS}/{pdf_id}/meta", token=customer.token)
    assert meta.status == 200 and meta.json["sha256"] == hashlib.sha256(doc).hexdigest()
    assert stored(raw_db) == (3, 3)


PNG = image("PNG")
REFUSED = [
    ("html named .png", b"<!doctype html><html><script>alert(1)</script></html>", "x.png", 422, "upload.unsupported_type"),
    ("an exe", b"MZ\x90\x00\x03" + b"\x00" * 200, "setup.png", 422, "upload.unsupported_type"),
    ("pdf header, then garbage", b"%PDF-1.7\n" + bytes(range(256)) * 4, "a.pdf", 422, "upload.bad_content"),
    ("png + html after IEND", PNG + b"<html><script>alert(1)</script></html>", "x.png", 422, "upload.bad_content"),
    ("pdf + zip appended", pdf() + b"PK\x03\x04" + b"\x00" * 40 + b"PK\x05\x06" + b"\x00" * 18, "a.pdf", 422, "upload.bad_content"),
    ("png header, truncated", PNG[:40], "x.png", 422, "upload.bad_content"),
    ("zero bytes", b"", "x.png", 422, "upload.empty"),
    ("over the limit", PNG + b"\x00" * LIMIT, "x.png", 413, "upload.too_large"),
    ("a right-to-left override in the name", PNG, "evil\u202egnp.exe", 422, "upload.bad_name"),
    ("a control character in the part's header", PNG, "evil\x07.png", 400, "upload.bad_multipart"),
    ("a path in the name", PNG, "../../etc/passwd.png", 422, "upload.bad_name"),
]


@pytest.mark.gen_test
async def test_what_is_not_an_image_or_pdf_is_refused_and_nothing_is_stored(api, people, raw_db):
    rep = await people.rep()
    for label, data, name, status, code in REFUSED:
        r = await upload(api, rep, data, name=name)
        assert (r.status, r.error_code) == (status, code), (label, r.body)
    body, header = multipart([("photo", "x.png", PNG, "image/png")])  # the wrong field
    r = await api.request("POST", UPLOADS, body=body, token=rep.token, headers={"Content-Type": header})
    assert (r.status, r.error_code) == (422, "upload.file_required")
    body, header = multipart([("file", "a.png", PNG, "image/png"), ("file", "b.png", PNG, "image/png")])  # two files
    r = await api.request("POST", UPLOADS, body=body, token=rep.token, headers={"Content-Type": header})
    assert (r.status, r.error_code) == (422, "upload.file_required")
    assert stored(raw_db) == (0, 0)


@pytest.mark.gen_test
async def test_a_customer_cannot_read_another_customers_upload(api, people, wechat):
    alice, bob = await people.customer(wechat[0]), await people.customer(wechat[0])
    made = (await upload(api, alice, PNG)).json
    for path in (f"{UPLOADS}/{made['id']}", f"{UPLOADS}/{made['id']}/meta"):
        r = await api.get(path, token=bob.token)
        assert (r.status, r.error_code) == (404, "upload.not_found")
        assert (await api.get(path, token=alice.token)).status == 200
    unknown = await api.get(f"{UPLOADS}/{'0' * 24}", token=alice.token)
    assert (unknown.status, unknown.error_code) == (404, "upload.not_found")


@pytest.mark.gen_test
async def test_a_followup_attachment_is_seen_by_the_leads_readers_only(api, people, raw_db):
    rep, manager = await people.rep(), await people.manager()
    stranger = await people.rep(team="华南销售部")
    lead = await make_lead(api, rep)
    photo = (await upload(api, rep, PNG, name="visit.png")).json
    r = await api.post(f"{LEADS}/{lead['id']}/followups", json={"kind": "call", "content": "聊了报价", "attachments": [photo["id"]]}, token=rep.token)
    assert r.status == 201, r.body
    shown = [{"id": photo["id"], "name": "visit.png", "content_type": "image/png", "size": len(PNG)}]
    assert r.json["attachments"] == shown
    timeline = (await api.get(f"{LEADS}/{lead['id']}/timeline", token=rep.token)).json["items"]
    assert [e["data"]["attachments"] for e in timeline if e["kind"] == "followup"] == [shown]
    for reader in (rep, manager):
        got = await api.get(f"{UPLOADS}/{photo['id']}", token=reader.token)
        assert got.status == 200 and got.body == PNG
    r = await api.get(f"{UPLOADS}/{photo['id']}", token=stranger.token)
    assert (r.status, r.error_code) == (404, "upload.not_found")
    # someone else's upload cannot be attached to the stranger's own lead: 422 naming the index, nothing written
    own = await make_lead(api, stranger)
    mine = (await upload(api, stranger, PNG)).json
    events = raw_db.lead_events.count_documents({})
    r = await api.post(f"{LEADS}/{own['id']}/followups", json={"kind": "note", "content": "x", "attachments": [mine["id"], photo["id"]]}, token=stranger.token)
    assert (r.status, r.error_code) == (422, "upload.unknown") and r.json["error"]["details"][0]["field"] == "attachments.1"
    assert raw_db.lead_events.count_documents({}) == events
    assert raw_db.upload_records.find_one({"_id": mine["id"]})["attached_to"] == []


@pytest.mark.gen_test
async def test_a_contract_draft_shows_its_attachments_to_those_who_see_the_contract(api, people):
    rep = await people.rep()
    stranger = await people.rep(team="华南销售部")
    lead = await make_lead(api, rep)
    scan = (await upload(api, rep, pdf(), name="报价单.pdf")).json
    body = {"lead_id": lead["id"], "title": "年度服务合同", "amount_fen": 100_000, "start_date": "2027-01-01", "end_date": "2027-12-31", "attachments": [scan["id"]]}
    r = await api.post("/api/v1/contracts", json=body, token=rep.token)
    assert r.status == 201, r.body
    contract = (await api.get(f"/api/v1/contracts/{r.json['id']}", token=rep.token)).json
    assert contract["attachments"] == [{"id": scan["id"], "name": "报价单.pdf", "content_type": "application/pdf", "size": scan["size"]}]
    photo = (await upload(api, rep, PNG)).json
    r = await api.patch(f"/api/v1/contracts/{contract['id']}", json={"version": contract["version"], "attachments": [scan["id"], photo["id"]]}, token=rep.token)
    assert r.status == 200, r.body
    assert [a["id"] for a in r.json["attachments"]] == [scan["id"], photo["id"]]
    assert (await api.get(f"{UPLOADS}/{photo['id']}", token=rep.token)).status == 200
    r = await api.get(f"{UPLOADS}/{scan['id']}", token=stranger.token)
    assert (r.status, r.error_code) == (404, "upload.not_found")
