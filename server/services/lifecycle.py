"""The customer lifecycle as a state machine, in one place.

    new → contacted → qualified → customer → retained
    customer / retained / won_back → at_risk → churned → won_back
    at_risk → retained                     (saved before churning)
    won_back → retained
    new / contacted / qualified → lost      (needs a reason)
    lost → contacted                        (reopened; needs a reason)
"""

from __future__ import annotations

STAGES = ("new", "contacted", "qualified", "customer", "retained", "at_risk", "churned", "won_back", "lost")
OPEN_STAGES = ("new", "contacted", "qualified")
CUSTOMER_STAGES = ("customer", "retained", "at_risk", "won_back")

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "new": ("contacted", "lost"),
    "contacted": ("qualified", "lost"),
    "qualified": ("customer", "lost"),
    "customer": ("retained", "at_risk"),
    "retained": ("at_risk",),
    "at_risk": ("churned", "retained"),
    "churned": ("won_back",),
    "won_back": ("retained", "at_risk"),
    "lost": ("contacted",),
}

REASON_REQUIRED = {("new", "lost"), ("contacted", "lost"), ("qualified", "lost"), ("lost", "contacted"), ("at_risk", "churned")}

# What a customer sees of their own submission: never the stage names staff use.
PUBLIC_STATUS = {
    "new": "received",
    "contacted": "in_progress",
    "qualified": "in_progress",
}


def allowed_targets(stage: str) -> tuple[str, ...]:
    return TRANSITIONS.get(stage, ())


def public_status(stage: str) -> str:
    return PUBLIC_STATUS.get(stage, "closed")
