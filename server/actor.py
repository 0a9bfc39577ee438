"""Who is acting: built once per request from the user document, passed to every service call."""

from __future__ import annotations

from dataclasses import dataclass

from server.errors import Forbidden

STAFF_ROLES = ("rep", "manager", "admin")


@dataclass(frozen=True)
class Actor:
    id: str
    role: str
    team_id: str | None = None
    name: str = ""
    finance: bool = False
    token_version: int | None = None  # set when only the token was checked (see ApiHandler)

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"

    @property
    def is_manager(self) -> bool:
        return self.role == "manager"

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF_ROLES

    @classmethod
    def from_user(cls, user: dict) -> Actor:
        return cls(
            id=str(user["_id"]),
            role=user["role"],
            team_id=str(user["team_id"]) if user.get("team_id") else None,
            name=user.get("name", ""),
            finance=bool(user.get("finance")),
        )


# Jobs act as SYSTEM: every event a job causes (allocation, reclaim, contract end, churn, task
# escalation) is attributed to it, so a timeline says actor_role "system", never "public".
SYSTEM = Actor(id="system", role="system", name="system")


def require_role(actor: Actor, *roles: str) -> None:
    """Services check roles too (jobs and the CLI call them without a handler in front)."""
    if actor.role not in roles:
        raise Forbidden("auth.forbidden")


def scope_filter(actor: Actor, own_field: str = "owner_id") -> dict:
    """Data scope as a filter: a rep their own records, a manager their team's, an admin all,
    anyone else nothing."""
    if actor.is_admin:
        return {}
    if actor.is_manager:
        return {"team_id": actor.team_id or "-"}
    if actor.role == "rep":
        return {own_field: actor.id}
    return {"_id": None}
