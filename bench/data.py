"""Benchmark data: teams and reps through the services, leads bulk-inserted (setup only)."""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta, timezone

from bson import ObjectId

from server.actor import Actor
from server.services.lead_store import activity_ms
from server.schemas.users import TeamCreate, UserCreate

# BENCH_QUICK=1: smaller sizes and shorter measurements, for every section of the benchmark.
QUICK = os.environ.get("BENCH_QUICK", "") not in ("", "0")

ADMIN = Actor(id="bench-admin", role="admin", name="bench")
STAGES = ["new"] * 5 + ["contacted"] * 3 + ["qualified"] * 2 + ["customer", "retained", "at_risk", "lost"]
CITIES = ["北京", "上海", "广州", "深圳", "杭州", "成都", "武汉", "南京", "西安", "苏州"]
TAGS = ["展会", "转介绍", "官网", "抖音", "老客户", "大客户", "华北", "华东", "复购", "高意向"]
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"


async def make_people(ctx, teams: int, reps_per_team: int) -> list[dict]:
    """``teams`` teams with ``reps_per_team`` reps each; returns the rep user documents."""
    reps = []
    for t in range(teams):
        team = await ctx.users.create_team(ADMIN, TeamCreate(name=f"销售{t + 1}部"))
        for r in range(reps_per_team):
            reps.append(await ctx.users.create_user(ADMIN, UserCreate(
                username=f"rep-{t:02d}-{r:02d}", password="bench password 123", name=f"销售{t + 1}-{r + 1}",
                role="rep", team_id=str(team["_id"]), capacity=100000,
            )))
    return reps


def lead_doc(rng: random.Random, rep: dict, now: datetime) -> dict:
    created = now - timedelta(days=rng.uniform(1, 365))
    updated = created + (now - created) * rng.random()
    stage = rng.choice(STAGES)
    owner = str(rep["_id"])
    n = rng.randrange(10**8)
    return {
        "_id": str(ObjectId()),
        "name": f"{rng.choice(SURNAMES)}{rng.choice(['总', '经理', '女士', '先生'])}",
        "company": f"{rng.choice(CITIES)}{rng.choice(['科技', '贸易', '制造', '咨询'])}有限公司{n % 1000}",
        "email": f"c{n}@example.cn",
        "city": rng.choice(CITIES),
        "notes": "展会上交换了名片，对年度套餐有兴趣。" if rng.random() < 0.3 else None,
        "tags": sorted(rng.sample(TAGS, rng.randint(0, 3))),
        "level": rng.choice(["A", "B", "C", None]),
        "stage": stage,
        "owner_id": owner,
        "team_id": rep["team_id"],
        "source": {"kind": rng.choice(["manual", "form", "import"]), "channel": rng.choice([None, "wechat", "web"])},
        "pool": False,
        "phone_masked": f"13{n % 10}****{n % 10000:04d}",
        "next_followup_at": updated + timedelta(days=rng.randint(1, 30)) if rng.random() < 0.5 else None,
        "last_activity_at": updated,
        "assignment": {"owner_id": owner, "rule_id": None, "strategy": "round_robin", "reason": "benchmark data", "at": created},
        "customer_ids": [],
        "version": rng.randint(1, 6),
        "created_at": created,
        "updated_at": updated,
        "updated_ms": activity_ms(updated),  # what lead lists sort on, as the lead store writes it
        "created_by": "bench",
    }


async def add_leads(db, reps: list[dict], count: int, rng: random.Random, chunk: int = 5000) -> None:
    """``count`` more leads spread evenly at random over the reps, in chunks of ``chunk``."""
    now = datetime.now(timezone.utc).replace(microsecond=0)
    left = count
    while left > 0:
        size = min(chunk, left)
        await db["leads"].insert_many([lead_doc(rng, rng.choice(reps), now) for _ in range(size)], ordered=False)
        left -= size
