"""The lead aggregate's storage: the only code that writes ``leads`` and ``lead_events``.

``LeadService`` holds the one ``LeadStore`` and is the only caller; every other service asks
``LeadService`` (tests/test_architecture.py checks both). Timeline events are built by ``event``
and nothing else, because the report fold (``StatsService``) reads their exact shape.

Leads carry business datetimes, and datetimes are written by insert, by version-guarded
replacement, inside sub-documents or with ``$currentDate``, never with a bare ``$set``
(docs/mongodb-compat.md).

**Activity order.** Every write that stamps ``updated_at`` also writes ``updated_ms`` (epoch
milliseconds, the application's clock), and lists sort on that. ``updated_at`` is stamped sometimes
by the application (inserts, replacements) and sometimes by the database (``$currentDate``); on
nx-27017 the two are stored differently and a list sorted on them lost every page after the first
once both kinds were present. A number compares the same everywhere.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from bson import ObjectId
from pymongo import ReturnDocument, UpdateOne
from pymongo.errors import BulkWriteError

from server.actor import Actor
from server.clock import Clock
from server.services.keys import resealed


def event(
    lead_id: str, kind: str, actor: Actor | None, data: dict | None = None, *, at: datetime,
    event_id: Any = None, customer_id: str | None = None, extra: dict | None = None,
) -> dict:
    """One timeline event. ``actor`` None is the public form only (a customer, or anonymous); jobs
    pass ``server.actor.SYSTEM``. ``extra`` holds a kind's own top-level fields (a follow-up's
    ``author_id`` and ``updated_at``)."""
    doc: dict[str, Any] = {
        "_id": event_id if event_id is not None else ObjectId(),
        "lead_id": lead_id,
        "kind": kind,
        "at": at,
        "actor_id": actor.id if actor else None,
        "actor_role": actor.role if actor else ("customer" if customer_id else "public"),
        **(extra or {}),
        "data": data or {},
    }
    if customer_id:
        doc["customer_id"] = customer_id
    return doc


def derived_event_id(key: str, at: datetime) -> ObjectId:
    """An event id that is the same every time the same change is recorded (``key`` names it):
    the time of ``at`` (ids stay time-ordered) and 8 bytes of a hash of the key."""
    digest = hashlib.sha256(key.encode()).digest()[:8]
    return ObjectId(int(at.timestamp()).to_bytes(4, "big") + digest)


_TOUCHED = {"updated_at": True, "touched_at": True}


def activity_ms(at: datetime) -> int:
    """``updated_at`` as the number lists sort on."""
    return int(at.timestamp() * 1000)


def stamped(doc: dict) -> dict:
    """A whole lead document (insert or replacement) with ``updated_ms`` following ``updated_at``."""
    return {**doc, "updated_ms": activity_ms(doc["updated_at"])} if doc.get("updated_at") else doc


class LeadStore:
    def __init__(self, *, leads, lead_events, clock: Clock) -> None:
        self._leads = leads
        self._events = lead_events
        self._clock = clock

    def _touch(self, update: dict) -> dict:
        """An update that stamps ``updated_at`` with ``$currentDate`` also sets ``updated_ms``."""
        if "updated_at" in update.get("$currentDate", {}):
            return {**update, "$set": {**update.get("$set", {}), "updated_ms": activity_ms(self._clock.now())}}
        return update

    # ------------------------------------------------------------ leads
    async def insert(self, doc: dict) -> None:
        await self._leads.insert_one(stamped(doc))

    async def insert_leads(self, docs: list[dict]) -> None:
        """Unordered: a ``BulkWriteError`` names the documents that failed; the others are in."""
        await self._leads.insert_many([stamped(d) for d in docs], ordered=False)

    async def note_submission(self, phone_bidx: str, at: datetime, keep: int) -> dict | None:
        """The lead holding this phone, with the submission's time added to its last few."""
        return await self._leads.find_one_and_update(
            {"phone_bidx": phone_bidx},
            {"$push": {"recent_submits": {"$each": [at.timestamp()], "$slice": -keep}}},
            projection={"stage": 1, "recent_submits": 1},
            return_document=ReturnDocument.AFTER,
        )

    async def flag_winback(self, lead_id: str) -> dict | None:
        """A churned customer came back: on the win-back list. Returns the lead as it was before
        (None: not churned), so of two racing returns exactly one sees the flag still unset."""
        return await self._leads.find_one_and_update(
            {"_id": lead_id, "stage": "churned"},
            self._touch({"$set": {"winback_candidate": True}, "$currentDate": {"updated_at": True}, "$inc": {"version": 1}}),
            projection={"name": 1, "owner_id": 1, "team_id": 1, "stage_changed_at": 1, "winback_candidate": 1},
            return_document=ReturnDocument.BEFORE,
        )

    async def replace(self, lead: dict, changes: dict, extra_filter: dict | None = None) -> dict | None:
        """The lead written whole, only if its version is still the one read (else None)."""
        new = stamped({**lead, **changes, "version": lead["version"] + 1})
        return await self._leads.find_one_and_replace(
            {"_id": lead["_id"], "version": lead["version"], **(extra_filter or {})}, new, return_document=ReturnDocument.AFTER
        )

    async def take_from_pool(self, lead_id: str, team_id: str, owner_id: str, assignment: dict, now: datetime) -> dict | None:
        """A claim: matches only while the lead is in the team's pool, unowned, and not in the
        claimer's cool-down; of two racing claims one matches."""
        return await self._leads.find_one_and_update(
            {
                "_id": lead_id,
                "team_id": team_id,
                "pool": True,
                "owner_id": None,
                # Inside $and: beside a top-level $or, nx-27017 drops `_id` and would hand over
                # another pool lead whose cool-down is over (docs/mongodb-compat.md).
                "$and": [{"$or": [{f"cooldowns.{owner_id}": {"$exists": False}}, {f"cooldowns.{owner_id}": {"$lte": now}}]}],
            },
            self._touch({"$set": {"owner_id": owner_id, "pool": False, "assignment": assignment, "first_contact": None}, "$currentDate": _TOUCHED, "$inc": {"version": 1}}),
            return_document=ReturnDocument.AFTER,
        )

    async def to_pool(self, lead_id: str, previous_owner: str, release: dict, cooldowns: dict, version: int | None = None) -> dict | None:
        """Back to the team's pool, if ``previous_owner`` still has it (and, given, at ``version``).
        The whole cool-down map is written: datetimes go inside documents, never bare."""
        filter_: dict[str, Any] = {"_id": lead_id, "owner_id": previous_owner}
        if version is not None:
            filter_["version"] = version
        return await self._leads.find_one_and_update(
            filter_,
            self._touch({"$set": {"owner_id": None, "pool": True, "assignment": None, "release": release, "cooldowns": cooldowns, "first_contact": None},
                         "$currentDate": {"updated_at": True}, "$inc": {"version": 1}}),
            return_document=ReturnDocument.AFTER,
        )

    async def reclaim(self, items: list[tuple[str, str, int, dict, dict]]) -> list[str]:
        """``(lead_id, previous_owner, version, release, cooldowns)``: back to the pool in one
        command, each only if its owner and version are still the ones read. Returns the ids that
        moved: the releases carry this call's ``run`` token, read back in one query (a bulk write
        says how many matched, not which)."""
        if not items:
            return []
        run = str(ObjectId())
        await self._leads.bulk_write([
            UpdateOne({"_id": lead_id, "owner_id": owner, "version": version},
                      self._touch({"$set": {"owner_id": None, "pool": True, "assignment": None, "cooldowns": cooldowns, "release": {**release, "run": run},
                                            "first_contact": None},
                                   "$currentDate": {"updated_at": True}, "$inc": {"version": 1}}))
            for lead_id, owner, version, release, cooldowns in items
        ], ordered=False)
        moved = await self._leads.find({"_id": {"$in": [i[0] for i in items]}, "release.run": run}, {"_id": 1}).to_list(None)
        return [d["_id"] for d in moved]

    async def advance_first_contact(self, steps: list[tuple[str, int, str, dict | None]]) -> None:
        """``(lead_id, at_ms, step, next)``: each lead's first-contact deadline moves on to ``next``
        (None: over), only while it is still the one read (assignment ``at_ms`` and ``step``), in one
        command. Bookkeeping: no version bump, so nobody's edit in progress turns stale."""
        if steps:
            await self._leads.bulk_write([
                UpdateOne({"_id": lead_id, "first_contact.at_ms": at_ms, "first_contact.step": step}, {"$set": {"first_contact": nxt}})
                for lead_id, at_ms, step, nxt in steps
            ], ordered=False)

    async def hand_over(self, lead_id: str, previous_owner: str | None, owner_id: str, assignment: dict, first_contact: dict | None = None) -> dict | None:
        """A manual assignment, if the lead still has the owner it was read with; ``first_contact``
        is the new owner's deadline (server/services/first_contact.py), None for none."""
        return await self._leads.find_one_and_update(
            {"_id": lead_id, "owner_id": previous_owner},
            self._touch({"$set": {"owner_id": owner_id, "pool": False, "assignment": assignment, "awaiting_allocation": False, "first_contact": first_contact},
                         "$currentDate": _TOUCHED, "$inc": {"version": 1}}),
            return_document=ReturnDocument.AFTER,
        )

    async def hand_over_many(self, lead_ids: list[str], previous_owner: str, owner_id: str | None, change: dict) -> None:
        """A hand-over's batch (server/services/handover.py) in one command: the leads still owned
        by ``previous_owner`` go to ``owner_id`` (None: the team's pool). ``change`` is the
        ``assignment`` (to an owner) or the ``release`` (to the pool), carrying the hand-over's id."""
        fields: dict[str, Any] = {"owner_id": owner_id, "pool": owner_id is None, "awaiting_allocation": False}
        fields.update({"assignment": change} if owner_id else {"assignment": None, "release": change})
        await self._leads.update_many(
            {"_id": {"$in": lead_ids}, "owner_id": previous_owner},
            self._touch({"$set": fields, "$currentDate": _TOUCHED if owner_id else {"updated_at": True}, "$inc": {"version": 1}}),
        )

    async def assign_many(self, items: list[tuple[str, str | None, int, dict, dict | None]]) -> None:
        """A bulk assignment (``POST /leads/assign``): ``(lead_id, previous_owner, version,
        assignment, first_contact)`` each, one command for all; a lead that changed since it was read
        (owner or version) stays as it is. The caller reads back which ones carry its
        ``assignment.bulk_id``."""
        ops = [
            UpdateOne(
                {"_id": lead_id, "owner_id": previous, "version": version},
                self._touch({"$set": {"owner_id": assignment["owner_id"], "pool": False, "awaiting_allocation": False, "assignment": assignment,
                                      "first_contact": first_contact},
                             "$currentDate": _TOUCHED, "$inc": {"version": 1}}),
            )
            for lead_id, previous, version, assignment, first_contact in items
        ]
        if ops:
            await self._leads.bulk_write(ops, ordered=False)

    async def allocate_to_pool(self, lead_id: str, allocation: dict) -> bool:
        result = await self._leads.update_one(
            {"_id": lead_id, "owner_id": None, "awaiting_allocation": True},
            self._touch({"$set": {"pool": True, "awaiting_allocation": False, "allocation": allocation}, "$currentDate": {"updated_at": True}, "$inc": {"version": 1}}),
        )
        return bool(result.modified_count)

    async def allocate_to_owner(self, lead_id: str, assignment: dict, first_contact: dict | None = None) -> bool:
        result = await self._leads.update_one(
            {"_id": lead_id, "owner_id": None, "awaiting_allocation": True},
            self._touch({"$set": {"owner_id": assignment["owner_id"], "pool": False, "awaiting_allocation": False, "assignment": assignment,
                                  "first_contact": first_contact},
                         "$currentDate": _TOUCHED, "$inc": {"version": 1}}),
        )
        return bool(result.modified_count)

    async def merge_imported(self, merges: list[tuple[str, list[str]]]) -> None:
        """Rows of an import whose phone already had a lead: their tags join it."""
        await self._leads.bulk_write(
            [
                UpdateOne({"_id": lead_id}, self._touch({**({"$addToSet": {"tags": {"$each": tags}}} if tags else {}), "$inc": {"version": 1}, "$currentDate": {"updated_at": True}}))
                for lead_id, tags in merges
            ],
            ordered=False,
        )

    async def record_rfm(self, changes: list[tuple[str, str | None, dict]], chunk: int = 1000) -> None:
        """``(lead_id, layer, rfm)``: a new layer (None: unchanged) and the scores behind it."""
        ops = [
            UpdateOne({"_id": lead_id}, self._touch({"$set": {"layer": layer, "rfm": rfm}, "$currentDate": {"updated_at": True}}))
            if layer is not None else UpdateOne({"_id": lead_id}, {"$set": {"rfm": rfm}})
            for lead_id, layer, rfm in changes
        ]
        for i in range(0, len(ops), chunk):
            await self._leads.bulk_write(ops[i:i + chunk], ordered=False)

    async def add_lifetime_value(self, lead_id: str, amount_fen: int) -> None:
        """A payment received: the customer's lifetime value (collected to date) grows by it."""
        await self._leads.update_one({"_id": lead_id}, {"$inc": {"lifetime_value_fen": int(amount_fen)}})

    async def set_lifetime_values(self, values: list[tuple[str, int]], chunk: int = 1000) -> None:
        """``(lead_id, fen)``: lifetime values recomputed from the contracts (rebuild-stats)."""
        ops = [UpdateOne({"_id": lead_id}, {"$set": {"lifetime_value_fen": int(fen)}}) for lead_id, fen in values]
        for i in range(0, len(ops), chunk):
            await self._leads.bulk_write(ops[i:i + chunk], ordered=False)

    async def reseal_phones(self, cipher, batch_size: int = 500) -> int:
        done = 0
        async for ops in resealed(self._leads, "phone", cipher, batch_size):
            done += (await self._leads.bulk_write(ops, ordered=False)).modified_count
        return done

    async def stamp_activity(self, batch_size: int = 1000) -> int:
        """Leads written before ``updated_ms`` existed get it from their ``updated_at``."""
        done = 0
        while True:
            docs = await self._leads.find({"updated_ms": {"$exists": False}}, {"updated_at": 1}).limit(batch_size).to_list(None)
            if not docs:
                return done
            ops = [UpdateOne({"_id": d["_id"], "updated_ms": {"$exists": False}}, {"$set": {"updated_ms": activity_ms(d["updated_at"]) if d.get("updated_at") else 0}}) for d in docs]
            await self._leads.bulk_write(ops, ordered=False)
            done += len(ops)

    # ------------------------------------------------------------ the timeline
    async def add_event(self, doc: dict) -> None:
        await self._events.insert_one(doc)

    async def add_events(self, docs: list[dict], *, ordered: bool = False) -> None:
        await self._events.insert_many(docs, ordered=ordered)

    async def add_events_once(self, docs: list[dict]) -> int:
        """Events whose ``_id`` is derived from what they record: one already written (a batch
        repeated after a crash) is skipped. Returns how many were new."""
        try:
            return len((await self._events.insert_many(docs, ordered=False)).inserted_ids)
        except BulkWriteError as exc:
            errors = exc.details.get("writeErrors", [])
            if any(e.get("code") != 11000 for e in errors):
                raise
            return exc.details.get("nInserted", len(docs) - len(errors))

    async def withdraw_event(self, event_id: Any) -> None:
        """An event written ahead of a change that did not happen (someone else made it first)."""
        await self._events.delete_one({"_id": event_id})

    async def claim_for_fold(self, event_ids: list, batch: str) -> None:
        await self._events.update_many({"_id": {"$in": event_ids}, "fold": None}, {"$set": {"fold": {"batch": batch, "state": "claimed"}}})

    async def mark_folded(self, event_ids: list, batch: str) -> None:
        await self._events.update_many({"_id": {"$in": event_ids}}, {"$set": {"fold": {"batch": batch, "state": "done"}}})
