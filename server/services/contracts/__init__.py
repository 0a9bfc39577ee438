"""Contracts: drafts, approval chains (embedded steps), decisions, renewals and payments (回款), and
the jobs that remind and end them — one aggregate, split by concern:

- ``drafts.ContractService`` — drafts, approvals, the approval inbox, activation, renewals;
- ``payments.PaymentService`` — money received against a contract;
- ``jobs.ContractJobs`` — renewal reminders, ending contracts, payment reminders;
- ``common`` — what they share: scope and visibility, reads, the version-guarded replacement,
  the output view and the money computed from a plan.

Only these modules write ``contracts``. Contracts are scoped like leads (a rep their own, a manager
their team's, an admin all) through the ``owner_id`` and ``team_id`` copied from the lead. Every
change that carries datetimes is a whole-document replacement guarded by ``version``
(docs/mongodb-compat.md).

Dates of the contract and its plan are business dates (``YYYY-MM-DD`` strings in the business time
zone), which sort and compare as text.
"""

from server.services.contracts.common import business_today, money
from server.services.contracts.drafts import ContractService, stage_path
from server.services.contracts.jobs import ContractJobs
from server.services.contracts.payments import PaymentService

__all__ = ["ContractJobs", "ContractService", "PaymentService", "business_today", "money", "stage_path"]
