"""The WeChat server API client: code2Session, the stable access token, phone numbers, subscribe
messages, mini-program codes (wxacode.getUnlimited). Every call has a timeout; WeChat's error codes become our stable error codes. The
AppSecret and ``session_key`` never reach a response or a log line, and the cached access token is
stored sealed with the field cipher (AES-256-GCM, like ``session_key``): a dump of the database
does not contain it.
"""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar
from urllib.parse import urlencode

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

from config.settings import Settings
from server.clock import Clock, as_utc
from server.errors import ApiError, Unauthorized
from server.security import FieldCipher

log = logging.getLogger("mpcrm.wechat")
T = TypeVar("T")

# errcode → (our code, HTTP status). Anything else is our misconfiguration or WeChat trouble: 503.
_LOGIN_ERRORS = {
    40029: ("auth.wechat_code_invalid", 401),  # invalid code
    40163: ("auth.wechat_code_invalid", 401),  # code been used
    41008: ("auth.wechat_code_invalid", 401),  # missing code (empty, or not a code at all)
    40226: ("auth.wechat_user_blocked", 401),  # risky user
    45011: ("wechat.rate_limited", 503),  # API minute-quota reached
    -1: ("wechat.unavailable", 503),  # system busy
}
# wxacode.getUnlimited refusals: WeChat says our request is wrong (a page not released, a bad
# scene or argument) — a bad answer from upstream for our caller, 502, never retried blindly.
_WXACODE_ERRORS = {
    41030: ("wechat.qrcode_page_invalid", 502),  # page not in the released mini-program (or malformed)
    40169: ("wechat.qrcode_refused", 502),  # scene empty or longer than 32 characters
    40097: ("wechat.qrcode_refused", 502),  # invalid args
    45009: ("wechat.rate_limited", 503),  # 5,000 codes a minute
    45011: ("wechat.rate_limited", 503),
    -1: ("wechat.unavailable", 503),
}
TOKEN_EXPIRED = {40001, 42001}  # invalid / expired access_token
_TOKEN_MARGIN = timedelta(minutes=5)


class WechatCallError(ApiError):
    """A WeChat call that failed; ``errcode`` is WeChat's own (None for network or format trouble)."""

    def __init__(self, code: str, status: int, errcode: int | None, **kw: Any) -> None:
        super().__init__(code, status, **kw)
        self.errcode = errcode


WXACODE_PATH = "/wxa/getwxacodeunlimit"
_IMAGE_MAGIC = ((b"\x89PNG\r\n\x1a\n", "image/png"), (b"\xff\xd8\xff", "image/jpeg"))


def _image_type(data: bytes) -> str | None:
    """``image/png`` or ``image/jpeg`` by the bytes themselves (not the header WeChat sent)."""
    for magic, kind in _IMAGE_MAGIC:
        if data.startswith(magic):
            return kind
    return None


@dataclass(frozen=True)
class WechatSession:
    openid: str
    session_key: str
    unionid: str | None = None


class WechatClient:
    def __init__(self, settings: Settings, wechat_tokens, clock: Clock, cipher: FieldCipher | None = None) -> None:
        self._base = settings.wechat_api_base.rstrip("/")
        self._appid = settings.wechat_appid
        self._secret = settings.wechat_secret
        self._timeout = settings.wechat_timeout_s
        self._tokens = wechat_tokens
        self._cipher = cipher or FieldCipher(settings)
        self._clock = clock
        self._http = AsyncHTTPClient()

    # ------------------------------------------------------------ transport
    async def _fetch(self, method: str, path: str, params: dict, body: dict | None) -> HTTPResponse:
        """The HTTP answer of one call; a network failure, a timeout or an HTTP error is 503."""
        url = f"{self._base}{path}?{urlencode(params)}"
        request = HTTPRequest(
            url,
            method=method,
            body=json.dumps(body).encode() if body is not None else None,
            headers={"Content-Type": "application/json"} if body is not None else None,
            connect_timeout=self._timeout,
            request_timeout=self._timeout,
        )
        try:
            response = await self._http.fetch(request, raise_error=False)
        except (OSError, HTTPClientError) as exc:  # connection refused, DNS, reset
            log.warning("wechat call failed", extra={"path": path, "error": type(exc).__name__})
            raise WechatCallError("wechat.unavailable", 503, None) from None
        if response.code == 599:
            log.warning("wechat call timed out or failed", extra={"path": path, "error": str(response.error)[:100]})
            raise WechatCallError("wechat.unavailable", 503, None)
        if response.code >= 400:
            log.warning("wechat http error", extra={"path": path, "status": response.code})
            raise WechatCallError("wechat.unavailable", 503, None)
        return response

    @staticmethod
    def _answer(path: str, raw: bytes, errors: dict[int, tuple[str, int]] = _LOGIN_ERRORS) -> dict:
        """A JSON answer as a dict; a WeChat ``errcode`` becomes our error (``errors``, else 503)."""
        try:
            data = json.loads(raw)
            if not isinstance(data, dict):
                raise ValueError("not an object")
        except ValueError:
            log.warning("wechat answered malformed JSON", extra={"path": path})
            raise WechatCallError("wechat.unavailable", 503, None) from None
        errcode = data.get("errcode", 0)
        if errcode not in (0, None):
            log.info("wechat errcode", extra={"path": path, "errcode": errcode})
            code, status = errors.get(errcode, ("wechat.unavailable", 503))
            headers = {"Retry-After": "60"} if code == "wechat.rate_limited" else None
            raise WechatCallError(code, status, errcode, headers=headers)
        return data

    async def _call(self, method: str, path: str, params: dict, body: dict | None = None) -> dict:
        response = await self._fetch(method, path, params, body)
        return self._answer(path, response.body)

    # ------------------------------------------------------------ login
    async def code2session(self, code: str) -> WechatSession:
        if not code or not code.isascii() or not code.isprintable() or code.strip() != code:
            # wx.login codes are printable ASCII; anything else (control characters, spaces) is
            # not a code: refused here, as WeChat would (41008), without asking it.
            raise Unauthorized("auth.wechat_code_invalid")
        data = await self._call(
            "GET",
            "/sns/jscode2session",
            {"appid": self._appid, "secret": self._secret.get_secret_value(), "js_code": code, "grant_type": "authorization_code"},
        )
        openid, session_key = data.get("openid"), data.get("session_key")
        if not isinstance(openid, str) or not openid or not isinstance(session_key, str) or not session_key:
            log.warning("wechat code2session answer lacks openid or session_key")
            raise WechatCallError("wechat.unavailable", 503, None)
        unionid = data.get("unionid")
        return WechatSession(openid=openid, session_key=session_key, unionid=unionid if isinstance(unionid, str) else None)

    # ------------------------------------------------------------ access token
    async def access_token(self, *, force_refresh: bool = False) -> str:
        """The stable access token, cached in the database for every instance.

        ``stable_token`` hands every caller the same token until it expires, so two instances
        refreshing at once get one token and neither invalidates the other.
        """
        now = self._clock.now()
        if not force_refresh:
            cached = await self._tokens.find_one({"_id": self._appid})
            if cached and as_utc(cached["expires_at"]) - _TOKEN_MARGIN > now:
                token = self._unseal(cached)
                if token is not None:
                    return token
        data = await self._call(
            "POST",
            "/cgi-bin/stable_token",
            {},
            {"grant_type": "client_credential", "appid": self._appid, "secret": self._secret.get_secret_value(), "force_refresh": force_refresh},
        )
        token, expires_in = data.get("access_token"), data.get("expires_in")
        if not isinstance(token, str) or not isinstance(expires_in, int):
            raise WechatCallError("wechat.unavailable", 503, None)
        await self._tokens.replace_one(
            {"_id": self._appid},
            {"_id": self._appid, "sealed": self._cipher.encrypt(token, self._token_aad()),
             "expires_at": now + timedelta(seconds=expires_in), "fetched_at": now},
            upsert=True,
        )
        return token

    def _token_aad(self) -> str:
        return f"wechat_tokens:{self._appid}"

    def _unseal(self, cached: dict) -> str | None:
        """The cached token, or None when it cannot be read (an older plaintext entry, a retired
        field key): the caller then fetches a new one and seals that."""
        sealed = cached.get("sealed")
        if not isinstance(sealed, dict):
            return None
        try:
            return self._cipher.decrypt(sealed, self._token_aad())
        except (InvalidTag, KeyError, ValueError, TypeError):
            log.warning("cached wechat access token unreadable; fetching a new one")
            return None

    async def call_with_token(self, path: str, body: dict) -> dict:
        """POST with the access token; on 40001/42001 refresh it once and retry."""
        return await self._with_token(lambda token: self._call("POST", path, {"access_token": token}, body))

    async def _with_token(self, call: Callable[[str], Awaitable[T]]) -> T:
        """``call(access_token)``; on 40001/42001 refresh the token once and call again."""
        token = await self.access_token()
        try:
            return await call(token)
        except WechatCallError as exc:
            if exc.errcode not in TOKEN_EXPIRED:
                raise
        return await call(await self.access_token(force_refresh=True))

    async def unlimited_wxacode(self, *, scene: str, page: str, env_version: str, check_path: bool, width: int) -> tuple[bytes, str]:
        """A mini-program code (wxacode.getUnlimited) as ``(image bytes, content type)``.

        WeChat answers the image itself (JPEG or PNG) or a JSON error: 41030 (page not released)
        → 502 ``wechat.qrcode_page_invalid``, other refusals → 502 ``wechat.qrcode_refused``, its
        rate limit → 503 ``wechat.rate_limited``, anything that is neither an image nor an error
        → 503 ``wechat.unavailable``.
        """
        body = {"scene": scene, "page": page, "check_path": check_path, "env_version": env_version, "width": width}

        async def draw(token: str) -> tuple[bytes, str]:
            response = await self._fetch("POST", WXACODE_PATH, {"access_token": token}, body)
            data = response.body or b""
            kind = _image_type(data)
            if kind is not None:
                return data, kind
            self._answer(WXACODE_PATH, data, _WXACODE_ERRORS)  # raises on an errcode
            log.warning("wechat wxacode answer is neither an image nor an error", extra={"path": WXACODE_PATH})
            raise WechatCallError("wechat.unavailable", 503, None)

        return await self._with_token(draw)

    async def phone_number(self, phone_code: str) -> str:
        """The newer phone-number flow: a one-time code from the phone button → the pure number."""
        data = await self.call_with_token("/wxa/business/getuserphonenumber", {"code": phone_code})
        info = data.get("phone_info") or {}
        watermark = info.get("watermark") or {}
        if watermark.get("appid") not in (None, self._appid):
            raise Unauthorized("auth.wechat_code_invalid")
        number = info.get("purePhoneNumber")
        if not isinstance(number, str) or not number:
            raise WechatCallError("wechat.unavailable", 503, None)
        return number

    async def send_subscribe_message(self, message: dict) -> dict:
        return await self.call_with_token("/cgi-bin/message/subscribe/send", message)

    # ------------------------------------------------------------ encryptedData (older flow)
    def decrypt_user_data(self, session_key: str, encrypted_data: str, iv: str) -> dict:
        """AES-128-CBC with PKCS#7; the watermark must name our appid. Bad input → 400."""
        try:
            key, iv_bytes, data = (base64.b64decode(x, validate=True) for x in (session_key, iv, encrypted_data))
            decryptor = Cipher(algorithms.AES(key), modes.CBC(iv_bytes)).decryptor()
            padded = decryptor.update(data) + decryptor.finalize()
            unpadder = padding.PKCS7(128).unpadder()
            plain = json.loads(unpadder.update(padded) + unpadder.finalize())
        except (ValueError, TypeError):
            raise ApiError("wechat.bad_encrypted_data", 400) from None
        if not isinstance(plain, dict) or (plain.get("watermark") or {}).get("appid") != self._appid:
            raise ApiError("wechat.bad_encrypted_data", 400)
        return plain
