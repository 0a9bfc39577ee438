"""Shared helpers for the form / submission / personal-data tests (tests/handlers/test_forms.py,
test_submissions.py, test_personal_data.py): a form that uses every field type, and a few small
request helpers. Kept out of conftest.py so those tests do not step on other modules' fixtures.
"""

from __future__ import annotations

import copy
import itertools
import re
from typing import Any

FORMS = "/api/v1/forms"
PHONE = "13800138000"
PHONE_DISPLAY = "+86 138-0013-8000"
PHONE_MASKED = "138****8000"

# A mainland mobile number anywhere in free text. The look-arounds keep it from matching inside
# hex ids, HMACs and base64 ciphertext (those are runs of [0-9a-zA-Z+/=] where an 11-digit stretch
# appears by chance), while a number in a value, a sentence or next to Chinese text still matches.
MOBILE_IN_TEXT = re.compile(r"(?<![0-9A-Za-z+/])1[3-9]\d{9}(?![0-9A-Za-z+/=])")

_counter = itertools.count(1)


def unique_phone() -> str:
    """A fresh valid mainland mobile number per call (139 + 8 digits); each test has its own DB."""
    return f"139{next(_counter):08d}"


def expo_form(slug: str = "expo-2026", team_id: str | None = None, **changes: Any) -> dict:
    """A form with every field type, limits, tag-mapped options and default tags."""
    form = {
        "slug": slug,
        "title": "2026 展会报名",
        "description": "留下联系方式，我们会尽快联系您",
        "team_id": team_id,
        "default_tags": ["expo"],
        "fields": [
            {"key": "name", "label": "姓名", "type": "text", "required": True, "max_length": 20, "maps_to": "name"},
            {"key": "mobile", "label": "手机", "type": "phone", "required": True},
            {"key": "email", "label": "邮箱", "type": "email"},
            {"key": "company", "label": "公司", "type": "text", "maps_to": "company"},
            {"key": "age", "label": "年龄", "type": "number", "min": 18, "max": 99},
            {
                "key": "interest", "label": "意向产品", "type": "select", "required": True,
                "options": [
                    {"value": "crm", "label": "CRM", "tag": "crm"},
                    {"value": "erp", "label": "ERP", "tag": "erp"},
                    {"value": "other", "label": "其他"},
                ],
            },
            {
                "key": "channels", "label": "了解渠道", "type": "multiselect",
                "options": [
                    {"value": "wechat", "label": "微信", "tag": "from-wechat"},
                    {"value": "friend", "label": "朋友"},
                    {"value": "ad", "label": "广告", "tag": "from-ad"},
                ],
            },
            {"key": "visit_date", "label": "到访日期", "type": "date"},
            {"key": "message", "label": "留言", "type": "textarea", "max_length": 100, "maps_to": "notes"},
        ],
    }
    form.update(copy.deepcopy(changes))
    return form


def answers(**changes: Any) -> dict:
    """Valid answers for :func:`expo_form`; pass ``key=None`` to leave a key out."""
    base = {
        "name": "张三",
        "mobile": PHONE_DISPLAY,
        "email": "zhangsan@example.com",
        "company": "北京某某科技有限公司",
        "age": 35,
        "interest": "crm",
        "channels": ["wechat", "friend"],
        "visit_date": "2026-05-01",
        "message": "想了解一下价格",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


async def create_form(api, admin, team_id: str, **kw: Any) -> dict:
    r = await api.post(FORMS, json=expo_form(team_id=team_id, **kw), token=admin.token)
    assert r.status == 201, r.body
    return r.json


def submit_path(slug: str = "expo-2026") -> str:
    return f"/api/v1/public/forms/{slug}/submissions"


async def submit(api, body: dict, slug: str = "expo-2026", *, key: str | None = None, token: str | None = None, headers: dict | None = None):
    hdrs = dict(headers or {})
    if key:
        hdrs["Idempotency-Key"] = key
    return await api.post(submit_path(slug), json=body, token=token, headers=hdrs)


def lead_of(raw_db, submission) -> str:
    """The lead a submission reached, as staff find it (the submission is its timeline event). The
    public answer is a receipt of the submission and carries no lead id. ``submission`` is the
    response or its JSON body."""
    body = submission.json if hasattr(submission, "json") else submission
    from bson import ObjectId

    return raw_db.lead_events.find_one({"_id": ObjectId(body["submission_id"])})["lead_id"]


def detail_fields(response) -> list[str]:
    return [d.get("field") for d in (response.json or {}).get("error", {}).get("details", [])]
