"""The whole journey (form → allocation → WeChat message → visit → reminder → contract → approval →
customer → renewal reminder) in-process, played by ``miniprogram_stub.journey`` (the same steps as
``make demo``), once on a clean network and once on a network that fails every other request."""

from __future__ import annotations

import asyncio

import pytest

from jobs.registry import load_jobs, run_job
from miniprogram_stub.client import FlakyTransport, UrllibTransport
from miniprogram_stub.journey import DEMO_TEMPLATES, Env, Journey, JourneyError

PASSWORD = "correct horse battery"  # the people fixture's password


@pytest.fixture
def settings_overrides() -> dict:
    return {"wechat_templates": DEMO_TEMPLATES}


def make_env(ctx, base_url, wechat, admin, tag, flaky=False, lines=None):
    loop = asyncio.get_running_loop()
    load_jobs()
    transports = {}

    def transport(role):
        # The admin works from the office console; the phones are on the flaky network.
        t = FlakyTransport(UrllibTransport(timeout=20)) if flaky and role != "admin" else UrllibTransport(timeout=20)
        transports[role] = t
        return t

    def job(name, now):
        return asyncio.run_coroutine_threadsafe(run_job(ctx, name, now), loop).result(timeout=30)

    env = Env(base_url=base_url, wechat_base=wechat[1], run_job=job, admin_username=admin.user["username"], admin_password=PASSWORD,
              tag=tag, transport=transport, say=(lines.append if lines is not None else (lambda s: None)), sleep=lambda s: None)
    return env, transports


async def play(env):
    return await asyncio.to_thread(lambda: Journey(env).run())


@pytest.mark.gen_test(timeout=60)
async def test_the_journey_from_form_to_renewal(ctx, api, base_url, people, wechat):
    admin = await people.admin()
    lines = []
    env, _ = make_env(ctx, base_url, wechat, admin, "clean", lines=lines)
    result = await play(env)
    s = result.summary
    assert s["lead"]["stage"] == "customer" and s["lead"]["owner_is_rep"]
    assert s["lead"]["name"] == "王先生-<tag>"
    assert s["contracts"] == [("CRM 年度订阅-<tag>", "active", 5_000_000, True)]
    assert {"created", "assigned", "followup", "contract_created"} <= set(s["events"])
    templates = [m[0] for m in s["wechat_messages"]]
    assert templates == sorted(["DEMO_LEAD_ASSIGNED", "DEMO_TASK_REMINDER", "DEMO_RENEWAL_DUE"])
    assert all(left == 0 for left in s["subscriptions_left"].values())  # each acceptance used once
    assert any(kind == "approval_pending" for kind, *_ in s["notifications"]["manager"])
    assert len(lines) >= 12 and all(line.startswith("[") for line in lines)


@pytest.mark.gen_test(timeout=60)
async def test_a_network_failing_half_the_time_changes_nothing(ctx, api, base_url, people, wechat):
    admin = await people.admin()
    clean_env, _ = make_env(ctx, base_url, wechat, admin, "clean")
    clean = await play(clean_env)
    flaky_env, transports = make_env(ctx, base_url, wechat, admin, "flaky", flaky=True)
    flaky = await play(flaky_env)
    lost = sum(t.lost_before + t.lost_after for t in transports.values() if isinstance(t, FlakyTransport))
    dropped_after = sum(t.lost_after for t in transports.values() if isinstance(t, FlakyTransport))
    assert lost >= 20 and dropped_after >= 10  # the storm really happened, answers were lost after the writes
    assert sum(c.retries for c in flaky.clients.values()) >= lost // 2
    assert flaky.summary == clean.summary  # same leads, events, contracts, notifications, messages; nothing twice


@pytest.mark.gen_test(timeout=30)
async def test_a_missing_job_stops_the_journey_with_its_name(ctx, api, base_url, people, wechat):
    admin = await people.admin()
    env, _ = make_env(ctx, base_url, wechat, admin, "nojob")
    real = env.run_job

    def without_outbox(name, now):
        if name == "deliver_outbox":
            raise KeyError("job.unknown: deliver_outbox")
        return real(name, now)

    env.run_job = without_outbox
    with pytest.raises(JourneyError, match="deliver_outbox"):
        await play(env)
