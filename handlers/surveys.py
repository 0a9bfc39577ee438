"""Satisfaction surveys: customers see and answer their own; staff read answers in their scope."""

from __future__ import annotations

from handlers.base import ALL_ROLES, ApiHandler, operation
from server.schemas.surveys import StaffSurveyOut, StaffSurveyPage, SurveyAnswer, SurveyQuery


class SurveyListHandler(ApiHandler):
    @operation(
        "Surveys: a customer's own (?status=pending: still to answer); staff: in their scope, like leads",
        roles=ALL_ROLES, query=SurveyQuery, response=StaffSurveyPage, tags=("surveys",),
    )
    async def get(self) -> None:
        surveys = self.ctx.surveys
        page = await surveys.list(self.actor, self.parse_query(SurveyQuery))
        self.write_page(StaffSurveyPage, page, surveys.customer_out if self.actor.role == "customer" else surveys.out)


class SurveyHandler(ApiHandler):
    @operation("A survey and its answer (customers: their own)", roles=ALL_ROLES, response=StaffSurveyOut, tags=("surveys",))
    async def get(self, survey_id: str) -> None:
        surveys = self.ctx.surveys
        doc = await surveys.get(self.actor, survey_id)
        self.write_model(StaffSurveyOut, surveys.customer_out(doc) if self.actor.role == "customer" else surveys.out(doc))


class SurveyAnswerHandler(ApiHandler):
    @operation(
        "Answer your survey: CSAT 1–5, NPS 0–10, an optional comment; once",
        roles=("customer",), body=SurveyAnswer, response=StaffSurveyOut, tags=("surveys",),
        extra_responses={409: "Already answered (survey.answered); nothing changed"},
    )
    async def post(self, survey_id: str) -> None:
        surveys = self.ctx.surveys
        doc = await surveys.answer(self.actor, survey_id, self.parse_body(SurveyAnswer))
        self.write_model(StaffSurveyOut, surveys.customer_out(doc))


routes = [
    (r"/api/v1/surveys", SurveyListHandler),
    (r"/api/v1/surveys/(?P<survey_id>[^/]+)", SurveyHandler),
    (r"/api/v1/surveys/(?P<survey_id>[^/]+)/answer", SurveyAnswerHandler),
]
