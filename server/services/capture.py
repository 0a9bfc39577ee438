"""A customer's form submission, end to end: rate limits, the form, the phone (typed or from the
WeChat phone button), answer validation, idempotency, and one lead per person.

The submitter gets a receipt of the submission itself (its id, status and time), the same for a new
phone and a known one: a public caller learns nothing about leads they did not create.

Commands for a new person with an Idempotency-Key: rate limit, form, idempotency claim, phone
lookup, lead insert, timeline event — six.
"""

from __future__ import annotations

from dataclasses import dataclass

from bson import ObjectId

from config.settings import Settings
from server.actor import Actor
from server.errors import Invalid
from server.schemas.forms import SubmissionIn
from server.services.forms import FormService, validate_answers
from server.services.idempotency import IdempotencyService
from server.services.leads import LeadService
from server.services.ratelimit import RateLimiter
from server.services.wechat import WechatCallError, WechatClient


@dataclass(frozen=True)
class Submission:
    """``receipt`` is all the submitter is told; ``lead_id`` (None on a replay) is for the server's
    own follow-up work (allocation after capture) and never goes back to the caller."""

    receipt: dict
    lead_id: str | None
    replayed: bool


class CaptureService:
    def __init__(self, settings: Settings, forms: FormService, leads: LeadService, limiter: RateLimiter, idempotency: IdempotencyService, wechat: WechatClient) -> None:
        self._settings = settings
        self._forms = forms
        self._leads = leads
        self._limiter = limiter
        self._idempotency = idempotency
        self._wechat = wechat

    async def submit(
        self, slug: str, body: SubmissionIn, *, client_ip: str, customer: Actor | None,
        idempotency_key: str | None, fingerprint: str,
    ) -> Submission:
        await self._limiter.hit("submit-ip", client_ip, self._settings.public_submit_limit)
        form = await self._forms.public(slug)
        submission_id = ObjectId()
        claim = None
        if idempotency_key:
            # Before the phone code is resolved: a retry whose first answer was lost must replay,
            # and its (single-use) phone code has already been spent by the first try.
            scope = f"user:{customer.id}" if customer else f"ip:{client_ip}"
            claim = await self._idempotency.begin(
                scope, idempotency_key, fingerprint, str(submission_id),
                lambda rid: self._submission_exists(rid),
            )
            if claim.replay:
                return Submission(await self._leads.submission_result(claim.resource_id), None, True)
            submission_id = ObjectId(claim.resource_id)
        try:
            phone_from_code = await self._resolve_phone_code(body.phone_code) if body.phone_code else None
            clean = validate_answers(form, body.answers, phone_from_code)
            lead_id, _, receipt = await self._leads.capture_submission(
                form=form, clean=clean, submission_id=submission_id, channel=body.source_channel,
                campaign=body.campaign, customer_id=customer.id if customer else None,
                phone_limit_per_minute=self._settings.public_phone_limit,
            )
        except BaseException:
            if claim is not None:
                await self._idempotency.abandon(claim)
            raise
        return Submission(receipt, lead_id, False)

    async def _submission_exists(self, resource_id: str) -> bool:
        return await self._leads.submission_result(resource_id) is not None

    async def _resolve_phone_code(self, code: str) -> str:
        try:
            return await self._wechat.phone_number(code)
        except WechatCallError as exc:
            if exc.errcode in (40029, 40163, 40013):  # invalid, used or expired code
                raise Invalid("submission.phone_code_invalid", details=[{"field": "phone_code", "code": "invalid", "message": "invalid or used phone code"}]) from None
            raise
