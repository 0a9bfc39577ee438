"""Forms designed by admins and filled in by customers in the mini-program.

A form's definition is versioned: every edit of its fields makes a new version, the previous one is
kept in ``form_versions``, and each submission records the version it was made against.

A form is shared as a mini-program code (``qrcode``: WeChat's wxacode.getUnlimited for the form page
with the scene ``<slug>`` or ``<slug>~<referrer id>``, the one the page reads).
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from pymongo import ReturnDocument
from pymongo.errors import DuplicateKeyError

from server.actor import STAFF_ROLES, Actor, require_role
from server.clock import Clock
from server.errors import Conflict, Forbidden, Invalid, NotFound, VersionMismatch, detail
from server.ids import maybe_oid, parse_oid
from server.paging import Page, paginate
from server.schemas.common import DATE_MAX, DATE_MIN, INT64_MAX, text_problem
from server.schemas.forms import DEFAULT_MAX_LENGTH, FormCreate, FormUpdate
from server.security import normalise_mainland_mobile
from server.services.audit import AuditService

_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

# The mini-program code of a form: the page that reads ``?scene=`` (miniprogram/pages/form/form.js),
# WeChat's scene limit, and the build it opens by MPCRM_WECHAT_MINIPROGRAM_STATE.
QR_PAGE = "pages/form/form"
QR_SCENE_MAX = 32
QR_REF_LENGTH = 24
QR_ENV_VERSIONS = {"formal": "release", "trial": "trial", "developer": "develop"}
# Codes never expire at WeChat; each instance keeps the last few it drew for a short while, so a
# designer reopened (or a page of cards printed) does not ask WeChat again.
QR_CACHE_TTL = timedelta(minutes=10)
QR_CACHE_MAX = 64


@dataclass(frozen=True)
class QrCode:
    image: bytes
    content_type: str
    scene: str


@dataclass
class CleanAnswers:
    """Validated answers plus what they mean for the lead."""

    answers: dict[str, Any]
    phone: str | None
    lead_fields: dict[str, str]
    tags: list[str]


def _num(value: Any) -> Any:
    """18.0 reads as 18 to a customer."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _p(message: str, text: str, **params: Any) -> tuple[str, str, dict]:
    """A problem with an answer: its English message, and its entry in ``DETAIL_MESSAGES`` (with
    params) from which the customer's language is rendered."""
    return message, text, params


def _bad(field: str, code: str, problem: tuple[str, str, dict]) -> dict:
    message, text, params = problem
    return {**detail(f"answers.{field}", code, text=text, **params), "message": message}


def validate_answers(form: dict, answers: dict[str, Any], phone_from_code: str | None = None) -> CleanAnswers:
    """Check answers against the form's own definition; every problem is named by its field."""
    fields = {f["key"]: f for f in form["fields"]}
    errors = [_bad(key, "unknown_field", _p("not a field of this form", "answer_unknown")) for key in answers if key not in fields]
    clean: dict[str, Any] = {}
    phone = phone_from_code
    lead_fields: dict[str, str] = {}
    tags: list[str] = list(form.get("default_tags", []))
    for key, spec in fields.items():
        value = answers.get(key)
        if spec["type"] == "phone" and phone_from_code and value in (None, ""):
            value = phone_from_code
        if value is None or value == "" or value == []:
            if spec.get("required"):
                errors.append(_bad(key, "required", _p("this field is required", "answer_required")))
            continue
        ok, result, message = _check_value(spec, value)
        if not ok:
            errors.append(_bad(key, "invalid", message))
            continue
        clean[key] = result
        if spec["type"] == "phone":
            phone = result
        if spec.get("maps_to"):
            lead_fields[spec["maps_to"]] = result if isinstance(result, str) else ",".join(map(str, result)) if isinstance(result, list) else str(result)
        for option in spec.get("options") or []:
            chosen = result if isinstance(result, list) else [result]
            if option["value"] in chosen and option.get("tag"):
                tags.append(option["tag"])
    if errors:
        raise Invalid("submission.invalid_answers", details=errors)
    return CleanAnswers(answers=clean, phone=phone, lead_fields=lead_fields, tags=sorted(set(tags)))


def _check_value(spec: dict, value: Any) -> tuple[bool, Any, Any]:
    kind = spec["type"]
    if kind in ("text", "textarea", "email"):
        if not isinstance(value, str):
            return False, None, _p("must be text", "answer_text")
        value = value.strip()
        if kind == "textarea":
            value = value.replace("\r\n", "\n").replace("\r", "\n")
        if text_problem(value, multiline=kind == "textarea"):
            return False, None, _p("control characters are not allowed" + (" (tab and newline are)" if kind == "textarea" else ""), "answer_control_multiline" if kind == "textarea" else "answer_control")
        limit = spec.get("max_length") or DEFAULT_MAX_LENGTH[kind]
        if len(value) > limit:
            return False, None, _p(f"longer than {limit} characters", "answer_too_long", limit=limit)
        if spec.get("min_length") and len(value) < spec["min_length"]:
            return False, None, _p(f"shorter than {spec['min_length']} characters", "answer_too_short", limit=spec["min_length"])
        if kind == "email" and not _EMAIL_RE.match(value):
            return False, None, _p("not an email address", "answer_email")
        return True, value, ""
    if kind == "phone":
        normal = normalise_mainland_mobile(value) if isinstance(value, str) else None
        return (True, normal, "") if normal else (False, None, _p("not a mainland mobile number", "answer_phone"))
    if kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(value, float) and not math.isfinite(value)):
            return False, None, _p("must be a number", "answer_number")
        if isinstance(value, int) and abs(value) > INT64_MAX:
            return False, None, _p("too large", "answer_too_large")
        if spec.get("min") is not None and value < spec["min"]:
            return False, None, _p(f"below {_num(spec['min'])}", "answer_below", min=_num(spec["min"]))
        if spec.get("max") is not None and value > spec["max"]:
            return False, None, _p(f"above {_num(spec['max'])}", "answer_above", max=_num(spec["max"]))
        return True, value, ""
    options = {o["value"] for o in spec.get("options") or []}
    if kind == "select":
        return (True, value, "") if isinstance(value, str) and value in options else (False, None, _p("not one of the options", "answer_option"))
    if kind == "multiselect":
        if not isinstance(value, list) or not all(isinstance(v, str) and v in options for v in value):
            return False, None, _p("every choice must be one of the options", "answer_options")
        if len(set(value)) != len(value):
            return False, None, _p("a choice is repeated", "answer_repeated")
        return True, value, ""
    if kind == "date":
        if not isinstance(value, str) or len(value) != 10:
            return False, None, _p("use YYYY-MM-DD", "answer_date")
        try:
            day = date.fromisoformat(value)
        except ValueError:
            return False, None, _p("use YYYY-MM-DD", "answer_date")
        if not DATE_MIN <= day <= DATE_MAX:
            return False, None, _p(f"must be between {DATE_MIN.isoformat()} and {DATE_MAX.isoformat()}", "answer_date_range", min=DATE_MIN.isoformat(), max=DATE_MAX.isoformat())
        return True, day.isoformat(), ""
    return False, None, _p("unsupported field type", "answer_type")  # pragma: no cover - the schema allows no other type


class FormService:
    def __init__(self, *, forms, form_versions, teams_view, clock: Clock, audit: AuditService, users, wechat, miniprogram_state: str = "formal") -> None:
        self._forms = forms
        self._versions = form_versions
        self._teams = teams_view  # read-only: a form's team must exist
        self._clock = clock
        self._audit = audit
        self._users = users  # UserService: who may be credited as a code's referrer
        self._wechat = wechat  # WechatClient: draws the mini-program codes
        self._env_version = QR_ENV_VERSIONS[miniprogram_state]
        self._check_path = miniprogram_state == "formal"  # trial and developer builds may lack the page
        self._qr_cache: OrderedDict[tuple[str, str, int], tuple[datetime, QrCode]] = OrderedDict()

    async def create(self, actor: Actor, data: FormCreate) -> dict:
        require_role(actor, "admin")
        await self._existing_team(data.team_id)
        now = self._clock.now()
        doc = {**data.model_dump(), "version": 1, "created_at": now, "updated_at": now, "created_by": actor.id}
        try:
            result = await self._forms.insert_one(doc)
        except DuplicateKeyError:
            raise Conflict("form.slug_taken", details=[detail("slug", "taken", text="slug_in_use")]) from None
        doc["_id"] = result.inserted_id
        await self._audit.record(actor, "form.create", target_type="form", target_id=str(doc["_id"]))
        return doc

    async def update(self, actor: Actor, form_id: str, data: FormUpdate, version: int) -> dict:
        require_role(actor, "admin")
        oid = parse_oid(form_id, "form.not_found")
        changes = data.model_dump(exclude_unset=True, exclude={"version"})  # only the description may be null (FormUpdate)
        if data.fields is not None:  # exclude_unset is recursive: dump fields whole so defaults (required=False) are stored
            changes["fields"] = [f.model_dump() for f in data.fields]
        if changes.get("team_id"):
            await self._existing_team(changes["team_id"])
        current = await self._forms.find_one({"_id": oid})
        if current is None:
            raise NotFound("form.not_found")
        if current["version"] != version:
            raise VersionMismatch("form.version_mismatch")
        # Keep the definition submissions were made against before it changes.
        await self._versions.replace_one(
            {"form_id": str(oid), "version": current["version"]},
            {"form_id": str(oid), "version": current["version"], "fields": current["fields"], "default_tags": current.get("default_tags", []), "title": current["title"], "saved_at": self._clock.now()},
            upsert=True,
        )
        doc = await self._forms.find_one_and_update(
            {"_id": oid, "version": version},
            {**({"$set": changes} if changes else {}), "$currentDate": {"updated_at": True}, "$inc": {"version": 1}},
            return_document=ReturnDocument.AFTER,
        )
        if doc is None:
            raise VersionMismatch("form.version_mismatch")
        await self._audit.record(actor, "form.update", target_type="form", target_id=str(oid), details={"fields": sorted(changes)})
        return doc

    async def get(self, actor: Actor, form_id: str) -> dict:
        require_role(actor, "admin", "manager")
        doc = await self._forms.find_one({"_id": parse_oid(form_id, "form.not_found"), **self._scope(actor)})
        if doc is None:
            raise NotFound("form.not_found")
        return doc

    async def list(self, actor: Actor, limit: int, cursor: str | None) -> Page:
        require_role(actor, "admin", "manager")
        return await paginate(self._forms, self._scope(actor), limit=limit, cursor=cursor)

    async def public(self, slug: str) -> dict:
        """The active form by slug; an inactive or unknown one is simply not found."""
        doc = await self._forms.find_one({"slug": slug, "active": True})
        if doc is None:
            raise NotFound("form.not_found")
        return doc

    async def qrcode(self, actor: Actor, form_id: str, ref: str | None, width: int) -> QrCode:
        """The form's mini-program code, opening the form page with the scene ``<slug>`` or
        ``<slug>~<ref>`` (the referrer the submission will credit).

        Admins, and managers and reps for their team's forms (another team's: 404). A rep's code
        always credits the rep (no ``ref``, or their own id; anyone else: 403). An admin's or a
        manager's ``ref`` is an active rep or manager of the form's team, or the caller (else 422).
        The form must be active (409: a printed code would open "表单不存在或已停用"), and the scene
        at most 32 characters (422 naming ``slug`` or ``ref``). WeChat's failures are 502/503.
        """
        require_role(actor, *STAFF_ROLES)
        doc = await self._forms.find_one(
            {"_id": parse_oid(form_id, "form.not_found"), **self._scope(actor)}, {"slug": 1, "team_id": 1, "active": 1},
        )
        if doc is None:
            raise NotFound("form.not_found")
        referrer = await self._referrer(actor, doc, ref)
        if not doc.get("active"):
            raise Conflict("form.inactive")
        slug = doc["slug"]
        scene = f"{slug}~{referrer}" if referrer else slug
        if len(slug) > QR_SCENE_MAX:
            raise Invalid("form.qrcode_scene_too_long", details=[detail("slug", "too_long", text="qrcode_slug_too_long", max=QR_SCENE_MAX, length=len(slug))])
        if len(scene) > QR_SCENE_MAX:
            slug_max = QR_SCENE_MAX - QR_REF_LENGTH - 1
            raise Invalid("form.qrcode_scene_too_long", details=[detail("ref", "too_long", text="qrcode_ref_too_long", max=QR_SCENE_MAX, length=len(scene), slug_max=slug_max)])
        key = (str(doc["_id"]), scene, width)
        now = self._clock.now()
        cached = self._qr_cache.get(key)
        if cached is not None and cached[0] > now:
            self._qr_cache.move_to_end(key)
            return cached[1]
        image, content_type = await self._wechat.unlimited_wxacode(
            scene=scene, page=QR_PAGE, env_version=self._env_version, check_path=self._check_path, width=width,
        )
        code = QrCode(image=image, content_type=content_type, scene=scene)
        self._qr_cache[key] = (now + QR_CACHE_TTL, code)
        self._qr_cache.move_to_end(key)
        while len(self._qr_cache) > QR_CACHE_MAX:
            self._qr_cache.popitem(last=False)
        return code

    async def _referrer(self, actor: Actor, form: dict, ref: str | None) -> str | None:
        if actor.role == "rep":
            if ref not in (None, actor.id):
                raise Forbidden("form.qrcode_own_referrer")
            return actor.id
        if ref is None or ref == actor.id:
            return ref
        user = await self._users.by_id(ref)
        if user is None or not user.get("active") or user.get("role") not in ("rep", "manager") or str(user.get("team_id") or "") != str(form.get("team_id") or ""):
            raise Invalid("form.bad_referrer", details=[detail("ref", "not_team_staff", text="referrer_not_team_staff")])
        return ref

    async def version_of(self, form_id: str, version: int) -> dict | None:
        return await self._versions.find_one({"form_id": form_id, "version": version})

    def _scope(self, actor: Actor) -> dict:
        return {} if actor.is_admin else {"team_id": actor.team_id or "-"}

    async def _existing_team(self, team_id: str) -> None:
        if await self._teams.find_one({"_id": maybe_oid(team_id)}, {"_id": 1}) is None:
            raise Invalid("team.not_found", details=[detail("team_id", "unknown", text="no_such_team")])
