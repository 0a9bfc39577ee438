"""Attachments, the attacker's list: a spoofed content type, SVG with a script, a huge multipart
preamble, many parts, forged and operator-shaped ids, and filling the disk (rate limit and quota).
Every probe gets a clean 4xx and stores nothing."""

from __future__ import annotations

import pytest

from leads_kit import LEADS, make_lead
from uploads_kit import image, multipart, stored, upload

UPLOADS = "/api/v1/uploads"
PNG = image("PNG")
SVG = b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"><script>alert(document.cookie)</script></svg>'


@pytest.fixture
def settings_overrides() -> dict:
    return {"attachment_max_bytes": 16 * 1024, "attachment_rate_limit": 12, "attachment_unattached_quota": 3}


async def post_raw(api, person, body: bytes, content_type: str, query: str = ""):
    return await api.request("POST", f"{UPLOADS}{query}", body=body, token=person.token, headers={"Content-Type": content_type})


@pytest.mark.gen_test
async def test_the_declared_type_is_never_believed(api, people, raw_db):
    rep = await people.rep()
    html = b"<html><body onload=alert(1)>hi</body></html>"
    for body, content_type in ((html, "image/png"), (SVG, "image/svg+xml"), (SVG, "image/png"), (html, "application/pdf")):
        r = await post_raw(api, rep, body, content_type, "?name=cute.png")
        assert (r.status, r.error_code) == (422, "upload.unsupported_type"), (content_type, r.body)
        r = await upload(api, rep, body, name="cute.png", content_type=content_type)
        assert (r.status, r.error_code) == (422, "upload.unsupported_type")
    assert stored(raw_db) == (0, 0)
    # a real PNG sent as text/html named page.html is stored and served as the PNG it is
    r = await upload(api, rep, PNG, name="page.html", content_type="text/html")
    assert r.status == 201 and r.json["content_type"] == "image/png" and r.json["name"] == "page.html.png"
    got = await api.get(f"{UPLOADS}/{r.json['id']}", token=rep.token)
    assert got.headers["Content-Type"] == "image/png" and got.headers["X-Content-Type-Options"] == "nosniff"
    assert 'filename="page.html.png"' in got.headers["Content-Disposition"]


@pytest.mark.gen_test
async def test_markup_hidden_in_an_image_is_a_polyglot(api, people, raw_db):
    rep = await people.rep()
    gif = image("GIF")
    for data in (gif[:-1] + b"<script>alert(1)</script>;", PNG[:33] + b"\x00\x00\x00\x10tEXt<svg onload=x>" + PNG[33:], image("WEBP") + b"<html>"):
        r = await upload(api, rep, data, name="x.gif")
        assert (r.status, r.error_code) == (422, "upload.bad_content"), r.body
    assert stored(raw_db) == (0, 0)


@pytest.mark.gen_test
async def test_a_huge_preamble_or_many_parts_are_refused_before_parsing(api, people, raw_db):
    rep = await people.rep()
    body, header = multipart([("file", "x.png", PNG, "image/png")], preamble=b"A" * (200 * 1024))
    r = await post_raw(api, rep, body, header)
    assert (r.status, r.error_code) == (413, "request.too_large")
    body, header = multipart([(f"f{n}", None, b"x", "text/plain") for n in range(50)] + [("file", "x.png", PNG, "image/png")])
    r = await post_raw(api, rep, body, header)
    assert (r.status, r.error_code) == (400, "upload.too_many_parts")
    r = await post_raw(api, rep, b"--x\r\n\r\n", "multipart/form-data")  # no boundary
    assert (r.status, r.error_code) == (400, "upload.bad_multipart")
    r = await post_raw(api, rep, b"garbage with no final boundary", "multipart/form-data; boundary=abc")
    assert (r.status, r.error_code) == (400, "upload.bad_multipart")
    assert stored(raw_db) == (0, 0)


@pytest.mark.gen_test
async def test_forged_and_operator_shaped_attachment_ids(api, people, wechat, raw_db):
    rep = await people.rep()
    customer = await people.customer(wechat[0])
    lead = await make_lead(api, rep)
    theirs = (await upload(api, customer, PNG)).json["id"]
    path = f"{LEADS}/{lead['id']}/followups"
    events = raw_db.lead_events.count_documents({})
    for ids in (["0" * 24], [theirs]):  # unknown and someone else's: the same answer
        r = await api.post(path, json={"kind": "note", "content": "x", "attachments": ids}, token=rep.token)
        assert (r.status, r.error_code) == (422, "upload.unknown") and r.json["error"]["details"][0]["field"] == "attachments.0"
    for ids, code in (([{"$ne": None}], "request.operator_key"), (["$ne"], "request.invalid"), (["a" * 24] * 10, "request.invalid"), ("0" * 24, "request.invalid")):
        r = await api.post(path, json={"kind": "note", "content": "x", "attachments": ids}, token=rep.token)
        assert (r.status, r.error_code) == (422, code), ids
    assert raw_db.lead_events.count_documents({}) == events
    assert raw_db.upload_records.find_one({"_id": theirs})["attached_to"] == []
    for forged in ('{"$ne":1}', "..%2F..%2Fetc", "0" * 25, theirs.upper()):
        r = await api.get(f"{UPLOADS}/{forged}", token=rep.token)
        assert (r.status, r.error_code) == (404, "upload.not_found"), forged


@pytest.mark.gen_test
async def test_nobody_fills_the_disk(api, people, raw_db):
    rep = await people.rep()
    for n in range(3):
        assert (await upload(api, rep, image("PNG", color=(n, 0, 0)))).status == 201
    r = await upload(api, rep, PNG)  # three unattached uploads: the quota
    assert (r.status, r.error_code) == (409, "upload.quota_exceeded")
    for _ in range(8):  # every attempt counts, refused ones too: twelve an hour
        assert (await upload(api, rep, b"nope")).status == 422
    r = await upload(api, rep, PNG)
    assert (r.status, r.error_code) == (429, "request.rate_limited") and int(r.headers["Retry-After"]) > 0
    assert stored(raw_db) == (3, 3)
