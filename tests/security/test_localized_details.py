"""Details in the caller's language disclose no more than the English ones did: a duplicate phone
names only a lead the caller may see, in neither language otherwise, and text a caller sent (an
import's header) is echoed as data, bounded, and never read as a template."""

from __future__ import annotations

import uuid

import pytest

from leads_kit import LEADS, make_lead

IMPORT = "/api/v1/leads/import"


def _csv_upload(text: str) -> tuple[bytes, dict]:
    boundary = uuid.uuid4().hex
    body = (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="contacts.csv"\r\n'
            f"Content-Type: text/csv\r\n\r\n{text}\r\n--{boundary}--\r\n").encode()
    return body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}


@pytest.mark.gen_test
async def test_a_duplicate_phone_never_names_a_lead_the_caller_cannot_see_in_any_language(api, people, raw_db):
    owner, other = await people.rep(), await people.rep()
    lead = await make_lead(api, owner, name="别人的", phone="13900006666")
    for headers in ({}, {"Accept-Language": "en"}, {"Accept-Language": "zh-CN"}):
        r = await api.post(LEADS, json={"name": "重复", "phone": "13900006666"}, token=other.token, headers=headers)
        assert r.status == 409 and r.error_code == "lead.duplicate", r.body
        assert lead["id"] not in r.body.decode()
        [item] = r.json["error"]["details"]
        assert "value" not in item and item["code"] == "duplicate"
    assert raw_db.leads.count_documents({}) == 1


@pytest.mark.gen_test(timeout=60)
async def test_an_import_header_is_echoed_as_bounded_data_not_as_a_template(api, people):
    manager = await people.manager()
    hostile = "{header}{0}{lead_id!r}{__class__}" + "x" * 200
    body, headers = _csv_upload(f"姓名,{hostile}\r\nA,1\r\n")
    for language in ("zh-CN", "en"):
        r = await api.request("POST", IMPORT, body=body, token=manager.token, timeout=60, headers={**headers, "Accept-Language": language})
        assert r.status == 422 and r.error_code == "import.bad_header", r.body
        [item] = r.json["error"]["details"]
        assert item["value"] == hostile[:64]
        assert item["message"].endswith(hostile[:64]) and len(item["message"]) < 100
