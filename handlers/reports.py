"""Reports (manager: own team; admin: any team or all): funnel, reps, lifecycle, RFM layers.

Every report reads pre-aggregated counters (server/services/stats.py), current within one fold
interval (``fold_stats``, every 10 s).
"""

from __future__ import annotations

from handlers.base import ApiHandler, operation
from server.schemas.service_report import ServiceReportOut
from server.schemas.reports import FunnelOut, LifecycleOut, RepsOut, ReportRange, RetentionOut, RevenueOut, RevenueQuery, RfmOut, TeamQuery

MANAGERS = ("manager", "admin")


class FunnelReportHandler(ApiHandler):
    @operation("Funnel: leads entering each stage in the period, stage-to-stage conversion", roles=MANAGERS, query=ReportRange, response=FunnelOut, tags=("reports",))
    async def get(self) -> None:
        q = self.parse_query(ReportRange)
        self.write_model(FunnelOut, await self.ctx.reports.funnel(self.actor, q.from_, q.to, q.team_id))


class RepsReportHandler(ApiHandler):
    @operation("Per rep: new leads, follow-ups, visits, conversions, overdue tasks, median first response", roles=MANAGERS, query=ReportRange, response=RepsOut, tags=("reports",))
    async def get(self) -> None:
        q = self.parse_query(ReportRange)
        self.write_model(RepsOut, await self.ctx.reports.reps(self.actor, q.from_, q.to, q.team_id))


class LifecycleReportHandler(ApiHandler):
    @operation("Customers per lifecycle stage now; at-risk, churn and win-back in the period; churn rate", roles=MANAGERS, query=ReportRange, response=LifecycleOut, tags=("reports",))
    async def get(self) -> None:
        q = self.parse_query(ReportRange)
        self.write_model(LifecycleOut, await self.ctx.reports.lifecycle(self.actor, q.from_, q.to, q.team_id))


class RfmReportHandler(ApiHandler):
    @operation("RFM layers: customers per layer A/B/C and the thresholds used", roles=MANAGERS, query=TeamQuery, response=RfmOut, tags=("reports",))
    async def get(self) -> None:
        q = self.parse_query(TeamQuery)
        self.write_model(RfmOut, await self.ctx.reports.rfm(self.actor, q.team_id))


class RevenueReportHandler(ApiHandler):
    @operation("Money per rep, team, source, channel, campaign or month: signed (new / renewal / repurchase), collected, outstanding, overdue",
               roles=MANAGERS, query=RevenueQuery, response=RevenueOut, tags=("reports",))
    async def get(self) -> None:
        q = self.parse_query(RevenueQuery)
        self.write_model(RevenueOut, await self.ctx.reports.revenue(self.actor, q.from_, q.to, q.team_id, q.group_by))


class RetentionReportHandler(ApiHandler):
    @operation("Renewal and repurchase rates, churn and win-back, monthly customer cohorts", roles=MANAGERS, query=ReportRange, response=RetentionOut, tags=("reports",))
    async def get(self) -> None:
        q = self.parse_query(ReportRange)
        self.write_model(RetentionOut, await self.ctx.reports.retention(self.actor, q.from_, q.to, q.team_id))


class ServiceReportHandler(ApiHandler):
    @operation("Service: tickets opened and resolved, first response, resolution, SLA breaches, CSAT and NPS per team and handler",
               roles=MANAGERS, query=ReportRange, response=ServiceReportOut, tags=("reports",))
    async def get(self) -> None:
        q = self.parse_query(ReportRange)
        self.write_model(ServiceReportOut, await self.ctx.service_report.service(self.actor, q.from_, q.to, q.team_id))


routes = [
    (r"/api/v1/reports/funnel", FunnelReportHandler),
    (r"/api/v1/reports/reps", RepsReportHandler),
    (r"/api/v1/reports/lifecycle", LifecycleReportHandler),
    (r"/api/v1/reports/rfm", RfmReportHandler),
    (r"/api/v1/reports/service", ServiceReportHandler),
    (r"/api/v1/reports/revenue", RevenueReportHandler),
    (r"/api/v1/reports/retention", RetentionReportHandler),
]
