"""Forms: designed by admins, filled in by customers in the mini-program."""

from __future__ import annotations

from handlers.base import ApiHandler, operation
from server.actor import STAFF_ROLES
from server.schemas.common import Page, PageQuery
from server.schemas.forms import (
    FormCreate, FormOut, FormUpdate, MySubmissionsPage, PublicFormOut, QrCodeQuery, SubmissionIn, SubmissionOut,
)
from server.services.users import public_id

ADMIN = ("admin",)
READERS = ("admin", "manager")


class FormListHandler(ApiHandler):
    @operation("Create a form", roles=ADMIN, body=FormCreate, response=FormOut, status=201, tags=("forms",), extra_responses={409: "The slug is taken"})
    async def post(self) -> None:
        doc = await self.ctx.forms.create(self.actor, self.parse_body(FormCreate))
        self.write_model(FormOut, public_id(doc), 201)

    @operation("List forms (a manager sees their team's)", roles=READERS, query=PageQuery, response=Page[FormOut], tags=("forms",))
    async def get(self) -> None:
        query = self.parse_query(PageQuery)
        page = await self.ctx.forms.list(self.actor, query.limit, query.cursor)
        self.write_page(Page[FormOut], page, public_id)


class FormHandler(ApiHandler):
    @operation("Read a form", roles=READERS, response=FormOut, tags=("forms",))
    async def get(self, form_id: str) -> None:
        self.write_model(FormOut, public_id(await self.ctx.forms.get(self.actor, form_id)))

    @operation("Edit a form: a new version (send version or If-Match)", roles=ADMIN, body=FormUpdate, response=FormOut, versioned=True, tags=("forms",))
    async def patch(self, form_id: str) -> None:
        body = self.parse_body(FormUpdate)
        doc = await self.ctx.forms.update(self.actor, form_id, body, self.expected_version(body.version))
        self.write_model(FormOut, public_id(doc))


class FormQrCodeHandler(ApiHandler):
    @operation(
        "The form's mini-program code (WeChat wxacode.getUnlimited): a PNG or JPEG opening the form page with scene <slug> or <slug>~<ref>",
        roles=STAFF_ROLES, query=QrCodeQuery, tags=("forms",),
        extra_responses={409: "The form is inactive", 502: "WeChat refused to make the code", 503: "WeChat is unavailable or rate-limited"},
    )
    async def get(self, form_id: str) -> None:
        query = self.parse_query(QrCodeQuery)
        code = await self.ctx.forms.qrcode(self.actor, form_id, query.ref, query.width)
        self.set_header("Content-Type", code.content_type)
        self.set_header("Cache-Control", "private, max-age=600")
        self.set_header("Content-Disposition", f'inline; filename="form-{code.scene.replace("~", "-")}.{code.content_type.rsplit("/", 1)[1]}"')
        self.finish(code.image)


class PublicFormHandler(ApiHandler):
    @operation("An active form, as the mini-program shows it", public=True, response=PublicFormOut, tags=("public",))
    async def get(self, slug: str) -> None:
        self.write_model(PublicFormOut, await self.ctx.forms.public(slug))


class SubmissionHandler(ApiHandler):
    @operation(
        "Submit a form (Idempotency-Key supported; one lead per phone number); the answer is a receipt of the submission itself",
        public=True, body=SubmissionIn, response=SubmissionOut, status=201, idempotent=True, tags=("public",),
        extra_responses={409: "Same Idempotency-Key still running", 429: "Rate limited (see Retry-After)"},
    )
    async def post(self, slug: str) -> None:
        body = self.parse_body(SubmissionIn)
        customer = self.caller if self.caller and self.caller.role == "customer" else None
        done = await self.ctx.capture.submit(
            slug, body, client_ip=self.client_ip(), customer=customer,
            idempotency_key=self.idempotency_key(), fingerprint=self.request_fingerprint(),
        )
        self.write_model(SubmissionOut, done.receipt, 201)


class MySubmissionsHandler(ApiHandler):
    @operation("What this customer submitted, and where it stands", roles=("customer",), query=PageQuery, response=MySubmissionsPage, tags=("public",))
    async def get(self) -> None:
        query = self.parse_query(PageQuery)
        page = await self.ctx.leads.my_submissions(self.actor, query.limit, query.cursor)
        self.write_page(MySubmissionsPage, page)


routes = [
    (r"/api/v1/forms", FormListHandler),
    (r"/api/v1/forms/(?P<form_id>[^/]+)", FormHandler),
    (r"/api/v1/forms/(?P<form_id>[^/]+)/qrcode", FormQrCodeHandler),
    (r"/api/v1/public/forms/(?P<slug>[^/]+)", PublicFormHandler),
    (r"/api/v1/public/forms/(?P<slug>[^/]+)/submissions", SubmissionHandler),
    (r"/api/v1/public/my-submissions", MySubmissionsHandler),
]
