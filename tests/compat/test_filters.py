"""Conformance: every filter shape the code sends (server/, jobs/) answers what MongoDB documents,
on whatever server the suite runs against. A shape the code avoids because nx-27017 gets it wrong
is pinned too, as a strict xfail on nx-27017 only (``known_gap``; see docs/mongodb-compat.md)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from compat_kit import db, known_gap, server_is_nx  # noqa: F401  (fixtures)

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


async def ids(cursor) -> list:
    return [d["_id"] for d in await cursor.to_list(None)]


async def _leases(db):
    await db.leases.insert_many([
        {"_id": "job:a", "owner": "me", "lease_until": NOW + timedelta(seconds=60)},
        {"_id": "job:c", "owner": "other", "lease_until": NOW - timedelta(seconds=60)},
    ])


@pytest.mark.gen_test
async def test_and_of_id_and_or_selects_only_that_id(db):
    """LeaseService.acquire, PoolService.claim: ``{$and: [{_id}, {$or: [datetime range, equality]}]}``."""
    await _leases(db)
    for target, expected in (("job:b", []), ("job:a", ["job:a"]), ("job:c", ["job:c"])):
        f = {"$and": [{"_id": target}, {"$or": [{"lease_until": {"$lt": NOW}}, {"owner": "me"}]}]}
        assert await ids(db.leases.find(f)) == expected, target
        assert await db.leases.count_documents(f) == len(expected)
    result = await db.leases.replace_one(
        {"$and": [{"_id": "job:b"}, {"$or": [{"lease_until": {"$lt": NOW}}, {"owner": "me"}]}]},
        {"_id": "job:b", "owner": "me", "lease_until": NOW}, upsert=True,
    )
    assert result.matched_count == 0 and result.upserted_id == "job:b"
    assert await db.leases.find_one({"_id": "job:a"}) == {"_id": "job:a", "owner": "me", "lease_until": NOW + timedelta(seconds=60)}


@pytest.mark.gen_test
async def test_id_beside_a_top_level_or_selects_only_that_id(db, known_gap):
    """The form the leases used: nx-27017 drops ``_id`` when the ``$or`` mixes a datetime range
    with another branch. The code writes it as ``$and`` (above)."""
    known_gap("_id beside a top-level $or with a datetime range is dropped")
    await _leases(db)
    f = {"_id": "job:b", "$or": [{"lease_until": {"$lt": NOW}}, {"owner": "me"}]}
    assert await ids(db.leases.find(f)) == []
    result = await db.leases.update_one(f, {"$inc": {"n": 1}})
    assert result.matched_count == 0
    assert "n" not in await db.leases.find_one({"_id": "job:a"})


@pytest.mark.gen_test
async def test_or_of_two_dotted_datetime_ranges(db):
    """OutboxService.deliver_due: pending and due, or sending with an expired claim."""
    await db.n.insert_many([
        {"_id": 1, "delivery": {"state": "pending", "next_attempt_at": NOW - timedelta(minutes=1)}},
        {"_id": 2, "delivery": {"state": "pending", "next_attempt_at": NOW + timedelta(minutes=1)}},
        {"_id": 3, "delivery": {"state": "sending", "claim_until": NOW - timedelta(minutes=1)}},
        {"_id": 4, "delivery": {"state": "sending", "claim_until": NOW + timedelta(minutes=1)}},
        {"_id": 5, "delivery": {"state": "sent", "next_attempt_at": NOW - timedelta(minutes=1)}},
    ])
    f = {"$or": [
        {"delivery.state": "pending", "delivery.next_attempt_at": {"$lte": NOW}},
        {"delivery.state": "sending", "delivery.claim_until": {"$lte": NOW}},
    ]}
    assert sorted(await ids(db.n.find(f))) == [1, 3]


@pytest.mark.gen_test
async def test_equality_with_an_or_of_missing_or_past(db):
    """The claim cool-down: ``{$or: [{f: {$exists: false}}, {f: {$lte: now}}]}`` (no ``$not``)."""
    await db.leads.insert_many([
        {"_id": "none", "team_id": "t", "cooldowns": {}},
        {"_id": "past", "team_id": "t", "cooldowns": {"r1": NOW - timedelta(days=1)}},
        {"_id": "future", "team_id": "t", "cooldowns": {"r1": NOW + timedelta(days=1)}},
        {"_id": "other-team", "team_id": "u", "cooldowns": {}},
    ])
    ok = {"$or": [{"cooldowns.r1": {"$exists": False}}, {"cooldowns.r1": {"$lte": NOW}}]}
    assert sorted(await ids(db.leads.find({"team_id": "t", "$and": [ok]}))) == ["none", "past"]
    for lead_id, expected in (("none", ["none"]), ("past", ["past"]), ("future", []), ("other-team", [])):
        assert await ids(db.leads.find({"_id": lead_id, "team_id": "t", "$and": [ok]})) == expected, lead_id


@pytest.mark.gen_test
async def test_expr_between_two_fields_and_or_inside_one_and(db):
    """PoolService._reserve: ``{_id, $and: [{$expr: {$lt: [$open_leads, $capacity]}}, {$or: …}]}``."""
    await db.users.insert_many([
        {"_id": 1, "open_leads": 1, "capacity": 2, "claims": {}},
        {"_id": 2, "open_leads": 2, "capacity": 2, "claims": {}},
        {"_id": 3, "open_leads": 0, "capacity": 2, "claims": {"d": 5}},
    ])
    def f(user_id):
        return {"_id": user_id, "$and": [{"$expr": {"$lt": ["$open_leads", "$capacity"]}}, {"$or": [{"claims.d": {"$exists": False}}, {"claims.d": {"$lt": 5}}]}]}
    assert [await ids(db.users.find(f(i))) for i in (1, 2, 3)] == [[1], [], []]
    assert await db.users.find_one_and_update(f(2), {"$inc": {"open_leads": 1}}) is None
    assert (await db.users.find_one({"_id": 2}))["open_leads"] == 2


@pytest.mark.gen_test
async def test_expr_beside_a_top_level_or_keeps_the_other_conditions(db, known_gap):
    known_gap("$expr and $or both at the top level drop the other conditions")
    await db.users.insert_many([{"_id": 1, "a": 1, "b": 2}, {"_id": 2, "a": 1, "b": 2}])
    f = {"_id": 2, "$expr": {"$lt": ["$a", "$b"]}, "$or": [{"x": {"$exists": False}}]}
    assert await ids(db.users.find(f)) == [2]
    await db.users.update_one(f, {"$inc": {"n": 1}})
    assert "n" not in await db.users.find_one({"_id": 1})


@pytest.mark.gen_test
async def test_in_nin_exists_and_regex_prefix(db):
    """Allocation's ``_id: {$nin: seen}``, ``$in`` lookups, rotation's ``$exists``, search prefixes."""
    await db.leads.insert_many([
        {"_id": "a", "name": "王先生", "company": "北京", "awaiting_allocation": True, "phone": {"v": 1}},
        {"_id": "b", "name": "李女士", "company": "王氏", "awaiting_allocation": True, "phone": {"v": 2}},
        {"_id": "c", "name": "张三", "awaiting_allocation": False},
    ])
    assert sorted(await ids(db.leads.find({"_id": {"$in": ["a", "c", "zz"]}}))) == ["a", "c"]
    assert await ids(db.leads.find({"owner_id": {"$in": []}})) == []
    assert await ids(db.leads.find({"awaiting_allocation": True, "_id": {"$nin": ["a"]}})) == ["b"]
    assert sorted(await ids(db.leads.find({"phone": {"$exists": True}}))) == ["a", "b"]
    assert await ids(db.leads.find({"phone": {"$exists": False}})) == ["c"]
    assert await ids(db.leads.find({"phone": {"$exists": True}, "phone.v": {"$ne": 2}})) == ["a"]
    prefix = {"$regex": "^王"}
    assert sorted(await ids(db.leads.find({"$or": [{"name": prefix}, {"company": prefix}]}))) == ["a", "b"]
    assert await ids(db.leads.find({"name": {"$regex": "^先生"}})) == []


@pytest.mark.gen_test
async def test_ne_null_skips_null(db):
    """``GET /leads?sort=next_followup``: ``{next_followup_at: {$ne: null}}``; every lead carries the
    field (``null`` when there is no follow-up), so the code relies on this much."""
    await db.leads.insert_many([{"_id": 1, "next_followup_at": NOW}, {"_id": 2, "next_followup_at": None}])
    assert await ids(db.leads.find({"next_followup_at": {"$ne": None}})) == [1]


@pytest.mark.gen_test
async def test_ne_null_skips_a_missing_field(db, known_gap):
    known_gap("{f: {$ne: null}} matches documents without f")
    await db.leads.insert_many([{"_id": 1, "next_followup_at": NOW}, {"_id": 3}])
    assert await ids(db.leads.find({"next_followup_at": {"$ne": None}})) == [1]


@pytest.mark.gen_test
async def test_ne_on_an_array_excludes_documents_that_contain_the_value(db, known_gap):
    """Why the report fold guards with ``seq: {$lt: S}`` instead of ``batches: {$ne: B}``."""
    known_gap("$ne on an array compares the whole array")
    await db.c.insert_many([{"_id": 1, "batches": ["b1", "b2"]}, {"_id": 2, "batches": ["b2"]}])
    assert await ids(db.c.find({"batches": {"$ne": "b1"}})) == [2]


@pytest.mark.gen_test
async def test_datetime_ranges_sort_and_limit(db):
    """Due reminders (``reminders.next_at <= now``, sorted, limited), oldest waiting leads first,
    first pages by ``_id``; datetimes come back as aware UTC datetimes."""
    await db.tasks.insert_many([
        {"_id": i, "status": "open" if i != 3 else "done", "reminders": {"next_at": NOW - timedelta(minutes=10 - i)}, "created_at": NOW + timedelta(seconds=(5, 1, 4, 0, 3, 2)[i])}
        for i in range(6)
    ])
    due = db.tasks.find({"status": "open", "reminders.next_at": {"$lte": NOW - timedelta(minutes=6)}}).sort("reminders.next_at", 1).limit(2)
    assert await ids(due) == [0, 1]
    closed = {"reminders.next_at": {"$gte": NOW - timedelta(minutes=8), "$lte": NOW - timedelta(minutes=8)}}
    assert await ids(db.tasks.find(closed)) == [2], "a closed range is an equality"
    oldest = await ids(db.tasks.find({}).sort("created_at", 1).limit(3))
    assert oldest == [3, 1, 5]
    assert await ids(db.tasks.find({"_id": {"$lt": 4}}).sort("_id", -1).limit(2)) == [3, 2]
    doc = await db.tasks.find_one({"_id": 1})
    assert doc["reminders"]["next_at"] == NOW - timedelta(minutes=9) and doc["reminders"]["next_at"].utcoffset() == timedelta(0)


async def _pages(db):
    t = [NOW - timedelta(minutes=m) for m in (0, 1, 1, 2)]
    await db.leads.insert_many([{"_id": f"l{i}", "owner_id": "r" if i != 1 else "x", "updated_at": t[i % 4]} for i in range(8)])
    # after l6 (1 min ago) in (updated_at desc, _id desc): earlier, or as old with a smaller _id
    return [{"updated_at": {"$lt": t[2]}}, {"updated_at": {"$gte": t[2], "$lte": t[2]}, "_id": {"$lt": "l6"}}]


SORT = [("updated_at", -1), ("_id", -1)]


@pytest.mark.gen_test
async def test_cursor_page_anded_with_the_scope(db):
    """A later page: ``{$and: [scope, {$or: [{k: {$lt: v}}, {k: {$gte: v, $lte: v}, _id: {$lt: id}}]}]}``."""
    after = await _pages(db)
    assert await ids(db.leads.find({"$and": [{"owner_id": "r"}, {"$or": after}]}).sort(SORT)) == ["l5", "l2", "l7", "l3"]
    assert await ids(db.leads.find({"owner_id": "r", "$and": [{"$or": after}]}).sort(SORT)) == ["l5", "l2", "l7", "l3"]


@pytest.mark.gen_test
async def test_cursor_page_beside_the_scope(db, known_gap):
    """The same page with the ``$or`` beside the scope key: nx-27017 drops ``owner_id`` (another
    rep's lead l1 appears), so the cursor must be ANDed with the scope."""
    known_gap("a top-level $or with a datetime range drops the filter's other conditions")
    after = await _pages(db)
    assert await ids(db.leads.find({"owner_id": "r", "$or": after}).sort(SORT)) == ["l5", "l2", "l7", "l3"]


@pytest.mark.gen_test
async def test_membership_on_an_array_field(db):
    """``{tags: "VIP"}`` with the compound ``(tags, updated_at)`` index; ``$addToSet`` / ``$each``."""
    await db.leads.create_index([("tags", 1), ("updated_at", -1)])
    await db.leads.insert_many([{"_id": 1, "tags": ["VIP", "展会"], "updated_at": NOW}, {"_id": 2, "tags": ["展会"], "updated_at": NOW}])
    assert await ids(db.leads.find({"tags": "VIP"})) == [1]
    assert sorted(await ids(db.leads.find({"tags": {"$in": ["展会"]}}))) == [1, 2]
