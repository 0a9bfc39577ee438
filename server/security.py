"""Tokens, passwords and field encryption: the project's cryptography in one place."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from config.settings import Settings
from server.workers import BoundedExecutor

JWT_ALGORITHM = "HS256"
ACCESS = "access"


# ---------------------------------------------------------------- passwords
class Passwords:
    """Argon2id hashing off the event loop, with a dummy check for unknown users.

    ``verify`` takes the same time whether or not the user exists, so the login endpoint does not
    reveal which usernames are real. Hashes run on a small executor of their own
    (``MPCRM_PASSWORD_HASH_WORKERS`` threads; argon2-cffi releases the GIL while it hashes), never on
    the event loop nor the shared default executor, with at most ``MPCRM_PASSWORD_HASH_QUEUE`` waiting:
    a flood of logins gets 503 instead of slowing every other request.
    """

    def __init__(self, settings: Settings) -> None:
        self._hasher = PasswordHasher(time_cost=settings.argon2_time_cost, memory_cost=settings.argon2_memory_kib)
        self._dummy = self._hasher.hash(secrets.token_urlsafe(16))
        self._executor = BoundedExecutor("password-hash", settings.password_hash_workers, settings.password_hash_queue)

    async def hash(self, password: str) -> str:
        return await self._executor.run(self._hasher.hash, password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        def check() -> bool:
            try:
                return self._hasher.verify(stored_hash or self._dummy, password) and stored_hash is not None
            except (VerificationError, InvalidHashError):
                return False

        return await self._executor.run(check)


# ---------------------------------------------------------------- tokens
@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    role: str
    token_version: int
    jti: str
    team_id: str | None = None


class TokenError(Exception):
    """Any reason a token is not accepted; the handler answers 401 without saying which."""


class Tokens:
    """Short-lived HS256 access JWTs with ``iss``/``aud``/``typ``/``kid`` enforced (RFC 8725).

    A token verified once is remembered (at most ``VERIFIED_KEPT``, the oldest dropped first) by its
    exact text with its claims and validity window: the next request with the same token skips the
    parse and the HMAC, and is still refused once the token expires. Any other text, a tampered copy
    included, is verified in full.
    """

    LEEWAY_S = 5
    VERIFIED_KEPT = 10_000

    def __init__(self, settings: Settings) -> None:
        self._keys = settings.jwt_keys()
        self._kid = settings.jwt_kid
        self._issuer = settings.jwt_issuer
        self._audience = settings.jwt_audience
        self.access_ttl = settings.access_token_ttl_s
        # token → (claims, valid from, valid until) in epoch seconds, leeway included
        self._verified: dict[str, tuple[AccessClaims, float, float]] = {}

    def issue_access(self, *, user_id: str, role: str, token_version: int, now: datetime, team_id: str | None = None) -> str:
        claims = {
            "iss": self._issuer,
            "aud": self._audience,
            "sub": user_id,
            "typ": ACCESS,
            "role": role,
            "tv": token_version,
            "tid": team_id,
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()) - 5,
            "exp": int((now + timedelta(seconds=self.access_ttl)).timestamp()),
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._keys[self._kid], algorithm=JWT_ALGORITHM, headers={"kid": self._kid})

    def decode_access(self, token: str) -> AccessClaims:
        known = self._verified.get(token)
        if known is not None:
            claims, valid_from, valid_until = known
            if valid_from <= time.time() < valid_until:
                return claims
            del self._verified[token]  # expired (or not yet valid): the full check says which
        try:
            header = jwt.get_unverified_header(token)
            key = self._keys.get(header.get("kid", ""))
            if key is None or header.get("alg") != JWT_ALGORITHM:
                raise TokenError("unknown key or algorithm")
            payload = jwt.decode(
                token,
                key,
                algorithms=[JWT_ALGORITHM],
                audience=self._audience,
                issuer=self._issuer,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "typ", "jti"]},
                leeway=self.LEEWAY_S,
            )
        except jwt.PyJWTError as exc:
            raise TokenError(str(exc)) from exc
        if payload.get("typ") != ACCESS or not isinstance(payload.get("tv"), int):
            raise TokenError("not an access token")
        claims = AccessClaims(
            user_id=payload["sub"], role=payload["role"], token_version=payload["tv"], jti=payload["jti"], team_id=payload.get("tid")
        )
        # The window PyJWT just enforced: exp (and nbf, iat when present) give or take the leeway.
        issued = int(payload["iat"])
        starts = max(int(payload.get("nbf", issued)), issued) - self.LEEWAY_S
        self._remember(token, (claims, starts, int(payload["exp"]) + self.LEEWAY_S))
        return claims

    def _remember(self, token: str, entry: tuple[AccessClaims, float, float]) -> None:
        while len(self._verified) >= self.VERIFIED_KEPT:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = entry


def new_opaque_token(prefix: str = "") -> str:
    """A random token for refresh tokens, bind codes and similar; only its hash is stored."""
    return prefix + secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


# ---------------------------------------------------------------- personal data
PHONE_RE = re.compile(r"^1[3-9][0-9]{9}$")  # ASCII digits only (``\d`` would take any script's)


def fold_digits(text: str) -> str:
    """Any script's decimal digits as ASCII, after NFKC (full-width ``１３８``, ``＋``, ``－`` and
    the ideographic space become ``138``, ``+``, ``-`` and a space; Arabic-Indic ``١٣٨`` and
    Devanagari ``१३८`` become ``138``)."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(str(unicodedata.decimal(ch)) if not ch.isascii() and unicodedata.decimal(ch, None) is not None else ch for ch in text)


def normalise_mainland_mobile(raw: str) -> str | None:
    """``+86 138-0013-8000`` (in any script's digits) → ``13800138000``; None when it is not a
    mainland mobile number. Every phone is folded here before it is stored, blind-indexed,
    de-duplicated, searched or rate-limited, so one person is one number however it was typed."""
    digits = re.sub(r"[\s\-()]", "", fold_digits(raw or ""))
    for prefix in ("+86", "0086", "86"):
        if digits.startswith(prefix) and len(digits) == len(prefix) + 11:
            digits = digits[len(prefix):]
            break
    return digits if PHONE_RE.match(digits) else None


def mask_phone(phone: str) -> str:
    return phone[:3] + "****" + phone[-4:] if len(phone) >= 7 else "****"


class FieldCipher:
    """AES-256-GCM for personal fields, a fresh nonce per value and the document id as associated
    data, plus an HMAC-SHA256 blind index for exact lookup. Stored form:
    ``{"v": key_version, "n": nonce_b64, "c": ciphertext_b64}``.
    """

    def __init__(self, settings: Settings) -> None:
        self._keys = {v: AESGCM(k) for v, k in settings.field_keys().items()}
        self.current_version = settings.field_key_version
        self._blind_key = settings.blind_key()

    def encrypt(self, plaintext: str, doc_id: str) -> dict:
        nonce = os.urandom(12)
        ct = self._keys[self.current_version].encrypt(nonce, plaintext.encode(), doc_id.encode())
        return {"v": self.current_version, "n": base64.b64encode(nonce).decode(), "c": base64.b64encode(ct).decode()}

    def decrypt(self, sealed: dict, doc_id: str) -> str:
        key = self._keys.get(int(sealed["v"]))
        if key is None:
            raise KeyError(f"field key version {sealed['v']} is not configured")
        return key.decrypt(base64.b64decode(sealed["n"]), base64.b64decode(sealed["c"]), doc_id.encode()).decode()

    def blind_index(self, normalised: str, purpose: str = "phone") -> str:
        return hmac.new(self._blind_key, f"{purpose}:{normalised}".encode(), hashlib.sha256).hexdigest()
