"""A customer's form submission, end to end: rate limits, the form, the phone (typed or from the
WeChat phone button), answer validation, idempotency, one lead per person, and whether the new lead
is allocated right after capture (``allocate_on_capture``; the ``allocate_new_leads`` sweep catches
anything left).

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
from server.errors import Invalid, detail
from server.schemas.forms import SubmissionIn
from server.services.allocation import AllocationService
from server.services.forms import FormService, validate_answers
from server.services.idempotency import IdempotencyService
from server.services.leads import LeadService
from server.services.ratelimit import RateLimiter
from server.services.wechat import WechatCallError, WechatClient


@dataclass(frozen=True)
class Submission:
    """``receipt`` is all the submitter is told; ``lead_id`` (None on a replay) is for the server's
    own follow-up work and never goes back to the caller."""

    receipt: dict
    lead_id: str | None
    replayed: bool


class CaptureService:
    def __init__(
        self, settings: Settings, forms: FormService, leads: LeadService, limiter: RateLimiter, idempotency: IdempotencyService,
        wechat: WechatClient, *, allocation: AllocationService,
    ) -> None:
        self._settings = settings
        self._forms = forms
        self._leads = leads
        self._limiter = limiter
        self._idempotency = idempotency
        self._wechat = wechat
        self._allocation = allocation

    async def submit(
        self, slug: str, body: SubmissionIn, *, client_ip: str, customer: Actor | None,
        idempotency_key: str | None, fingerprint: str,
    ) -> Submission:
        await self._limiter.hit("submit-ip", client_ip, self._settings.public_submit_limit)
        form = await self._forms.public(slug)

        async def create(resource_id: str | None) -> Submission:
            submission_id = ObjectId(resource_id) if resource_id else ObjectId()
            phone_from_code = await self._resolve_phone_code(body.phone_code) if body.phone_code else None
            clean = validate_answers(form, body.answers, phone_from_code)
            # The rep who shared the form (share card, QR code): kept only when they are active staff.
            referrer_id = await self._leads.active_staff_id(body.referrer_id) if body.referrer_id else None
            lead_id, _, receipt = await self._leads.capture_submission(
                form=form, clean=clean, submission_id=submission_id, channel=body.source_channel,
                campaign=body.campaign, customer_id=customer.id if customer else None,
                phone_limit_per_minute=self._settings.public_phone_limit, referrer_id=referrer_id,
            )
            return Submission(receipt, lead_id, False)

        async def load(resource_id: str) -> Submission | None:
            receipt = await self._leads.submission_result(resource_id)
            return Submission(receipt, None, True) if receipt is not None else None

        # The key is claimed before the phone code is resolved: a retry whose first answer was lost
        # must replay, and its (single-use) phone code has already been spent by the first try.
        scope = f"user:{customer.id}" if customer else f"ip:{client_ip}"
        done: Submission = await self._idempotency.run(scope, idempotency_key or None, fingerprint, create, load)
        if done.lead_id and self._settings.allocate_on_capture:
            # Capture decides: the new lead is allocated in the background, after the caller has
            # answered (nothing is awaited between here and the response); the sweep is the safety net.
            self._allocation.allocate_soon(done.lead_id)
        return done

    async def _resolve_phone_code(self, code: str) -> str:
        try:
            return await self._wechat.phone_number(code)
        except WechatCallError as exc:
            if exc.errcode in (40029, 40163, 40013, 41008):  # invalid, used, expired or not a code at all
                raise Invalid("submission.phone_code_invalid", details=[detail("phone_code", "invalid", text="phone_code_invalid")]) from None
            raise
