"""Field-key rotation: re-encrypt every sealed personal field under the current key version.

Run with the new key configured as ``MPCRM_FIELD_KEY`` / ``MPCRM_FIELD_KEY_VERSION`` and the old
one kept in ``MPCRM_FIELD_OLD_KEYS`` so it still decrypts. Safe to interrupt and run again: each
document is rewritten only if it still carries the version it was read with.

Each owner re-seals its own documents (``LeadService.reseal_phones``, ``UserService.reseal_sessions``);
this module finds what needs it and builds the guarded writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from pymongo import UpdateOne

from server.security import FieldCipher


async def resealed(collection, field: str, cipher: FieldCipher, batch_size: int = 500) -> AsyncIterator[list[UpdateOne]]:
    """Batches of writes that re-encrypt ``field`` wherever it is sealed under an older key."""
    query = {field: {"$exists": True}, f"{field}.v": {"$ne": cipher.current_version}}
    ops: list[UpdateOne] = []
    async for doc in collection.find(query, {field: 1}).batch_size(batch_size):
        sealed = doc.get(field)
        if not sealed:
            continue
        plain = cipher.decrypt(sealed, str(doc["_id"]))
        ops.append(UpdateOne({"_id": doc["_id"], f"{field}.v": sealed["v"]}, {"$set": {field: cipher.encrypt(plain, str(doc["_id"]))}}))
        if len(ops) >= batch_size:
            yield ops
            ops = []
    if ops:
        yield ops


async def rotate_field_key(leads, users, cipher: FieldCipher, batch_size: int = 500) -> dict[str, int]:
    """Every place a sealed value lives, re-sealed by its owner: lead phones, users' WeChat sessions."""
    return {
        "leads.phone": await leads.reseal_phones(cipher, batch_size),
        "users.wechat_session": await users.reseal_sessions(cipher, batch_size),
    }
