"""The whole journey of one lead, from the public form to the renewal reminder (and the manager's
funnel on the way).

Shared by ``make demo`` (``miniprogram_stub.demo``: a real server in subprocesses) and
``tests/e2e/test_journey.py`` (the app in-process), so the two cannot drift. Synchronous: it plays
the mini-program's users with ``miniprogram_stub.client.Client`` over HTTP; jobs are run through
``env.run_job(name, now)`` with the clock moved forward.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta, timezone
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from config.wechat_templates import load_templates
from miniprogram_stub.client import Client, ClientError, UrllibTransport, WechatStub

TZ = ZoneInfo("Asia/Shanghai")
T = TypeVar("T")

# The subscribe-message templates the rep accepts in the story, as the mini-program's catalogue
# (templates.js) has them: the server's defaults and the fake WeChat's templates are the same, so a
# server started with `make run` needs no MPCRM_WECHAT_TEMPLATES for the story.
STORY_KINDS = ("lead_assigned", "task_reminder", "renewal_due")
DEMO_TEMPLATES: dict[str, dict] = {kind: t for kind, t in load_templates().items() if kind in STORY_KINDS}
REQUIRED_JOBS = ("allocate_new_leads", "deliver_outbox", "send_due_reminders", "fold_stats", "renewal_reminders")


# The expo form the demo journey and the simulator tests' backend both publish.
DEMO_FORM_FIELDS: list[dict] = [
    {"key": "name", "label": "姓名", "type": "text", "required": True, "maps_to": "name"},
    {"key": "company", "label": "公司", "type": "text", "maps_to": "company"},
    {"key": "mobile", "label": "手机号", "type": "phone", "required": True},
    {"key": "need", "label": "需求", "type": "select", "options": [{"value": "crm", "label": "客户管理"}, {"value": "erp", "label": "进销存"}]},
]


class JourneyError(RuntimeError):
    """A step did not do what the story needs; the message says which and why."""


@dataclass
class Env:
    base_url: str
    wechat_base: str
    run_job: Callable[[str, datetime | None], dict]
    admin_username: str
    admin_password: str
    tag: str = "a"  # makes names, phones and openids unique, so two journeys can share a database
    transport: Callable[[str], Any] = lambda role: UrllibTransport()  # per role: customer, rep, manager, admin
    say: Callable[[str], None] = print
    sleep: Callable[[float], None] | None = None
    now: Callable[[], datetime] = lambda: datetime.now(timezone.utc)


@dataclass
class Result:
    lead_id: str = ""
    contract_id: str = ""
    summary: dict = field(default_factory=dict)
    clients: dict = field(default_factory=dict)


def morning(day: date, hour: int = 10) -> datetime:
    return datetime.combine(day, time(hour), TZ)


def _text(message: dict) -> str:
    return " | ".join(f"{k}={v['value']}" for k, v in sorted(message["data"].items()))


class Journey:
    def __init__(self, env: Env) -> None:
        self.env = env
        self.step_no = 0
        self.seen_messages = 0  # the rep's WeChat messages already looked at
        self.stub = WechatStub(env.wechat_base)
        t = env.tag
        self.names = {
            "team": f"华东销售部-{t}", "manager": f"mgr-{t}", "rep": f"rep-{t}", "slug": f"expo-{t}",
            "customer_openid": f"o-customer-{t}", "rep_openid": f"o-rep-{t}", "lead_name": f"王先生-{t}",
            "company": f"远山贸易-{t}", "phone": "139" + str(int(uuid.uuid5(uuid.NAMESPACE_DNS, t).int % 10**8)).zfill(8),
        }
        self.password = "demo-pass-123"
        self.result = Result()

    # ------------------------------------------------------------ helpers
    def say(self, text: str) -> None:
        self.step_no += 1
        self.env.say(f"[{self.step_no:02d}] {text}")

    def client(self, role: str) -> Client:
        c = Client(self.env.base_url, self.env.transport(role), name=role)
        if self.env.sleep:
            c.sleep = self.env.sleep
        self.result.clients[role] = c
        return c

    def job(self, name: str, now: datetime | None) -> dict:
        try:
            out = self.env.run_job(name, now)
        except JourneyError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure of a job stops the story
            raise JourneyError(f"job {name} failed: {exc}") from exc
        if out.get("skipped"):
            raise JourneyError(f"job {name} did not run: {out['skipped']}")
        return out

    def wx_code(self, openid: str) -> Callable[[], str]:
        return lambda: self.stub.login_code(openid)

    def expect(self, ok: bool, what: str) -> None:
        if not ok:
            raise JourneyError(what)

    def found(self, value: T | None, what: str) -> T:
        """``value``, which must be there (else the journey fails with ``what``)."""
        if value is None:
            raise JourneyError(what)
        return value

    def deliver(self, kind: str, now: datetime, missing: str) -> tuple[dict, list[dict]]:
        """Run ``deliver_outbox`` at ``now``: the rep's new WeChat messages must hold one of ``kind``
        (``missing`` says what the story lacks otherwise). Returns the job's answer and them."""
        openid = self.names["rep_openid"]
        out = self.job("deliver_outbox", now)
        msgs = self.stub.messages(openid)[self.seen_messages:]
        self.expect(any(m["template_id"] == DEMO_TEMPLATES[kind]["template_id"] for m in msgs),
                    f"{missing} (deliver_outbox said {out}; messages {msgs})")
        self.seen_messages += len(msgs)
        return out, msgs

    # ------------------------------------------------------------ the story
    def run(self) -> Result:
        n, env = self.names, self.env
        real_now = env.now()
        today = real_now.astimezone(TZ).date()
        first_morning = morning(today) if real_now < morning(today) else morning(today + timedelta(days=1))

        # -- setup by the admin (console): team, users, form, allocation rule, bind code
        admin = self.client("admin")
        admin.password_login(env.admin_username, env.admin_password)
        team = admin.create("/api/v1/teams", {"name": n["team"]}, what="create team")
        manager = admin.create("/api/v1/users", {"username": n["manager"], "password": self.password, "name": f"李经理-{env.tag}", "role": "manager", "team_id": team["id"]}, what="create manager")
        rep_user = admin.create("/api/v1/users", {"username": n["rep"], "password": self.password, "name": f"张销售-{env.tag}", "role": "rep", "team_id": team["id"]}, what="create rep")
        form = admin.create("/api/v1/forms", {
            "slug": n["slug"], "title": "展会咨询登记", "team_id": team["id"], "default_tags": ["展会"],
            "fields": DEMO_FORM_FIELDS,
        }, what="create form")
        rule = admin.create("/api/v1/allocation-rules", {"name": f"展会线索-{env.tag}", "team_id": team["id"], "strategy": "round_robin", "members": [rep_user["id"]]}, what="create allocation rule")
        bind = admin.create(f"/api/v1/users/{rep_user['id']}/bind-code", None, what="make bind code")
        self.say(f"admin seeded team {team['id']}, manager {manager['id']}, rep {rep_user['id']}, form '{form['slug']}' v{form.get('version')}, "
                 f"rule {rule['id']} (round_robin → rep); bind code {bind['code']} for the rep")

        # -- the rep opens the mini-program once: binds WeChat and accepts subscriptions
        rep = self.client("rep")
        me = rep.wechat_login(self.wx_code(n["rep_openid"]), bind_code=bind["code"])
        self.expect(me["role"] == "rep" and me["id"] == rep_user["id"], f"binding logged in as {me} instead of the rep")
        left = self.subscribe_all(rep, n["rep_openid"], [t["template_id"] for t in DEMO_TEMPLATES.values()])
        remaining = {kind: left[t["template_id"]] for kind, t in DEMO_TEMPLATES.items()}
        self.say(f"rep bound WeChat (wx.login + bind code → {me['role']} {me['id']}) and accepted subscriptions {remaining}")

        # -- the customer fills in the form, phone from the phone button
        customer = self.client("customer")
        cust = customer.wechat_login(self.wx_code(n["customer_openid"]))
        public = customer.get(f"/api/v1/public/forms/{n['slug']}", what="open the public form")
        phone_code = self.stub.phone_code(n["phone"])
        answers = {"name": n["lead_name"], "company": n["company"], "need": "crm"}
        sub = customer.create(f"/api/v1/public/forms/{n['slug']}/submissions", {"answers": answers, "phone_code": phone_code, "source_channel": "expo"}, what="submit the form")
        # The customer gets a receipt of the submission only: nothing of the lead it made or reached.
        self.expect("lead_id" not in sub and sub.get("status") == "received", f"the submission answer is not a plain receipt: {sub}")
        self.say(f"customer {cust['id']} opened '{public['title']}' ({len(public['fields'])} fields), tapped the phone button "
                 f"(phone_code …{phone_code[-6:]}) and submitted → 201 receipt: submission {sub['submission_id']} {sub['status']}")

        # -- allocation; the rep finds the new lead by the customer's phone (exact, blind index)
        out = self.job("allocate_new_leads", None)
        found = rep.get("/api/v1/leads", query={"phone": n["phone"]}, what="the rep looks the customer up by phone")
        self.expect(len(found["items"]) == 1, f"the customer's lead was not allocated to the rep (job said {out})")
        lead_id = self.result.lead_id = found["items"][0]["id"]
        lead = rep.get(f"/api/v1/leads/{lead_id}", what="the rep reads the allocated lead")
        self.expect(lead.get("owner_id") == rep_user["id"], f"lead {lead_id} was not allocated to the rep (owner {lead.get('owner_id')}; job said {out})")
        self.say(f"allocate_new_leads → {_brief(out)}; lead {lead_id} owner = rep, stage {lead['stage']}, phone {lead.get('phone_masked') or lead.get('phone')}")

        # -- the outbox delivers the assignment as a subscribe message
        self.seen_messages = len(self.stub.messages(n["rep_openid"]))
        out, msgs = self.deliver("lead_assigned", first_morning, "no lead_assigned subscribe message reached the rep")
        self.say(f"deliver_outbox @ {first_morning:%m-%d %H:%M} → {_brief(out)}; WeChat message to rep: {_text(msgs[-1])}")

        # -- the rep logs in again with WeChat only; an expired access token is refreshed once
        rep.wechat_login(self.wx_code(n["rep_openid"]))
        rep.access_token = "expired.access.token"
        me = rep.get("/api/v1/me", what="GET /me with an expired token")
        self.expect(me["id"] == rep_user["id"], "refresh gave someone else's session")
        self.say(f"rep logged in with wx.login alone (bound: {me['role']}); expired access token → 401 → /auth/refresh → GET /me 200 ({rep.refreshes} refresh)")

        lst = rep.get("/api/v1/leads", query={"limit": 20}, what="my leads")
        self.expect(any(i["id"] == lead_id for i in lst["items"]), "the lead is not in the rep's list")

        # -- a visit with check-in and the next follow-up
        next_at = first_morning + timedelta(days=1)
        fu = rep.create(f"/api/v1/leads/{lead_id}/followups", {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"visit-{env.tag}")), "kind": "visit", "content": "上门拜访，演示了系统，客户有意向",
            "location": {"lat": 31.2304, "lng": 121.4737, "address": "上海市黄浦区人民广场"}, "next_followup_at": next_at.isoformat(),
        }, idempotent=True, what="log a visit")
        lead = rep.get(f"/api/v1/leads/{lead_id}", what="lead after the visit")
        tasks = rep.get("/api/v1/tasks", query={"status": "open"}, what="my tasks")
        task = self.found(next((t for t in tasks["items"] if t.get("lead_id") == lead_id), None), "the next follow-up made no task")
        self.say(f"rep logged visit {fu['id']} with check-in (31.2304,121.4737) → stage {lead['stage']}, next follow-up "
                 f"{next_at:%m-%d %H:%M}, task {task['id']} due {task['due_at']}")

        # -- the reminder fires (clock moved to 30 minutes before the follow-up)
        remind_now = next_at - timedelta(minutes=30)
        out = self.job("send_due_reminders", remind_now)
        notes = rep.get("/api/v1/notifications", query={"unread": "true"}, what="my notifications")
        reminder = self.found(next((x for x in notes["items"] if x["kind"] == "task_reminder"), None), f"send_due_reminders made no task reminder (job said {out})")
        _, msgs = self.deliver("task_reminder", remind_now, "the task reminder did not reach WeChat")
        self.say(f"send_due_reminders @ {remind_now:%m-%d %H:%M} → {_brief(out)}; in-app '{reminder['title']}'; WeChat: {_text(msgs[-1])}")
        rep.call("POST", f"/api/v1/notifications/{reminder['id']}/read", idempotent=True, what="read the reminder")

        # -- the rep drafts and submits a contract
        start = today
        end = start + timedelta(days=364)
        contract = rep.create("/api/v1/contracts", {"lead_id": lead_id, "title": f"CRM 年度订阅-{env.tag}", "amount_fen": 5_000_000,
                                                    "start_date": start.isoformat(), "end_date": end.isoformat()}, what="draft a contract")
        cid = self.result.contract_id = contract["id"]
        path = f"/api/v1/contracts/{cid}"
        submitted = rep.call("POST", f"{path}/submit", {"version": contract["version"]}, what="submit the contract",
                             verify=self.verify_status(rep, path, ("pending", "active")))
        self.expect(submitted["status"] == "pending", f"contract {cid} is {submitted['status']} after submit")
        self.say(f"rep drafted contract {cid} (¥{contract['amount_fen'] / 100:,.2f}, {start} → {end}) and submitted it → {submitted['status']}, "
                 f"waiting for {submitted.get('current_approvers')}")

        # -- the manager approves from the inbox
        boss = self.client("manager")
        boss.password_login(n["manager"], self.password)
        inbox = boss.get("/api/v1/approvals", query={"status": "pending"}, what="approval inbox")
        item = next((i for i in inbox["items"] if i.get("id") == cid or i.get("contract_id") == cid), None)
        self.expect(item is not None, f"contract {cid} is not in the manager's inbox: {inbox}")
        approved = boss.call("POST", f"{path}/approve", {"version": submitted["version"], "comment": "同意，尽快回款"}, what="approve",
                             verify=self.verify_status(boss, path, ("active",)))
        self.expect(approved["status"] == "active", f"contract {cid} is {approved['status']} after approval")
        self.say(f"manager saw {len(inbox['items'])} pending in the inbox and approved → contract {approved['status']}")

        lead = rep.get(f"/api/v1/leads/{lead_id}", what="lead after approval")
        self.expect(lead["stage"] == "customer", f"the lead is {lead['stage']}, not customer")
        timeline = rep.get(f"/api/v1/leads/{lead_id}/timeline", query={"limit": 100}, what="timeline")
        kinds = [e["kind"] for e in reversed(timeline["items"])]
        self.say(f"lead {lead_id} is now '{lead['stage']}'; timeline: {' → '.join(kinds)}")
        mine = customer.get("/api/v1/public/my-submissions", what="my submissions")
        self.say(f"customer sees the submission as '{mine['items'][0]['status']}' in 我的提交")

        # -- the manager's view of the team: the funnel, read from the counters the fold job keeps
        out = self.job("fold_stats", None)
        today = self.env.now().astimezone(TZ).date()
        window = {"from": (today - timedelta(days=1)).isoformat(), "to": (today + timedelta(days=1)).isoformat()}
        funnel = boss.get("/api/v1/reports/funnel", query=window, what="team funnel")
        self.expect(funnel["created"] >= 1 and funnel["conversions"] >= 1, f"the team funnel does not show the new customer (fold_stats said {out}): {funnel}")
        self.say(f"fold_stats → {_brief(out)}; manager's team funnel {window['from']} → {window['to']}: {funnel['created']} created, "
                 f"{funnel['conversions']} became customers (conversion rate {funnel['conversion_rate']})")

        # -- 30 days before the end, the renewal reminder
        renew_now = morning(end - timedelta(days=30))
        out = self.job("renewal_reminders", renew_now)
        _, msgs = self.deliver("renewal_due", renew_now, f"no renewal reminder reached WeChat (renewal_reminders said {out})")
        self.say(f"renewal_reminders @ {renew_now:%Y-%m-%d %H:%M} → {_brief(out)}; WeChat: {_text(msgs[-1])}")

        self.result.summary = self.summarize(rep, boss, customer)
        return self.result

    # ------------------------------------------------------------ flows shared with the pages
    def subscribe_all(self, client: Client, openid: str, template_ids: list[str]) -> dict[str, int]:
        """What the notifications page does: ``wx.requestSubscribeMessage`` (the user accepts every
        template: WeChat now allows one message of each) and one ``POST /me/subscriptions`` per
        acceptance. Returns the server's remaining count per template."""
        answer = self.stub.request_subscribe_message(openid, template_ids)
        accepted = [t for t in template_ids if answer.get(t) == "accept"]
        self.expect(accepted == template_ids, f"the subscriptions were not all accepted: {answer}")
        return {template_id: self.subscribe(client, template_id) for template_id in accepted}

    def subscribe(self, client: Client, template_id: str) -> int:
        """One acceptance → POST /me/subscriptions. Not idempotent on the server, so a lost answer
        is checked with ``accepted: false`` (reads the budget)."""
        before = self._remaining(client, template_id)
        resp = client.call("POST", "/api/v1/me/subscriptions", {"template_id": template_id, "accepted": True}, what="report a subscription",
                           verify=lambda: self._counted(client, template_id, before + 1))
        return resp["remaining"]

    def _remaining(self, client: Client, template_id: str) -> int:
        return client.call("POST", "/api/v1/me/subscriptions", {"template_id": template_id, "accepted": False}, idempotent=True, what="read subscriptions")["remaining"]

    def _counted(self, client: Client, template_id: str, wanted: int):
        resp = client._send("POST", "/api/v1/me/subscriptions", {"template_id": template_id, "accepted": False}, {}, True)
        return resp if resp.status == 200 and resp.json["remaining"] >= wanted else None

    @staticmethod
    def verify_status(client: Client, path: str, done: tuple[str, ...]):
        def check():
            resp = client._send("GET", path, None, {}, True)
            return resp if resp.status == 200 and resp.json["status"] in done else None
        return check

    def summarize(self, rep: Client, boss: Client, customer: Client) -> dict:
        """The end state as users see it, with this run's tag and ids taken out (for comparison)."""
        tag = self.env.tag

        def clean(value: Any) -> Any:
            if isinstance(value, str):
                value = value.replace(tag, "<tag>")
                # a WeChat value cut to its keyword's limit may end inside the tag ("…-fl…")
                return next((value[: -len(tag[:i]) - 1] + "<tag>…" for i in range(len(tag) - 1, 0, -1)
                             if value.endswith(tag[:i] + "…")), value)
            if isinstance(value, (list, tuple)):
                return type(value)(clean(v) for v in value)
            if isinstance(value, dict):
                return {k: clean(v) for k, v in value.items()}
            return value

        lead_id, cid = self.result.lead_id, self.result.contract_id
        lead = rep.get(f"/api/v1/leads/{lead_id}")
        timeline = rep.get(f"/api/v1/leads/{lead_id}/timeline", query={"limit": 100})["items"]
        contracts = rep.get("/api/v1/contracts", query={"lead_id": lead_id})["items"]
        leads = rep.get("/api/v1/leads", query={"limit": 100})["items"]
        notes = {who: sorted((x["kind"], x["title"], x["body"], x["delivery"]["state"]) for x in c.get("/api/v1/notifications", query={"limit": 100})["items"])
                 for who, c in (("rep", rep), ("manager", boss))}
        msgs = sorted((m["template_id"], _text(m)) for m in self.stub.messages(self.names["rep_openid"]))
        subs = {t["template_id"]: self._remaining(rep, t["template_id"]) for t in DEMO_TEMPLATES.values()}
        return clean({
            "lead": {k: lead.get(k) for k in ("name", "company", "stage", "tags", "source")} | {"owner_is_rep": lead.get("owner_id") == rep.me["id"]},
            "rep_leads": len(leads),
            "events": sorted(e["kind"] for e in timeline),
            "contracts": sorted((c["title"], c["status"], c["amount_fen"], c["id"] == cid) for c in contracts),
            "tasks": sorted((t["kind"], t["status"]) for t in rep.get("/api/v1/tasks", query={"limit": 100})["items"]),
            "notifications": notes,
            "wechat_messages": msgs,
            "subscriptions_left": subs,
            "submissions": [s["status"] for s in customer.get("/api/v1/public/my-submissions")["items"]],
        })


def _brief(out: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in out.items() if k != "job" and not isinstance(v, (dict, list)))


def run(env: Env) -> Result:
    try:
        return Journey(env).run()
    except ClientError as exc:
        raise JourneyError(str(exc)) from exc
