"""Fake WeChat server API for offline development and tests.

Implements the parts of ``api.weixin.qq.com`` that the mini-program backend
uses, with WeChat's request/response shapes and error codes:

* ``GET  /sns/jscode2session``               (code2Session)
* ``GET  /cgi-bin/token``                    (getAccessToken)
* ``POST /cgi-bin/stable_token``             (getStableAccessToken)
* ``POST /wxa/business/getuserphonenumber``  (getPhoneNumber)
* ``POST /cgi-bin/message/subscribe/send``   (subscribeMessage.send)
* ``POST /wxa/getwxacodeunlimit``            (wxacode.getUnlimited: a PNG naming its scene)

plus JSON control endpoints under ``/__stub__/`` to mint login/phone codes, accept
subscriptions (what ``wx.requestSubscribeMessage`` does on the phone), inspect sent messages,
inject faults, set rate limits and count calls (``docs/wechat-stub.md``).

It refuses what WeChat refuses: a re-used login code (40163), a send to a user with no accepted
subscription left for the template (43101: one acceptance allows one message), an unknown
``template_id`` (40037), a ``page`` that is not in the mini-program's ``app.json`` (41030), a
value that breaks its keyword type's rules (47003: ``thing`` ≤ 20 characters, ``phrase`` ≤ 5
Chinese characters, ``time`` as ``2019年10月1日 15:01``, ...), and calls over the documented rate
limits (45011 per minute, 45009 per day). The templates it knows are the mini-program's own
(``miniprogram/templates.js``), the pages those of ``miniprogram/app.json``.

Run standalone::

    python -m miniprogram_stub.wechat_api --host 127.0.0.1 --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import itertools
import json
import logging
import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import tornado.httpserver
import tornado.web
from PIL import Image, ImageDraw, PngImagePlugin

from config.wechat_templates import keyword_type, load_templates, miniprogram_pages

log = logging.getLogger(__name__)

DEFAULT_APPID = "wx0000000000000000"
DEFAULT_SECRET = "dev-wechat-secret"

CODE_TTL = 300  # login and phone codes: single use, valid 5 minutes
TOKEN_TTL = 7200  # access tokens live 2 hours
TOKEN_OVERLAP = 300  # old token stays valid 5 min after a refresh (getAccessToken)
STABLE_EARLY_REFRESH = 300  # stable_token renews in the last 5 minutes of its life

PATH_JSCODE2SESSION = "/sns/jscode2session"
PATH_TOKEN = "/cgi-bin/token"
PATH_STABLE_TOKEN = "/cgi-bin/stable_token"
PATH_PHONE_NUMBER = "/wxa/business/getuserphonenumber"
PATH_SUBSCRIBE_SEND = "/cgi-bin/message/subscribe/send"
PATH_WXACODE_UNLIMITED = "/wxa/getwxacodeunlimit"
API_PATHS = (
    PATH_JSCODE2SESSION,
    PATH_TOKEN,
    PATH_STABLE_TOKEN,
    PATH_PHONE_NUMBER,
    PATH_SUBSCRIBE_SEND,
    PATH_WXACODE_UNLIMITED,
)

# errcode -> errmsg, as WeChat spells them (WeChat appends ", rid: ..." which we omit).
ERRMSGS: dict[int, str] = {
    -1: "system error",
    0: "ok",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40029: "invalid code",
    40163: "code been used",
    40169: "invalid length for scene, or the data is not json string",
    40037: "invalid template_id",
    40097: "invalid args",
    40125: "invalid appsecret",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41008: "missing code",
    41030: "invalid page",
    42001: "access_token expired",
    43101: "user refuse to accept the msg",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
    47001: "data format error",
    47003: "argument invalid!",
}

MINIPROGRAM_STATES = ("developer", "trial", "formal")

# wxacode.getUnlimited (获取不限制的小程序码): the scene is at most 32 visible characters of digits,
# letters and !#$&'()*+,/:;=?@-._~ ; the width 280..1280 px (default 430); env_version one of these.
WXACODE_ENV_VERSIONS = ("release", "trial", "develop")
WXACODE_SCENE_MAX = 32
_WXACODE_SCENE = re.compile(r"[0-9A-Za-z!#$&'()*+,/:;=?@\-._~]+")

# Value rules of subscribe-message keywords by type (WeChat's subscribeMessage.send documentation,
# 订阅消息参数值内容限制说明). Lengths count characters.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_CLOCK = r"([01]?\d|2[0-3]):[0-5]\d(:[0-5]\d)?"
_DAY = r"\d{4}年(0?[1-9]|1[0-2])月(0?[1-9]|[12]\d|3[01])日"
_TIME_POINT = re.compile(rf"({_DAY}\s?)?{_CLOCK}")
_DATE_POINT = re.compile(rf"{_DAY}(\s?{_CLOCK})?")
_SYMBOL = re.compile(rf"[^0-9A-Za-z{_HAN}\s]+")


def _points(pattern: re.Pattern[str], value: str) -> bool:
    """One point in time, or a period of two joined by ``~``."""
    parts = value.split("~")
    return len(parts) <= 2 and all(pattern.fullmatch(part.strip()) for part in parts)


def _name_ok(value: str) -> bool:
    if re.search(f"[{_HAN}]", value):
        return len(value) <= 10  # Chinese (or mixed) names: 10 characters
    return len(value) <= 20 and re.fullmatch(r"[A-Za-z\s.\-·'_]+", value) is not None


VALUE_RULES: dict[str, Callable[[str], bool]] = {
    "thing": lambda v: len(v) <= 20,
    "number": lambda v: len(v) <= 32 and re.fullmatch(r"\d+(\.\d+)?", v) is not None,
    "letter": lambda v: len(v) <= 32 and re.fullmatch(r"[A-Za-z]+", v) is not None,
    "symbol": lambda v: len(v) <= 5 and _SYMBOL.fullmatch(v) is not None,
    "character_string": lambda v: len(v) <= 32 and re.fullmatch(r"[\x21-\x7e]+", v) is not None,
    "time": lambda v: _points(_TIME_POINT, v),
    "date": lambda v: _points(_DATE_POINT, v),
    "amount": lambda v: re.fullmatch(r"[¥￥$€£]?\d{1,10}(\.\d{1,2})?元?", v) is not None,
    "phone_number": lambda v: len(v) <= 17 and re.fullmatch(r"[\d+\-()\s]+", v) is not None,
    "car_number": lambda v: 1 <= len(v) <= 8,
    "name": _name_ok,
    "phrase": lambda v: re.fullmatch(f"[{_HAN}]{{1,5}}", v) is not None,
}


def value_error(key: str, value: Any) -> str | None:
    """Why WeChat refuses ``value`` for keyword ``key`` (its errmsg), or None when it is fine."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return f"argument invalid! data.{key}.value invalid"
    text = str(value)
    if not text.strip():
        return f"argument invalid! data.{key}.value is empty"
    rule = VALUE_RULES.get(keyword_type(key))
    if rule is None or not rule(text):
        return f"argument invalid! data.{key}.value invalid"
    return None


def wxacode_png(scene: str, page: str, env_version: str, width: int) -> bytes:
    """A ``width``×``width`` PNG that looks like a mini-program code (three corner marks around the
    scene, drawn as text) and names its ``scene``, ``page`` and ``env_version`` in PNG text chunks,
    so a test can read back what the code would open. It encodes nothing a scanner reads."""
    image = Image.new("RGB", (width, width), "white")
    draw = ImageDraw.Draw(image)
    mark = width // 5
    for x, y in ((width // 10, width // 10), (width - width // 10 - mark, width // 10), (width // 10, width - width // 10 - mark)):
        draw.rectangle((x, y, x + mark, y + mark), outline="black", width=max(2, mark // 7))
        draw.rectangle((x + mark // 3, y + mark // 3, x + mark - mark // 3, y + mark - mark // 3), fill="black")
    draw.text((width // 2, width // 2), scene, fill="black", anchor="mm", font_size=max(10, width // 24))
    info = PngImagePlugin.PngInfo()
    for key, value in (("scene", scene), ("page", page), ("env_version", env_version)):
        info.add_text(key, value)
    out = io.BytesIO()
    image.save(out, "PNG", pnginfo=info)
    return out.getvalue()


@dataclass
class RateLimit:
    """At most ``max`` calls per ``window_s`` seconds (per user where the API counts per user)."""

    max: int
    window_s: float
    errcode: int


# The documented limits: code2Session 100 per user per minute; getStableAccessToken 10,000 per
# minute and 500,000 per day, its force_refresh mode 20 per day (and at least 30 s apart, else it
# does not refresh); subscribeMessage.send 10 million per day; wxacode.getUnlimited 5,000 per minute.
DEFAULT_LIMITS: dict[str, RateLimit] = {
    "jscode2session_per_user_minute": RateLimit(100, 60, 45011),
    "stable_token_minute": RateLimit(10_000, 60, 45011),
    "stable_token_day": RateLimit(500_000, 86_400, 45009),
    "stable_token_force_day": RateLimit(20, 86_400, 45009),
    "subscribe_send_day": RateLimit(10_000_000, 86_400, 45009),
    "wxacode_minute": RateLimit(5_000, 60, 45009),
}
FORCE_REFRESH_INTERVAL = 30  # seconds between two force_refresh calls that really refresh


def wx_error(errcode: int, errmsg: str | None = None) -> dict[str, Any]:
    """A WeChat error body ``{"errcode", "errmsg"}``."""
    return {"errcode": errcode, "errmsg": errmsg or ERRMSGS.get(errcode, "stub error")}


def parse_phone(raw: str) -> tuple[str, str]:
    """Parse ``"13800138000"``, ``"+86 138-0013-8000"``, ``"+852 9123 4567"``.

    Returns ``(country_code, pure_phone_number)``; raises ``ValueError``.
    """
    text = str(raw).strip()
    country = "86"
    if text.startswith("+"):
        match = re.match(r"\+(\d{1,3})[\s\-]+(.+)$", text)
        if match:
            country, text = match.group(1), match.group(2)
        elif text.startswith("+86"):
            text = text[3:]
        else:
            raise ValueError("write foreign numbers as '+CC NUMBER'")
    digits = re.sub(r"[\s\-().]", "", text)
    if not digits.isdigit():
        raise ValueError(f"not a phone number: {raw!r}")
    if country == "86":
        if len(digits) == 13 and digits.startswith("86"):
            digits = digits[2:]
        if not re.fullmatch(r"1\d{10}", digits):
            raise ValueError(f"not a mainland mobile number: {raw!r}")
    elif not 4 <= len(digits) <= 14:
        raise ValueError(f"not a phone number: {raw!r}")
    return country, digits


@dataclass
class Fault:
    """A queued failure for the next ``times`` calls to ``path``."""

    path: str
    errcode: int | None = None
    errmsg: str | None = None
    malformed: bool = False
    status: int | None = None
    delay: float = 0.0
    times: int = 1


class StubState:
    """All in-memory state of the fake WeChat server.

    Methods named after WeChat APIs return the JSON body WeChat would send.
    ``clock`` returns epoch seconds; inject a fake one to test expiry.
    ``templates`` (template id → keywords) defaults to the mini-program's ``templates.js``,
    ``pages`` to its ``app.json``; ``limits`` to the documented rate limits.
    """

    def __init__(
        self,
        appid: str = DEFAULT_APPID,
        secret: str = DEFAULT_SECRET,
        clock: Callable[[], float] = time.time,
        templates: dict[str, Iterable[str]] | None = None,
        pages: Iterable[str] | None = None,
    ) -> None:
        self.appid = appid
        self.secret = secret
        self.clock = clock
        if templates is None:
            templates = {t["template_id"]: list(t["fields"].values()) for t in load_templates().values()}
        self.templates: dict[str, list[str]] = {tid: list(keys) for tid, keys in templates.items()}
        self.pages = set(miniprogram_pages() if pages is None else pages)
        self.subscriptions: dict[tuple[str, str], int] = {}  # (openid, template_id) -> sends allowed
        self.limits: dict[str, RateLimit] = {name: RateLimit(**vars(limit)) for name, limit in DEFAULT_LIMITS.items()}
        self._hits: dict[tuple[str, str], list[float]] = {}
        self._last_force_refresh: float | None = None
        self.users: dict[str, str | None] = {}  # openid -> unionid
        self.login_codes: dict[str, tuple[str, float]] = {}  # code -> (openid, expires_at)
        self.used_login_codes: dict[str, float] = {}  # spent code -> its expiry (40163 until then)
        self.phone_codes: dict[str, tuple[str, str, float]] = {}  # code -> (cc, pure, issued_at)
        self.tokens: dict[str, float] = {}  # access_token -> expires_at
        self.latest_token: str | None = None  # last /cgi-bin/token result
        self.stable_token: str | None = None  # current /cgi-bin/stable_token result
        self.messages: list[dict[str, Any]] = []
        self.wxacodes: list[dict[str, Any]] = []  # every mini-program code drawn, in order
        self.faults: list[Fault] = []
        self.calls: dict[str, int] = {}
        self._msgids = itertools.count(3_000_000_001)

    # -- control (used by /__stub__/ endpoints and directly by tests) --

    def issue_login_code(self, openid: str | None = None, unionid: str | None = None) -> dict[str, str]:
        """Register ``openid`` as a user and mint a single-use wx.login code."""
        openid = openid or "o" + secrets.token_urlsafe(21)[:27]
        if unionid is not None or openid not in self.users:
            self.users[openid] = unionid
        code = secrets.token_hex(16)
        self.login_codes[code] = (openid, self.clock() + CODE_TTL)
        return {"code": code, "openid": openid}

    def issue_phone_code(self, phone: str) -> dict[str, str]:
        """Mint a single-use getPhoneNumber code; raises ``ValueError`` on a bad number."""
        country, pure = parse_phone(phone)
        code = secrets.token_hex(32)
        self.phone_codes[code] = (country, pure, self.clock())
        return {"code": code}

    def add_template(self, template_id: str, keywords: Iterable[str]) -> None:
        """Add a template to the mini-program's list (订阅消息 → 我的模板) with these keywords."""
        keywords = list(keywords)
        if not template_id or not keywords or any(keyword_type(k) not in VALUE_RULES for k in keywords):
            raise ValueError(f"a template needs an id and keywords of the types {sorted(VALUE_RULES)}")
        self.templates[template_id] = keywords

    def accept_subscriptions(self, openid: str, template_ids: list[str], decisions: dict[str, str] | None = None) -> dict[str, str]:
        """What ``wx.requestSubscribeMessage({tmplIds})`` does on the phone: the user answers each
        template (``decisions``, default ``accept``); each ``accept`` allows one more message of
        that template to ``openid``. Returns the result object the mini-program gets
        (``{template_id: "accept" | "reject"}``); raises ``ValueError`` like the API's fail
        callback (more than 3 ids, an unknown template)."""
        if not 1 <= len(template_ids) <= 3:
            raise ValueError("tmplIds takes 1 to 3 template ids")
        unknown = [t for t in template_ids if t not in self.templates]
        if unknown:
            raise ValueError(f"20001: no template data return, verify the template id exist: {unknown}")
        decisions = decisions or {}
        result: dict[str, str] = {}
        for template_id in template_ids:
            answer = decisions.get(template_id, "accept")
            if answer not in ("accept", "reject"):
                raise ValueError("a decision is 'accept' or 'reject'")
            if answer == "accept":
                key = (openid, template_id)
                self.subscriptions[key] = self.subscriptions.get(key, 0) + 1
            result[template_id] = answer
        self.users.setdefault(openid, None)
        return result

    def subscriptions_left(self, openid: str) -> dict[str, int]:
        return {tid: n for (who, tid), n in self.subscriptions.items() if who == openid}

    def _limited(self, name: str, key: str = "") -> dict[str, Any] | None:
        """Count one call against limit ``name`` (per ``key``); the error body when over it."""
        limit = self.limits.get(name)
        if limit is None:
            return None
        now = self.clock()
        hits = [t for t in self._hits.get((name, key), []) if t > now - limit.window_s]
        if len(hits) >= limit.max:
            self._hits[(name, key)] = hits
            return wx_error(limit.errcode)
        hits.append(now)
        self._hits[(name, key)] = hits
        return None

    def add_fault(self, fault: Fault) -> None:
        """Queue a fault; faults for one path are consumed in FIFO order."""
        if fault.path not in API_PATHS:
            raise ValueError(f"unknown path {fault.path!r}; use one of {list(API_PATHS)}")
        if fault.times < 1:
            raise ValueError("times must be >= 1")
        if fault.errcode is None and not fault.malformed and fault.status is None and fault.delay <= 0:
            raise ValueError("a fault needs errcode, malformed, status or delay")
        self.faults.append(fault)

    def take_fault(self, path: str) -> Fault | None:
        """Consume one use of the first fault queued for ``path``."""
        for fault in self.faults:
            if fault.path == path:
                fault.times -= 1
                if fault.times <= 0:
                    self.faults.remove(fault)
                return fault
        return None

    def expire_access_tokens(self) -> None:
        """Invalidate every access token issued so far (next use gets 40001)."""
        self.tokens.clear()
        self.latest_token = None
        self.stable_token = None

    def count_call(self, path: str) -> None:
        self.calls[path] = self.calls.get(path, 0) + 1

    # -- WeChat APIs --

    def _check_credentials(self, appid: str | None, secret: str | None) -> dict[str, Any] | None:
        if not appid:
            return wx_error(41002)
        if not secret:
            return wx_error(41004)
        if appid != self.appid:
            return wx_error(40013)
        if secret != self.secret:
            return wx_error(40125)
        return None

    def code2session(self, appid: str, secret: str, js_code: str, grant_type: str) -> dict[str, Any]:
        """``/sns/jscode2session``: exchange a login code for openid + session_key."""
        error = self._check_credentials(appid, secret)
        if error:
            return error
        if grant_type != "authorization_code":
            return wx_error(40002)
        if not js_code or not js_code.isprintable() or not js_code.isascii() or js_code.strip() != js_code:
            return wx_error(41008)  # no usable code (empty, or control characters in it)
        now = self.clock()
        if self.used_login_codes.get(js_code, 0) > now:
            return wx_error(40163)
        entry = self.login_codes.get(js_code)
        if entry is None or entry[1] <= now:
            self.login_codes.pop(js_code, None)
            return wx_error(40029)
        openid = entry[0]
        limited = self._limited("jscode2session_per_user_minute", openid)
        if limited:
            return limited  # the code stays usable
        del self.login_codes[js_code]
        self.used_login_codes[js_code] = entry[1]
        body: dict[str, Any] = {"session_key": base64.b64encode(secrets.token_bytes(16)).decode(), "openid": openid}
        if self.users.get(openid):
            body["unionid"] = self.users[openid]
        return body

    def _new_token(self) -> str:
        token = secrets.token_urlsafe(96)
        self.tokens[token] = self.clock() + TOKEN_TTL
        return token

    def _token_body(self, token: str) -> dict[str, Any]:
        return {"access_token": token, "expires_in": int(round(self.tokens[token] - self.clock()))}

    def get_access_token(self, grant_type: str, appid: str, secret: str) -> dict[str, Any]:
        """``/cgi-bin/token``: always a new token; the previous one lives 5 more minutes."""
        if grant_type != "client_credential":
            return wx_error(40002)
        error = self._check_credentials(appid, secret)
        if error:
            return error
        now = self.clock()
        old = self.latest_token
        if old in self.tokens:
            self.tokens[old] = min(self.tokens[old], now + TOKEN_OVERLAP)
        self.latest_token = self._new_token()
        return self._token_body(self.latest_token)

    def get_stable_access_token(
        self, grant_type: str, appid: str, secret: str, force_refresh: bool = False
    ) -> dict[str, Any]:
        """``/cgi-bin/stable_token``: same token while valid, unless force_refresh.

        Like WeChat, ``expires_in`` is the remaining lifetime, a new token is
        issued in the last 5 minutes, and force_refresh revokes the old one.
        Independent of ``/cgi-bin/token`` tokens.
        """
        if grant_type != "client_credential":
            return wx_error(40002)
        error = self._check_credentials(appid, secret)
        if error:
            return error
        limited = self._limited("stable_token_minute") or self._limited("stable_token_day")
        if limited:
            return limited
        current = self.stable_token
        now = self.clock()
        if force_refresh and current in self.tokens and self._last_force_refresh is not None \
                and now - self._last_force_refresh < FORCE_REFRESH_INTERVAL:
            return self._token_body(current)  # WeChat: force_refresh twice within 30 s does not refresh
        if force_refresh:
            limited = self._limited("stable_token_force_day")
            if limited:
                return limited
            self._last_force_refresh = now
        if current in self.tokens and force_refresh:
            del self.tokens[current]
        elif current in self.tokens and self.tokens[current] - self.clock() > STABLE_EARLY_REFRESH:
            return self._token_body(current)
        self.stable_token = self._new_token()
        return self._token_body(self.stable_token)

    def check_access_token(self, token: str | None) -> dict[str, Any] | None:
        """None if ``token`` is usable, else the WeChat error body (41001/40001/42001)."""
        if not token:
            return wx_error(41001)
        if token not in self.tokens:
            return wx_error(40001)
        if self.tokens[token] <= self.clock():
            return wx_error(42001)
        return None

    def get_phone_number(self, access_token: str | None, code: str | None) -> dict[str, Any]:
        """``/wxa/business/getuserphonenumber``: exchange a phone code for the number."""
        error = self.check_access_token(access_token)
        if error:
            return error
        entry = self.phone_codes.pop(code or "", None)
        if entry is None or entry[2] + CODE_TTL <= self.clock():
            return wx_error(40029)
        country, pure, issued_at = entry
        return {
            "errcode": 0,
            "errmsg": "ok",
            "phone_info": {
                # WeChat: mainland numbers are returned bare, foreign ones with the area code.
                "phoneNumber": pure if country == "86" else f"+{country} {pure}",
                "purePhoneNumber": pure,
                "countryCode": country,
                "watermark": {"timestamp": int(issued_at), "appid": self.appid},
            },
        }

    def send_subscribe_message(self, access_token: str | None, body: dict[str, Any]) -> dict[str, Any]:
        """``/cgi-bin/message/subscribe/send``: validate and record the message."""
        error = self.check_access_token(access_token)
        if error:
            return error
        touser = body.get("touser")
        if not touser or touser not in self.users:
            return wx_error(40003)
        template_id = body.get("template_id")
        if not isinstance(template_id, str) or template_id not in self.templates:
            return wx_error(40037)
        page = body.get("page")
        if page is not None and (not isinstance(page, str) or page.split("?", 1)[0].lstrip("/") not in self.pages):
            return wx_error(41030)
        data = body.get("data")
        if not isinstance(data, dict) or not all(
            isinstance(item, dict) and "value" in item for item in data.values()
        ):
            return wx_error(47003, "argument invalid! data is not {key: {\"value\": ...}}")
        keywords = self.templates[template_id]
        for key in data:
            if key not in keywords:
                return wx_error(47003, f"argument invalid! data.{key} is not a keyword of the template")
        for key in keywords:
            problem = value_error(key, (data.get(key) or {}).get("value", ""))
            if problem:
                return wx_error(47003, problem)
        state = body.get("miniprogram_state", "formal")
        if state not in MINIPROGRAM_STATES:
            return wx_error(47003, "argument invalid! miniprogram_state")
        allowed = self.subscriptions.get((touser, template_id), 0)
        if allowed <= 0:
            return wx_error(43101)
        limited = self._limited("subscribe_send_day")
        if limited:
            return limited
        self.subscriptions[(touser, template_id)] = allowed - 1
        msgid = next(self._msgids)
        self.messages.append(
            {
                "touser": touser,
                "template_id": template_id,
                "page": page,
                "data": data,
                "miniprogram_state": state,
                "lang": body.get("lang", "zh_CN"),
                "msgid": msgid,
                "received_at": self.clock(),
            }
        )
        return {"errcode": 0, "errmsg": "ok", "msgid": msgid}

    def get_unlimited_wxacode(self, access_token: str | None, body: dict[str, Any]) -> tuple[bytes | None, dict[str, Any] | None]:
        """``/wxa/getwxacodeunlimit``: ``(png, None)``, recorded in ``wxacodes``, or ``(None, error)``.

        Like WeChat: the scene is required, at most 32 characters (40169) of the allowed set
        (40097); ``page`` defaults to the home page, takes no leading ``/`` nor query (41030) and
        with ``check_path`` (default true) must be a page of the mini-program (41030);
        ``env_version`` is release (default), trial or develop and ``width`` 280..1280 (40097).
        """
        error = self.check_access_token(access_token)
        if error:
            return None, error
        scene = body.get("scene")
        if not isinstance(scene, str) or not scene or len(scene) > WXACODE_SCENE_MAX:
            return None, wx_error(40169)
        if not _WXACODE_SCENE.fullmatch(scene):
            return None, wx_error(40097, "invalid args: scene has a character outside 0-9 A-Z a-z !#$&'()*+,/:;=?@-._~")
        page = body.get("page", "")
        check_path = body.get("check_path", True)
        env_version = body.get("env_version", "release")
        width = body.get("width", 430)
        if not isinstance(check_path, bool) or env_version not in WXACODE_ENV_VERSIONS \
                or isinstance(width, bool) or not isinstance(width, int) or not 280 <= width <= 1280:
            return None, wx_error(40097, "invalid args: check_path, env_version or width")
        if not isinstance(page, str) or page.startswith("/") or "?" in page or (page and check_path and page not in self.pages):
            return None, wx_error(41030)
        limited = self._limited("wxacode_minute")
        if limited:
            return None, limited
        self.wxacodes.append({"scene": scene, "page": page, "env_version": env_version, "check_path": check_path,
                              "width": width, "received_at": self.clock()})
        return wxacode_png(scene, page, env_version, width), None


# ---------------------------------------------------------------- handlers


class JsonHandler(tornado.web.RequestHandler):
    """Base handler: JSON in, JSON out, JSON errors."""

    def initialize(self, state: StubState) -> None:
        self.state = state

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")

    def compute_etag(self) -> str | None:
        return None  # state changes between calls; never answer 304

    def write_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(body, ensure_ascii=False))

    def json_body(self) -> dict[str, Any] | None:
        """The request body as a dict, or None if it is not a JSON object."""
        try:
            body = json.loads(self.request.body or b"{}")
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.finish(json.dumps({"error": self._reason, "status": status_code}))


class WeChatApiHandler(JsonHandler):
    """Base for fake WeChat endpoints: counts calls and applies queued faults."""

    api_path = ""

    async def prepare(self) -> None:
        self.state.count_call(self.api_path)
        fault = self.state.take_fault(self.api_path)
        if fault is None:
            return
        if fault.delay > 0:
            await asyncio.sleep(fault.delay)
        if fault.malformed:
            self.set_status(fault.status or 200)
            self.finish('{"errcode": 0, "errmsg": "ok", <truncated')
        elif fault.status is not None:
            self.set_status(fault.status)
            if fault.errcode is not None:
                self.finish(json.dumps(wx_error(fault.errcode, fault.errmsg)))
            else:
                self.set_header("Content-Type", "text/html")
                self.finish(f"<html><body><h1>{fault.status} stub fault</h1></body></html>")
        elif fault.errcode is not None:
            self.write_json(wx_error(fault.errcode, fault.errmsg))

    def wx_body(self) -> dict[str, Any] | None:
        """Parsed POST body; answers 47001 and returns None when not a JSON object."""
        body = self.json_body()
        if body is None:
            self.write_json(wx_error(47001))
        return body


class Code2SessionHandler(WeChatApiHandler):
    """GET /sns/jscode2session"""

    api_path = PATH_JSCODE2SESSION

    def get(self) -> None:
        arg = self.get_query_argument
        # The code as sent: Tornado's argument helpers would turn control characters into spaces.
        raw = self.request.query_arguments.get("js_code") or [b""]
        js_code = raw[-1].decode("utf-8", "replace")
        self.write_json(self.state.code2session(arg("appid", ""), arg("secret", ""), js_code, arg("grant_type", "")))


class AccessTokenHandler(WeChatApiHandler):
    """GET /cgi-bin/token"""

    api_path = PATH_TOKEN

    def get(self) -> None:
        arg = self.get_query_argument
        self.write_json(self.state.get_access_token(arg("grant_type", ""), arg("appid", ""), arg("secret", "")))


class StableTokenHandler(WeChatApiHandler):
    """POST /cgi-bin/stable_token"""

    api_path = PATH_STABLE_TOKEN

    def post(self) -> None:
        body = self.wx_body()
        if body is None:
            return
        self.write_json(
            self.state.get_stable_access_token(
                body.get("grant_type", ""),
                body.get("appid", ""),
                body.get("secret", ""),
                force_refresh=body.get("force_refresh") is True,
            )
        )


class PhoneNumberHandler(WeChatApiHandler):
    """POST /wxa/business/getuserphonenumber?access_token=..."""

    api_path = PATH_PHONE_NUMBER

    def post(self) -> None:
        body = self.wx_body()
        if body is None:
            return
        token = self.get_query_argument("access_token", None)
        self.write_json(self.state.get_phone_number(token, body.get("code")))


class SubscribeSendHandler(WeChatApiHandler):
    """POST /cgi-bin/message/subscribe/send?access_token=..."""

    api_path = PATH_SUBSCRIBE_SEND

    def post(self) -> None:
        body = self.wx_body()
        if body is None:
            return
        token = self.get_query_argument("access_token", None)
        self.write_json(self.state.send_subscribe_message(token, body))


class WxacodeUnlimitedHandler(WeChatApiHandler):
    """POST /wxa/getwxacodeunlimit?access_token=... → image/png bytes, or a JSON error"""

    api_path = PATH_WXACODE_UNLIMITED

    def post(self) -> None:
        body = self.json_body()
        if body is None:
            return self.write_json(wx_error(40169))  # "... or the data is not json string"
        png, error = self.state.get_unlimited_wxacode(self.get_query_argument("access_token", None), body)
        if error is not None:
            return self.write_json(error)
        self.set_header("Content-Type", "image/png")
        self.finish(png)


class StubWxacodesHandler(JsonHandler):
    """GET /__stub__/wxacodes → {"wxacodes": [{scene, page, env_version, check_path, width, received_at}]}; DELETE clears."""

    def get(self) -> None:
        self.write_json({"wxacodes": self.state.wxacodes})

    def delete(self) -> None:
        self.state.wxacodes.clear()
        self.write_json({"ok": True})


class StubLoginCodesHandler(JsonHandler):
    """POST /__stub__/login-codes {"openid", "unionid"?} -> {"code", "openid"}"""

    def post(self) -> None:
        body = self.json_body()
        if body is None:
            return self.write_json({"error": "body must be a JSON object"}, 400)
        openid, unionid = body.get("openid"), body.get("unionid")
        if openid is not None and not (isinstance(openid, str) and openid):
            return self.write_json({"error": "openid must be a non-empty string"}, 400)
        self.write_json(self.state.issue_login_code(openid, unionid))


class StubPhoneCodesHandler(JsonHandler):
    """POST /__stub__/phone-codes {"phone"} -> {"code"}"""

    def post(self) -> None:
        body = self.json_body()
        if body is None or not body.get("phone"):
            return self.write_json({"error": 'body must be {"phone": "13800138000"}'}, 400)
        try:
            self.write_json(self.state.issue_phone_code(body["phone"]))
        except ValueError as exc:
            self.write_json({"error": str(exc)}, 400)


class StubSubscriptionsHandler(JsonHandler):
    """POST /__stub__/subscriptions {"openid", "template_ids": [1-3 ids], "decisions"?: {id: "accept"|"reject"}}
    plays wx.requestSubscribeMessage on the user's phone -> {"errMsg": "requestSubscribeMessage:ok", id: "accept", ...};
    GET ?openid= -> {"subscriptions": {template_id: sends left}}."""

    def get(self) -> None:
        openid = self.get_query_argument("openid", "")
        if not openid:
            return self.write_json({"error": "openid is required"}, 400)
        self.write_json({"subscriptions": self.state.subscriptions_left(openid)})

    def post(self) -> None:
        body = self.json_body()
        if body is None or not isinstance(body.get("openid"), str) or not body["openid"] \
                or not isinstance(body.get("template_ids"), list) or not all(isinstance(t, str) for t in body["template_ids"]) \
                or not isinstance(body.get("decisions", {}), dict):
            return self.write_json({"error": 'body must be {"openid": "...", "template_ids": ["..."], "decisions"?: {}}'}, 400)
        try:
            result = self.state.accept_subscriptions(body["openid"], body["template_ids"], body.get("decisions"))
        except ValueError as exc:
            return self.write_json({"errMsg": f"requestSubscribeMessage:fail {exc}"}, 400)
        self.write_json({"errMsg": "requestSubscribeMessage:ok", **result})


class StubTemplatesHandler(JsonHandler):
    """GET /__stub__/templates -> {"templates": {template_id: [keywords]}};
    POST {"template_id", "keywords": ["thing1", "time2"]} adds one to the mini-program's templates."""

    def get(self) -> None:
        self.write_json({"templates": self.state.templates})

    def post(self) -> None:
        body = self.json_body()
        if body is None or not isinstance(body.get("keywords"), list):
            return self.write_json({"error": 'body must be {"template_id": "...", "keywords": ["thing1"]}'}, 400)
        try:
            self.state.add_template(str(body.get("template_id") or ""), [str(k) for k in body["keywords"]])
        except ValueError as exc:
            return self.write_json({"error": str(exc)}, 400)
        self.write_json({"ok": True})


class StubLimitsHandler(JsonHandler):
    """GET /__stub__/limits lists the rate limits; POST {"name", "max", "window_s"?} changes one."""

    def get(self) -> None:
        self.write_json({"limits": {name: vars(limit) for name, limit in self.state.limits.items()}})

    def post(self) -> None:
        body = self.json_body() or {}
        limit = self.state.limits.get(str(body.get("name")))
        try:
            if limit is None:
                raise ValueError(f"name must be one of {sorted(self.state.limits)}")
            limit.max = int(body["max"])
            limit.window_s = float(body.get("window_s", limit.window_s))
            if limit.max < 0 or limit.window_s <= 0:
                raise ValueError("max >= 0 and window_s > 0")
        except (KeyError, TypeError, ValueError) as exc:
            return self.write_json({"error": str(exc)}, 400)
        self.write_json({"ok": True, "limit": vars(limit)})


class StubMessagesHandler(JsonHandler):
    """GET /__stub__/messages lists sent subscribe messages; DELETE clears them."""

    def get(self) -> None:
        self.write_json({"messages": self.state.messages})

    def delete(self) -> None:
        self.state.messages.clear()
        self.write_json({"ok": True})


class StubFaultsHandler(JsonHandler):
    """POST /__stub__/faults queues a fault; GET lists them; DELETE clears them."""

    def get(self) -> None:
        self.write_json({"faults": [vars(fault) for fault in self.state.faults]})

    def post(self) -> None:
        body = self.json_body()
        if body is None:
            return self.write_json({"error": "body must be a JSON object"}, 400)
        try:
            fault = Fault(
                path=str(body.get("path", "")),
                errcode=None if body.get("errcode") is None else int(body["errcode"]),
                errmsg=body.get("errmsg"),
                malformed=bool(body.get("malformed", False)),
                status=None if body.get("status") is None else int(body["status"]),
                delay=float(body.get("delay", 0.0)),
                times=int(body.get("times", 1)),
            )
            self.state.add_fault(fault)
        except (TypeError, ValueError) as exc:
            return self.write_json({"error": str(exc)}, 400)
        self.write_json({"ok": True, "fault": vars(fault)})

    def delete(self) -> None:
        self.state.faults.clear()
        self.write_json({"ok": True})


class StubExpireTokensHandler(JsonHandler):
    """POST /__stub__/expire-access-tokens invalidates all access tokens."""

    def post(self) -> None:
        self.state.expire_access_tokens()
        self.write_json({"ok": True})


class StubCallsHandler(JsonHandler):
    """GET /__stub__/calls -> {"calls": {path: count}}; DELETE resets counts."""

    def get(self) -> None:
        self.write_json({"calls": self.state.calls})

    def delete(self) -> None:
        self.state.calls.clear()
        self.write_json({"ok": True})


class NotFoundHandler(JsonHandler):
    """Unknown paths -> HTTP 404."""

    def prepare(self) -> None:
        raise tornado.web.HTTPError(404)


def make_stub_app(state: StubState) -> tornado.web.Application:
    """Build the Tornado application serving ``state``."""
    kw = {"state": state}
    return tornado.web.Application(
        [
            (PATH_JSCODE2SESSION, Code2SessionHandler, kw),
            (PATH_TOKEN, AccessTokenHandler, kw),
            (PATH_STABLE_TOKEN, StableTokenHandler, kw),
            (PATH_PHONE_NUMBER, PhoneNumberHandler, kw),
            (PATH_SUBSCRIBE_SEND, SubscribeSendHandler, kw),
            (PATH_WXACODE_UNLIMITED, WxacodeUnlimitedHandler, kw),
            (r"/__stub__/login-codes", StubLoginCodesHandler, kw),
            (r"/__stub__/phone-codes", StubPhoneCodesHandler, kw),
            (r"/__stub__/subscriptions", StubSubscriptionsHandler, kw),
            (r"/__stub__/templates", StubTemplatesHandler, kw),
            (r"/__stub__/limits", StubLimitsHandler, kw),
            (r"/__stub__/messages", StubMessagesHandler, kw),
            (r"/__stub__/wxacodes", StubWxacodesHandler, kw),
            (r"/__stub__/faults", StubFaultsHandler, kw),
            (r"/__stub__/expire-access-tokens", StubExpireTokensHandler, kw),
            (r"/__stub__/calls", StubCallsHandler, kw),
        ],
        default_handler_class=NotFoundHandler,
        default_handler_args=kw,
    )


async def start_stub(
    host: str = "127.0.0.1", port: int = 8100, state: StubState | None = None
) -> tuple[tornado.httpserver.HTTPServer, StubState]:
    """Listen on ``host:port``; call ``server.stop()`` to shut down."""
    state = state or StubState()
    server = make_stub_app(state).listen(port, address=host)
    return server, state


async def _serve_forever(args: argparse.Namespace) -> None:
    state = StubState(appid=args.appid, secret=args.secret)
    await start_stub(args.host, args.port, state)
    log.info("fake WeChat API on http://%s:%d (appid=%s)", args.host, args.port, args.appid)
    await asyncio.Event().wait()


def main(argv: list[str] | None = None) -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description="Fake WeChat server API for offline development.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8100)
    parser.add_argument("--appid", default=DEFAULT_APPID)
    parser.add_argument("--secret", default=DEFAULT_SECRET)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        asyncio.run(_serve_forever(args))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
