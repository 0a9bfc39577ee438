"""Allocation rules: admins write, managers read their team's; preview explains the next pick."""

from __future__ import annotations

from handlers.base import ApiHandler, operation
from server.schemas.allocation import (
    BulkAssignIn, BulkAssignOut, PreviewIn, PreviewOut, RuleCreate, RuleOut, RulePage, RuleQuery, RuleUpdate, UnsavedPreviewIn,
)
from server.services.users import public_id

ADMIN = ("admin",)
READERS = ("admin", "manager")


class RuleListHandler(ApiHandler):
    @operation("Create an allocation rule", roles=ADMIN, body=RuleCreate, response=RuleOut, status=201, tags=("allocation",))
    async def post(self) -> None:
        doc = await self.ctx.allocation.create_rule(self.actor, self.parse_body(RuleCreate))
        self.write_model(RuleOut, public_id(doc), 201)

    @operation("List allocation rules (a manager sees their team's)", roles=READERS, query=RuleQuery, response=RulePage, tags=("allocation",))
    async def get(self) -> None:
        query = self.parse_query(RuleQuery)
        page = await self.ctx.allocation.list_rules(self.actor, query.team_id, query.limit, query.cursor)
        self.write_page(RulePage, page, public_id)


class RuleHandler(ApiHandler):
    @operation("Change an allocation rule (send version or If-Match)", roles=ADMIN, body=RuleUpdate, response=RuleOut, versioned=True, tags=("allocation",))
    async def patch(self, rule_id: str) -> None:
        body = self.parse_body(RuleUpdate)
        doc = await self.ctx.allocation.update_rule(self.actor, rule_id, body, self.expected_version(body.version))
        self.write_model(RuleOut, public_id(doc))

    @operation("Delete an allocation rule", roles=ADMIN, status=204, tags=("allocation",))
    async def delete(self, rule_id: str) -> None:
        await self.ctx.allocation.delete_rule(self.actor, rule_id)
        self.no_content()


class RulePreviewHandler(ApiHandler):
    @operation("Who would get such a lead next under this rule, and why (assigns nothing)", roles=READERS, body=PreviewIn, response=PreviewOut, tags=("allocation",))
    async def post(self, rule_id: str) -> None:
        self.write_model(PreviewOut, await self.ctx.allocation.preview(self.actor, rule_id, self.parse_body(PreviewIn)))


class UnsavedRulePreviewHandler(ApiHandler):
    @operation(
        "Who would get this lead next under a rule not saved yet, and why (saves and assigns nothing)",
        roles=READERS, body=UnsavedPreviewIn, response=PreviewOut, tags=("allocation",),
    )
    async def post(self) -> None:
        self.write_model(PreviewOut, await self.ctx.allocation.preview_unsaved(self.actor, self.parse_body(UnsavedPreviewIn)))


class BulkAssignHandler(ApiHandler):
    @operation(
        "Assign many leads at once (ids or a filter, at most 500) to a person or by a lead rule; dry_run previews; Idempotency-Key accepted",
        roles=READERS, body=BulkAssignIn, response=BulkAssignOut, idempotent=True, tags=("allocation",),
        extra_responses={409: "Same Idempotency-Key still running"},
    )
    async def post(self) -> None:
        body = self.parse_body(BulkAssignIn)
        allocation = self.ctx.allocation
        if body.dry_run:
            result = await allocation.bulk_assign(self.actor, body)
        else:  # a retry after a lost answer gets the first run's answer, and assigns nothing again
            result = await self.idempotent(
                lambda run_id: allocation.bulk_assign(self.actor, body, run_id),
                lambda run_id: allocation.bulk_run(self.actor, run_id),
            )
        self.write_model(BulkAssignOut, result)


routes = [
    (r"/api/v1/leads/assign", BulkAssignHandler),  # before the leads routes: "assign" is not a lead id
    (r"/api/v1/allocation-rules", RuleListHandler),
    (r"/api/v1/allocation-rules/preview", UnsavedRulePreviewHandler),  # before the {rule_id} routes
    (r"/api/v1/allocation-rules/(?P<rule_id>[^/]+)", RuleHandler),
    (r"/api/v1/allocation-rules/(?P<rule_id>[^/]+)/preview", RulePreviewHandler),
]
