"""Field-key rotation: re-encrypt every sealed personal field under the current key version.

Run with the new key configured as ``MPCRM_FIELD_KEY`` / ``MPCRM_FIELD_KEY_VERSION`` and the old
one kept in ``MPCRM_FIELD_OLD_KEYS`` so it still decrypts. Safe to interrupt and run again: each
document is rewritten only if it still carries the version it was read with.
"""

from __future__ import annotations

from pymongo import UpdateOne

from server.security import FieldCipher

# (collection, field): every place a sealed value lives.
SEALED_FIELDS = (("leads", "phone"), ("users", "wechat_session"))


async def rotate_field_key(db, cipher: FieldCipher, batch_size: int = 500) -> dict[str, int]:
    counts: dict[str, int] = {}
    for collection, field in SEALED_FIELDS:
        done = 0
        query = {field: {"$exists": True}, f"{field}.v": {"$ne": cipher.current_version}}
        cursor = db[collection].find(query, {field: 1}).batch_size(batch_size)
        ops: list[UpdateOne] = []
        async for doc in cursor:
            sealed = doc.get(field)
            if not sealed:
                continue
            plain = cipher.decrypt(sealed, str(doc["_id"]))
            ops.append(
                UpdateOne({"_id": doc["_id"], f"{field}.v": sealed["v"]}, {"$set": {field: cipher.encrypt(plain, str(doc["_id"]))}})
            )
            if len(ops) >= batch_size:
                done += (await db[collection].bulk_write(ops, ordered=False)).modified_count
                ops = []
        if ops:
            done += (await db[collection].bulk_write(ops, ordered=False)).modified_count
        counts[f"{collection}.{field}"] = done
    return counts
