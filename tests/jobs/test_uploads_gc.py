"""uploads_gc: uploads attached to nothing for a day are deleted (record, file and chunks) in bulk,
under the job's lease; attached ones and younger ones stay, and a second run deletes nothing."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from bson import ObjectId

from jobs.registry import load_jobs, run_job
from server.clock import FixedClock
from uploads_kit import image, stored


@pytest.mark.gen_test
async def test_unattached_uploads_older_than_a_day_are_deleted(ctx, people, raw_db):
    load_jobs()
    rep = await people.rep()
    actor = ctx.auth.actor_from_token(rep.token)
    start = ctx.clock.now()
    old, kept = [await ctx.uploads.create(actor, image("PNG", color=(n, 9, 9)), f"{n}.png") for n in range(2)]
    young = await ctx.at(FixedClock(start + timedelta(hours=2))).uploads.create(actor, image("JPEG"), "later.jpg")
    await ctx.uploads.attach(actor, [kept["_id"]], kind="followup", target_id="f1")
    assert stored(raw_db) == (3, 3)

    result = await run_job(ctx, "uploads_gc", start + timedelta(hours=25))
    assert result["deleted"] == 1
    assert {d["_id"] for d in raw_db.upload_records.find({})} == {kept["_id"], young["_id"]}
    assert stored(raw_db) == (2, 2)
    assert list(raw_db["uploads.chunks"].find({"files_id": ObjectId(old["_id"])})) == []
    assert (await run_job(ctx, "uploads_gc", start + timedelta(hours=25)))["deleted"] == 0
    # what is left still reads back whole (the stored JPEG is the one cleaned of its metadata at upload)
    _, chunks = await ctx.uploads.open(actor, young["_id"])
    data = b"".join([c async for c in chunks])
    assert len(data) == young["size"] and hashlib.sha256(data).hexdigest() == young["sha256"]
