"""Conformance: the GridFS calls of attachments (server/services/uploads.py) answer what MongoDB's
GridFS specification says, on whatever server the suite runs against. The service writes a file
once (``upload_from_stream_with_id``, small ``metadata`` with no dates), reads it by id chunk by
chunk, and deletes files in bulk with one ``delete`` command per collection whose statements each
name one ``_id`` / ``files_id``. Everything that changes (who may see it, what it is attached to)
lives in a plain collection beside the bucket (``upload_records``): nx-27017 emulates GridFS
collections with tables of its own and answers little else on them (the strict xfails below, and
docs/mongodb-compat.md)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from bson import ObjectId
from gridfs import AsyncGridFSBucket, NoFile
from pymongo import DeleteMany, DeleteOne

from compat_kit import db, known_gap, server_is_nx  # noqa: F401  (fixtures)

NOW = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)
DATA = bytes(range(256)) * 40  # 10,240 bytes: three chunks of 4 KiB


@pytest.mark.gen_test
async def test_upload_with_id_and_metadata_reads_back_chunk_by_chunk(db):
    bucket = AsyncGridFSBucket(db, bucket_name="uploads", chunk_size_bytes=4096)
    file_id = ObjectId()
    meta = {"content_type": "image/png", "sha256": "ab" * 32}
    await bucket.upload_from_stream_with_id(file_id, "照片.png", DATA, metadata=meta)
    doc = await db["uploads.files"].find_one({"_id": file_id})
    assert doc["length"] == len(DATA) and doc["chunkSize"] == 4096 and doc["filename"] == "照片.png" and doc["metadata"] == meta
    assert len(await db["uploads.chunks"].find({"files_id": file_id}).to_list(None)) == 3
    out = await bucket.open_download_stream(file_id)
    assert out.length == len(DATA) and out.metadata["content_type"] == "image/png"
    parts = []
    while chunk := await out.readchunk():
        parts.append(chunk)
    assert b"".join(parts) == DATA and [len(p) for p in parts] == [4096, 4096, 2048]
    assert await (await bucket.open_download_stream(file_id)).read() == DATA
    with pytest.raises(NoFile):
        await bucket.open_download_stream(ObjectId())


@pytest.mark.gen_test
async def test_bulk_delete_one_statement_per_file(db):
    """The clean-up job: files by ``_id`` and their chunks by ``files_id``, one command each."""
    bucket = AsyncGridFSBucket(db, bucket_name="uploads", chunk_size_bytes=1024)
    ids = [ObjectId() for _ in range(3)]
    for n, file_id in enumerate(ids):
        await bucket.upload_from_stream_with_id(file_id, f"{n}.png", DATA[:3000], metadata={"n": n})
    gone = ids[:2]
    await db["uploads.chunks"].bulk_write([DeleteMany({"files_id": i}) for i in gone], ordered=False)
    await db["uploads.files"].bulk_write([DeleteOne({"_id": i}) for i in gone], ordered=False)
    assert [d["_id"] for d in await db["uploads.files"].find({}, {"_id": 1}).to_list(None)] == ids[2:]
    assert len(await db["uploads.chunks"].find({"files_id": ids[2]}).to_list(None)) == 3
    for file_id in gone:
        assert await db["uploads.chunks"].find({"files_id": file_id}).to_list(None) == []
        with pytest.raises(NoFile):
            await bucket.open_download_stream(file_id)
    assert await (await bucket.open_download_stream(ids[2])).read() == DATA[:3000]


@pytest.mark.gen_test
async def test_upload_date_is_a_date(db, known_gap):
    known_gap("a GridFS file's uploadDate is read back as a string")
    bucket = AsyncGridFSBucket(db, bucket_name="uploads")
    file_id = ObjectId()
    await bucket.upload_from_stream_with_id(file_id, "a.png", b"x", metadata={})
    assert isinstance((await db["uploads.files"].find_one({"_id": file_id}))["uploadDate"], datetime)


@pytest.mark.gen_test
async def test_metadata_takes_a_date_and_a_conditional_dotted_set(db, known_gap):
    known_gap("GridFS .files collections refuse dates in metadata and ignore a dotted or conditional $set")
    files = db["uploads.files"]
    bucket = AsyncGridFSBucket(db, bucket_name="uploads")
    file_id = ObjectId()
    await bucket.upload_from_stream_with_id(file_id, "a.png", b"x", metadata={"v": 1, "attached_to": []})
    done = await files.update_one({"_id": file_id, "metadata.v": 1}, {"$set": {"metadata.attached_to": [{"kind": "ticket", "id": "t1"}]}, "$inc": {"metadata.v": 1}})
    assert done.modified_count == 1
    assert (await files.update_one({"_id": file_id, "metadata.v": 1}, {"$set": {"metadata.attached_to": []}})).matched_count == 0
    await bucket.upload_from_stream_with_id(ObjectId(), "b.png", b"y", metadata={"created_at": NOW})


@pytest.mark.gen_test
async def test_delete_many_by_in(db, known_gap):
    known_gap("a delete on a GridFS .files collection by _id $in removes nothing")
    bucket = AsyncGridFSBucket(db, bucket_name="uploads")
    ids = [ObjectId(), ObjectId()]
    for file_id in ids:
        await bucket.upload_from_stream_with_id(file_id, "a.png", b"x", metadata={})
    assert (await db["uploads.files"].delete_many({"_id": {"$in": ids}})).deleted_count == 2
