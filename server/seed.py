"""Demo data for ``python -m server seed-demo``: two teams, an admin, managers, reps and their
leads (some followed up, with a next follow-up; one released to its team's pool). Safe to run
twice: users are found by username, leads by their fixed ids, and nothing is made twice."""

from __future__ import annotations

import uuid
from datetime import timedelta

from server.actor import Actor
from server.context import AppContext
from server.errors import Conflict
from server.schemas.leads import FollowupCreate, LeadCreate
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

# (key, owner's username, name, company, phone, city, level, tags, follow-up?, released to the pool?)
DEMO_LEADS = [
    ("bj-1", "li.rep", "王先生", "北京云帆科技", "13900000001", "北京", "A", ["展会", "north"], "电话沟通需求，约下周上门演示", False),
    ("bj-2", "li.rep", "刘女士", "天津海河贸易", "13900000002", "天津", "B", ["north"], None, False),
    ("bj-3", "han.rep", "陈总", "石家庄恒达制造", "13900000003", "石家庄", "A", ["大客户"], "微信发送报价单", False),
    ("bj-4", "han.rep", "郑女士", "保定新材料", "13900000004", "保定", "C", [], None, True),
    ("sh-1", "sun.rep", "周女士", "上海浦江咨询", "13900000005", "上海", "B", ["展会"], "拜访客户，了解采购流程", False),
    ("sh-2", "sun.rep", "吴先生", "杭州西子电商", "13900000006", "杭州", "C", [], None, False),
]
_LEAD_IDS = uuid.UUID("5eed0000-0000-4000-8000-000000000000")


def demo_lead_id(key: str) -> str:
    """A fixed UUID per demo lead, so a second run finds the first run's leads."""
    return str(uuid.uuid5(_LEAD_IDS, key))


async def _seed_leads(ctx: AppContext, users: dict[str, dict]) -> dict:
    created, existing = [], []
    for key, owner, name, company, phone, city, level, tags, followup, to_pool in DEMO_LEADS:
        lead_id = demo_lead_id(key)
        if await ctx.leads.exists(lead_id):
            existing.append(lead_id)
            continue
        actor = Actor.from_user(users[owner])
        try:
            await ctx.leads.create(actor, LeadCreate.model_validate({"id": lead_id, "name": name, "company": company, "phone": phone, "city": city, "level": level, "tags": tags}))
        except Conflict:  # this phone already has a lead (made by hand): keep that one
            existing.append(lead_id)
            continue
        if followup:
            next_at = (ctx.clock.now() + timedelta(days=3)).replace(microsecond=0)
            await ctx.followups.add(actor, lead_id, FollowupCreate(kind="call", content=followup, next_followup_at=next_at))
        if to_pool:
            await ctx.pool.release(actor, lead_id, "演示：暂无需求，放回公海")
        created.append(lead_id)
    return {"created": len(created), "existing": len(existing)}


async def seed_demo(ctx: AppContext) -> dict:
    teams: dict[str, str] = {}
    for name in DEMO_TEAMS:
        team_doc = await ctx.users.team_by_name(name) or await ctx.users.create_team(SEED_ADMIN, TeamCreate(name=name))
        teams[name] = str(team_doc["_id"])
    users: dict[str, dict] = {}
    for username, name, role, team in DEMO_USERS:
        user = await ctx.users.by_username(username)
        if user is None:
            user = await ctx.users.create_user(
                SEED_ADMIN,
                UserCreate.model_validate({"username": username, "password": DEMO_PASSWORD, "name": name, "role": role, "team_id": teams.get(team) if team else None}),
            )
        users[username] = user
    leads = await _seed_leads(ctx, users)
    return {"teams": teams, "users": {u: str(doc["_id"]) for u, doc in users.items()}, "leads": leads, "password": DEMO_PASSWORD}
