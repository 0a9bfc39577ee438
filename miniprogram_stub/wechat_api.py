"""Fake WeChat server API for offline development and tests.

Implements the parts of ``api.weixin.qq.com`` that the mini-program backend
uses, with WeChat's request/response shapes and error codes:

* ``GET  /sns/jscode2session``               (code2Session)
* ``GET  /cgi-bin/token``                    (getAccessToken)
* ``POST /cgi-bin/stable_token``             (getStableAccessToken)
* ``POST /wxa/business/getuserphonenumber``  (getPhoneNumber)
* ``POST /cgi-bin/message/subscribe/send``   (subscribeMessage.send)

plus JSON control endpoints under ``/__stub__/`` to mint login/phone codes,
inspect sent messages, inject faults and count calls.

Run standalone::

    python -m miniprogram_stub.wechat_api --host 127.0.0.1 --port 8100
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import itertools
import json
import logging
import re
import secrets
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Tuple

import tornado.httpserver
import tornado.web

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
API_PATHS = (
    PATH_JSCODE2SESSION,
    PATH_TOKEN,
    PATH_STABLE_TOKEN,
    PATH_PHONE_NUMBER,
    PATH_SUBSCRIBE_SEND,
)

# errcode -> errmsg, as WeChat spells them (WeChat appends ", rid: ..." which we omit).
ERRMSGS: Dict[int, str] = {
    -1: "system error",
    0: "ok",
    40001: "invalid credential, access_token is invalid or not latest",
    40002: "invalid grant_type",
    40003: "invalid openid",
    40013: "invalid appid",
    40029: "invalid code",
    40037: "invalid template_id",
    40125: "invalid appsecret",
    41001: "access_token missing",
    41002: "appid missing",
    41004: "appsecret missing",
    41008: "missing code",
    42001: "access_token expired",
    45009: "reach max api daily quota limit",
    45011: "api minute-quota reach limit  mustslower  retry next minute",
    47001: "data format error",
    47003: "argument invalid!",
}

MINIPROGRAM_STATES = ("developer", "trial", "formal")


def wx_error(errcode: int, errmsg: Optional[str] = None) -> Dict[str, Any]:
    """A WeChat error body ``{"errcode", "errmsg"}``."""
    return {"errcode": errcode, "errmsg": errmsg or ERRMSGS.get(errcode, "stub error")}


def parse_phone(raw: str) -> Tuple[str, str]:
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
    errcode: Optional[int] = None
    errmsg: Optional[str] = None
    malformed: bool = False
    status: Optional[int] = None
    delay: float = 0.0
    times: int = 1


class StubState:
    """All in-memory state of the fake WeChat server.

    Methods named after WeChat APIs return the JSON body WeChat would send.
    ``clock`` returns epoch seconds; inject a fake one to test expiry.
    """

    def __init__(
        self,
        appid: str = DEFAULT_APPID,
        secret: str = DEFAULT_SECRET,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.appid = appid
        self.secret = secret
        self.clock = clock
        self.users: Dict[str, Optional[str]] = {}  # openid -> unionid
        self.login_codes: Dict[str, Tuple[str, float]] = {}  # code -> (openid, expires_at)
        self.phone_codes: Dict[str, Tuple[str, str, float]] = {}  # code -> (cc, pure, issued_at)
        self.tokens: Dict[str, float] = {}  # access_token -> expires_at
        self.latest_token: Optional[str] = None  # last /cgi-bin/token result
        self.stable_token: Optional[str] = None  # current /cgi-bin/stable_token result
        self.messages: List[Dict[str, Any]] = []
        self.faults: List[Fault] = []
        self.calls: Dict[str, int] = {}
        self._msgids = itertools.count(3_000_000_001)

    # -- control (used by /__stub__/ endpoints and directly by tests) --

    def issue_login_code(self, openid: Optional[str] = None, unionid: Optional[str] = None) -> Dict[str, str]:
        """Register ``openid`` as a user and mint a single-use wx.login code."""
        openid = openid or "o" + secrets.token_urlsafe(21)[:27]
        if unionid is not None or openid not in self.users:
            self.users[openid] = unionid
        code = secrets.token_hex(16)
        self.login_codes[code] = (openid, self.clock() + CODE_TTL)
        return {"code": code, "openid": openid}

    def issue_phone_code(self, phone: str) -> Dict[str, str]:
        """Mint a single-use getPhoneNumber code; raises ``ValueError`` on a bad number."""
        country, pure = parse_phone(phone)
        code = secrets.token_hex(32)
        self.phone_codes[code] = (country, pure, self.clock())
        return {"code": code}

    def add_fault(self, fault: Fault) -> None:
        """Queue a fault; faults for one path are consumed in FIFO order."""
        if fault.path not in API_PATHS:
            raise ValueError(f"unknown path {fault.path!r}; use one of {list(API_PATHS)}")
        if fault.times < 1:
            raise ValueError("times must be >= 1")
        if fault.errcode is None and not fault.malformed and fault.status is None and fault.delay <= 0:
            raise ValueError("a fault needs errcode, malformed, status or delay")
        self.faults.append(fault)

    def take_fault(self, path: str) -> Optional[Fault]:
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

    def _check_credentials(self, appid: Optional[str], secret: Optional[str]) -> Optional[Dict[str, Any]]:
        if not appid:
            return wx_error(41002)
        if not secret:
            return wx_error(41004)
        if appid != self.appid:
            return wx_error(40013)
        if secret != self.secret:
            return wx_error(40125)
        return None

    def code2session(self, appid: str, secret: str, js_code: str, grant_type: str) -> Dict[str, Any]:
        """``/sns/jscode2session``: exchange a login code for openid + session_key."""
        error = self._check_credentials(appid, secret)
        if error:
            return error
        if grant_type != "authorization_code":
            return wx_error(40002)
        if not js_code:
            return wx_error(41008)
        entry = self.login_codes.pop(js_code, None)
        if entry is None or entry[1] <= self.clock():
            return wx_error(40029)
        openid = entry[0]
        body = {"session_key": base64.b64encode(secrets.token_bytes(16)).decode(), "openid": openid}
        if self.users.get(openid):
            body["unionid"] = self.users[openid]
        return body

    def _new_token(self) -> str:
        token = secrets.token_urlsafe(96)
        self.tokens[token] = self.clock() + TOKEN_TTL
        return token

    def _token_body(self, token: str) -> Dict[str, Any]:
        return {"access_token": token, "expires_in": int(round(self.tokens[token] - self.clock()))}

    def get_access_token(self, grant_type: str, appid: str, secret: str) -> Dict[str, Any]:
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
    ) -> Dict[str, Any]:
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
        current = self.stable_token
        if current in self.tokens and force_refresh:
            del self.tokens[current]
        elif current in self.tokens and self.tokens[current] - self.clock() > STABLE_EARLY_REFRESH:
            return self._token_body(current)
        self.stable_token = self._new_token()
        return self._token_body(self.stable_token)

    def check_access_token(self, token: Optional[str]) -> Optional[Dict[str, Any]]:
        """None if ``token`` is usable, else the WeChat error body (41001/40001/42001)."""
        if not token:
            return wx_error(41001)
        if token not in self.tokens:
            return wx_error(40001)
        if self.tokens[token] <= self.clock():
            return wx_error(42001)
        return None

    def get_phone_number(self, access_token: Optional[str], code: Optional[str]) -> Dict[str, Any]:
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

    def send_subscribe_message(self, access_token: Optional[str], body: Dict[str, Any]) -> Dict[str, Any]:
        """``/cgi-bin/message/subscribe/send``: validate and record the message."""
        error = self.check_access_token(access_token)
        if error:
            return error
        touser = body.get("touser")
        if not touser or touser not in self.users:
            return wx_error(40003)
        if not body.get("template_id"):
            return wx_error(40037)
        data = body.get("data")
        if not isinstance(data, dict) or not all(
            isinstance(item, dict) and "value" in item for item in data.values()
        ):
            return wx_error(47003, "argument invalid! data is not {key: {\"value\": ...}}")
        state = body.get("miniprogram_state", "formal")
        if state not in MINIPROGRAM_STATES:
            return wx_error(47003, "argument invalid! miniprogram_state")
        msgid = next(self._msgids)
        self.messages.append(
            {
                "touser": touser,
                "template_id": body["template_id"],
                "page": body.get("page"),
                "data": data,
                "miniprogram_state": state,
                "lang": body.get("lang", "zh_CN"),
                "msgid": msgid,
                "received_at": self.clock(),
            }
        )
        return {"errcode": 0, "errmsg": "ok", "msgid": msgid}


# ---------------------------------------------------------------- handlers


class JsonHandler(tornado.web.RequestHandler):
    """Base handler: JSON in, JSON out, JSON errors."""

    def initialize(self, state: StubState) -> None:
        self.state = state

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")

    def compute_etag(self) -> Optional[str]:
        return None  # state changes between calls; never answer 304

    def write_json(self, body: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(body, ensure_ascii=False))

    def json_body(self) -> Optional[Dict[str, Any]]:
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

    def wx_body(self) -> Optional[Dict[str, Any]]:
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
        self.write_json(
            self.state.code2session(arg("appid", ""), arg("secret", ""), arg("js_code", ""), arg("grant_type", ""))
        )


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
            (r"/__stub__/login-codes", StubLoginCodesHandler, kw),
            (r"/__stub__/phone-codes", StubPhoneCodesHandler, kw),
            (r"/__stub__/messages", StubMessagesHandler, kw),
            (r"/__stub__/faults", StubFaultsHandler, kw),
            (r"/__stub__/expire-access-tokens", StubExpireTokensHandler, kw),
            (r"/__stub__/calls", StubCallsHandler, kw),
        ],
        default_handler_class=NotFoundHandler,
        default_handler_args=kw,
    )


async def start_stub(
    host: str = "127.0.0.1", port: int = 8100, state: Optional[StubState] = None
) -> Tuple[tornado.httpserver.HTTPServer, StubState]:
    """Listen on ``host:port``; call ``server.stop()`` to shut down."""
    state = state or StubState()
    server = make_stub_app(state).listen(port, address=host)
    return server, state


async def _serve_forever(args: argparse.Namespace) -> None:
    state = StubState(appid=args.appid, secret=args.secret)
    await start_stub(args.host, args.port, state)
    log.info("fake WeChat API on http://%s:%d (appid=%s)", args.host, args.port, args.appid)
    await asyncio.Event().wait()


def main(argv: Optional[List[str]] = None) -> None:
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
