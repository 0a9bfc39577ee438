"""Offline sync: a phone that was offline converges to exactly the server's view.

The app clock is a FixedClock set a minute or two behind the wall clock, so app-stamped writes and
cursors are deterministic, while reassignments are stamped by the database server's clock
(``$currentDate``) — the two-clock situation the cursor's overlap exists for.
"""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta, timezone
from urllib.parse import quote

import pytest

from server.clock import FixedClock
from server.services.sync import scope_key


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock(datetime.now(timezone.utc) - timedelta(seconds=120))


async def sync_pages(api, token: str, cursor: str | None = None, limit: int = 100) -> tuple[list[dict], str]:
    """Every page of one sync round; returns the pages and the cursor to keep."""
    pages = []
    for _ in range(200):
        query = f"?limit={limit}" + (f"&since={quote(cursor)}" if cursor else "")
        r = await api.get("/api/v1/sync" + query, token=token)
        assert r.status == 200, r.body
        page = r.json
        assert set(page) == {"leads", "followups", "tasks", "deleted", "cursor", "has_more"}
        assert len(page["leads"]) <= limit and len(page["followups"]) <= limit  # deletions: all on a round's first page
        pages.append(page)
        cursor = page["cursor"]
        if not page["has_more"]:
            return pages, cursor
    raise AssertionError("sync never finished")


def apply(local: dict[str, dict], pages: list[dict]) -> dict[str, dict]:
    """What the mini-program does: per page, drop deleted leads, then upsert by id and version."""
    for page in pages:
        for lead_id in page["deleted"]:
            local.pop(lead_id, None)
        for lead in page["leads"]:
            held = local.get(lead["id"])
            if held is None or held["version"] <= lead["version"]:
                local[lead["id"]] = lead
    return local


async def server_view(api, token: str) -> dict[str, dict]:
    """GET /api/v1/leads, all pages."""
    found: dict[str, dict] = {}
    cursor = None
    while True:
        r = await api.get("/api/v1/leads?limit=100" + (f"&cursor={quote(cursor)}" if cursor else ""), token=token)
        assert r.status == 200, r.body
        for item in r.json["items"]:
            found[item["id"]] = item
        cursor = r.json["next_cursor"]
        if not cursor:
            return found


async def new_lead(api, token: str, name: str, **fields) -> dict:
    r = await api.post("/api/v1/leads", json={"name": name, **fields}, token=token)
    assert r.status == 201, r.body
    return r.json


def ids(items: list[dict]) -> list[str]:
    return [i["id"] for i in items]


@pytest.mark.gen_test(timeout=60)
async def test_offline_rep_converges_to_the_server_view(api, people, clock, recorder):
    rep, other, mgr = await people.rep(), await people.rep(), await people.manager()
    a = await new_lead(api, rep.token, "甲公司")
    b = await new_lead(api, rep.token, "乙公司", phone="13900002222")
    c = await new_lead(api, rep.token, "丙公司")
    untouched = await new_lead(api, rep.token, "丁公司")
    clock.advance(seconds=30)

    # Online: a full snapshot.
    pages, cursor = await sync_pages(api, rep.token)
    local = apply({}, pages)
    assert sorted(local) == sorted([a["id"], b["id"], c["id"], untouched["id"]])
    assert local == await server_view(api, rep.token)

    # Offline on the phone, meanwhile on the server: the manager gives `a` to another rep (stamped by
    # the database clock) and the rep's earlier-queued writes arrive: an edit of `b`, a follow-up on
    # `b`, and a lead captured offline with the phone's own id, sent twice (a flaky network).
    r = await api.post(f"/api/v1/leads/{a['id']}/assign", json={"owner_id": other.id}, token=mgr.token)
    assert r.status == 200, r.body
    r = await api.patch(f"/api/v1/leads/{b['id']}", json={"name": "乙公司（新）", "version": b["version"]}, token=rep.token)
    assert r.status == 200, r.body
    r = await api.post(f"/api/v1/leads/{b['id']}/followups", json={"kind": "call", "content": "约了周五拜访"}, token=rep.token)
    assert r.status == 201, r.body
    followup = r.json
    client_id = str(uuid.uuid4())
    first = await new_lead(api, rep.token, "离线客户", id=client_id)
    again = await new_lead(api, rep.token, "离线客户", id=client_id)
    assert first["id"] == again["id"] == client_id
    clock.advance(seconds=30)

    # Back online: the changes, each once; the reassigned lead under `deleted`.
    pages, cursor = await sync_pages(api, rep.token, cursor)
    assert len(pages) == 1
    page = pages[0]
    assert sorted(ids(page["leads"])) == sorted([b["id"], client_id]), page
    assert page["deleted"] == [a["id"]]
    assert ids(page["followups"]) == [followup["id"]]
    assert page["tasks"] == []
    local = apply(local, pages)
    assert local[b["id"]]["name"] == "乙公司（新）"
    assert local == await server_view(api, rep.token)  # exact convergence

    # A lead that leaves the scope and comes back is a lead, not a deletion.
    for owner in (other.id, rep.id):
        r = await api.post(f"/api/v1/leads/{c['id']}/assign", json={"owner_id": owner}, token=mgr.token)
        assert r.status == 200, r.body
    clock.advance(seconds=30)
    pages, cursor = await sync_pages(api, rep.token, cursor)
    assert [ids(p["leads"]) for p in pages] == [[c["id"]]]
    assert all(c["id"] not in p["deleted"] for p in pages)
    local = apply(local, pages)
    assert local == await server_view(api, rep.token)

    # Nothing changed since: at most repeats (the database clock runs ahead of this app clock, and
    # the cursor errs on the side of repeating), which change nothing on the phone.
    pages, _ = await sync_pages(api, rep.token, cursor)
    assert [p["deleted"] for p in pages] == [[]] and set(ids(pages[0]["leads"])) <= {c["id"]}
    assert apply(dict(local), pages) == local

    # The other rep received `a` with its history intact; never the rep's own leads.
    pages, _ = await sync_pages(api, other.token)
    assert [ids(p["leads"]) for p in pages] == [[a["id"]]]


@pytest.mark.gen_test(timeout=60)
async def test_sync_never_leaves_the_scope(api, people):
    rep, peer, mgr = await people.rep(), await people.rep(), await people.manager()
    far_rep, far_mgr = await people.rep(team="华南销售部"), await people.manager(team="华南销售部")
    admin = await people.admin()
    mine = [await new_lead(api, rep.token, f"A{i}") for i in range(2)]
    peers = [await new_lead(api, peer.token, f"B{i}") for i in range(2)]
    managers = [await new_lead(api, mgr.token, "M0")]
    far = [await new_lead(api, far_rep.token, "S0")]
    r = await api.post(f"/api/v1/leads/{peers[0]['id']}/followups", json={"kind": "note", "content": "peer note"}, token=peer.token)
    assert r.status == 201

    async def synced(person) -> tuple[set, set]:
        pages, _ = await sync_pages(api, person.token)
        return {i for p in pages for i in ids(p["leads"])}, {i for p in pages for i in ids(p["followups"])}

    assert (await synced(rep)) == ({x["id"] for x in mine}, set())
    peer_leads, peer_followups = await synced(peer)
    assert peer_leads == {x["id"] for x in peers} and len(peer_followups) == 1
    assert (await synced(mgr))[0] == {x["id"] for x in mine + peers + managers}
    assert (await synced(far_mgr))[0] == {x["id"] for x in far}
    assert (await synced(admin))[0] >= {x["id"] for x in mine + peers + managers + far}
    # Every lead a rep receives is theirs.
    pages, _ = await sync_pages(api, rep.token, limit=1)
    assert all(lead["owner_id"] == rep.id for p in pages for lead in p["leads"])


@pytest.mark.gen_test(timeout=90)
async def test_small_pages_walk_everything(api, people, clock):
    rep, other, mgr = await people.rep(), await people.rep(), await people.manager()
    leads = [await new_lead(api, rep.token, f"客户{i}") for i in range(7)]
    followups = []
    for lead in leads[:3]:
        r = await api.post(f"/api/v1/leads/{lead['id']}/followups", json={"kind": "call", "content": "打过电话"}, token=rep.token)
        assert r.status == 201, r.body
        followups.append(r.json["id"])
    clock.advance(seconds=30)

    pages, cursor = await sync_pages(api, rep.token, limit=2)
    assert len(pages) == 4 and [p["has_more"] for p in pages] == [True, True, True, False]
    got = [i for p in pages for i in ids(p["leads"])]
    assert sorted(got) == sorted(x["id"] for x in leads) and len(got) == len(set(got))
    assert sorted(i for p in pages for i in ids(p["followups"])) == sorted(followups)
    local = apply({}, pages)
    assert local == await server_view(api, rep.token)

    # Three leads leave the scope: deletions are paged too, and come before any lead.
    clock.advance(seconds=30)
    gone = [x["id"] for x in leads[4:7]]
    for lead_id in gone:
        r = await api.post(f"/api/v1/leads/{lead_id}/assign", json={"owner_id": other.id}, token=mgr.token)
        assert r.status == 200, r.body
    r = await api.patch(f"/api/v1/leads/{leads[0]['id']}", json={"city": "北京", "version": local[leads[0]["id"]]["version"]}, token=rep.token)
    assert r.status == 200, r.body
    pages, _ = await sync_pages(api, rep.token, cursor, limit=2)
    # All of a round's deletions come on its first page.
    assert sorted(pages[0]["deleted"]) == sorted(gone) and all(p["deleted"] == [] for p in pages[1:])
    assert sorted(i for p in pages for i in p["deleted"]) == sorted(gone)
    assert [i for p in pages for i in ids(p["leads"])] == [leads[0]["id"]]
    local = apply(local, pages)
    assert local == await server_view(api, rep.token)


@pytest.mark.gen_test
async def test_a_sync_page_costs_at_most_four_commands(api, people, recorder, clock):
    rep, other, mgr = await people.rep(), await people.rep(), await people.manager()
    a = await new_lead(api, rep.token, "甲")
    await new_lead(api, rep.token, "乙")
    with recorder.counting() as cmds:
        r = await api.get("/api/v1/sync", token=rep.token)
    assert r.status == 200 and len(cmds) <= 4, cmds  # auth, leads, follow-ups, tasks
    cursor = r.json["cursor"]
    clock.advance(seconds=30)
    r = await api.post(f"/api/v1/leads/{a['id']}/assign", json={"owner_id": other.id}, token=mgr.token)
    assert r.status == 200, r.body
    with recorder.counting() as cmds:
        r = await api.get(f"/api/v1/sync?since={quote(cursor)}", token=rep.token)
    assert r.status == 200 and r.json["deleted"] == [a["id"]], r.body
    assert len(cmds) <= 4, cmds


@pytest.mark.gen_test
async def test_bad_cursors_are_refused(api, people, ctx, clock, wechat):
    rep, mgr = await people.rep(), await people.manager()
    r = await api.get("/api/v1/sync", token=rep.token)
    good = r.json["cursor"]

    def b64(value) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    decoded = json.loads(base64.urlsafe_b64decode(good + "=" * (-len(good) % 4)))
    old = ctx.sync.encode_cursor({"k": decoded["k"], "s": int((clock.now() - timedelta(days=85)).timestamp() * 1000)})
    for bad in ("not a cursor!", "%%%", b64([1, 2]), b64({"v": 1}), b64({**decoded, "s": "yesterday"}), b64({**decoded, "x": 1}), old):
        r = await api.get(f"/api/v1/sync?since={quote(bad)}", token=rep.token)
        assert r.status == 400 and r.error_code == "request.bad_cursor", (bad, r.body)
    # A cursor belongs to its user and scope.
    r = await api.get(f"/api/v1/sync?since={quote(good)}", token=mgr.token)
    assert r.status == 400 and r.error_code == "request.bad_cursor"
    assert decoded["k"] == scope_key(ctx.auth.actor_from_token(rep.token))
    r = await api.get(f"/api/v1/sync?since={quote(good)}", token=rep.token)
    assert r.status == 200
    r = await api.get("/api/v1/sync?limit=0", token=rep.token)
    assert r.status == 422
    r = await api.get("/api/v1/sync")
    assert r.status == 401
    customer = await people.customer(wechat[0])
    r = await api.get("/api/v1/sync", token=customer.token)
    assert r.status == 403 and r.error_code == "auth.forbidden"


@pytest.mark.gen_test
async def test_tasks_come_with_the_sync_and_only_your_own(api, people, clock):
    rep, other = await people.rep(), await people.rep()
    due = (clock.now() + timedelta(days=2)).isoformat()
    mine = await api.post("/api/v1/tasks", json={"title": "送样品", "due_at": due}, token=rep.token)
    theirs = await api.post("/api/v1/tasks", json={"title": "别人的", "due_at": due}, token=other.token)
    assert mine.status == 201 and theirs.status == 201, (mine.body, theirs.body)
    pages, cursor = await sync_pages(api, rep.token)
    assert [t["id"] for p in pages for t in p["tasks"]] == [mine.json["id"]]
    clock.advance(seconds=30)
    r = await api.post(f"/api/v1/tasks/{mine.json['id']}/complete", json={"version": mine.json["version"]}, token=rep.token)
    assert r.status == 200, r.body
    pages, _ = await sync_pages(api, rep.token, cursor)
    assert [(t["id"], t["status"]) for p in pages for t in p["tasks"]] == [(mine.json["id"], "done")]
