"""Demo data for ``python -m server seed-demo`` and ``make demo``. Safe to run twice."""

from __future__ import annotations

from server.actor import Actor
from server.context import AppContext
from server.schemas.users import TeamCreate, UserCreate

SEED_ADMIN = Actor(id="seed", role="admin", name="seed-demo")
DEMO_PASSWORD = "demo-pass-123"

DEMO_TEAMS = ["华北销售部", "华东销售部"]
DEMO_USERS = [
    ("admin", "系统管理员", "admin", None),
    ("wang.manager", "王经理", "manager", "华北销售部"),
    ("li.rep", "李雷", "rep", "华北销售部"),
    ("han.rep", "韩梅梅", "rep", "华北销售部"),
    ("zhao.manager", "赵经理", "manager", "华东销售部"),
    ("sun.rep", "孙悟", "rep", "华东销售部"),
]


async def seed_demo(ctx: AppContext) -> dict:
    teams: dict[str, str] = {}
    for name in DEMO_TEAMS:
        team = await ctx.db["teams"].find_one({"name": name}) or await ctx.users.create_team(SEED_ADMIN, TeamCreate(name=name))
        teams[name] = str(team["_id"])
    users: dict[str, str] = {}
    for username, name, role, team in DEMO_USERS:
        user = await ctx.users.by_username(username)
        if user is None:
            user = await ctx.users.create_user(
                SEED_ADMIN,
                UserCreate(username=username, password=DEMO_PASSWORD, name=name, role=role, team_id=teams.get(team) if team else None),
            )
        users[username] = str(user["_id"])
    return {"teams": teams, "users": users, "password": DEMO_PASSWORD}
