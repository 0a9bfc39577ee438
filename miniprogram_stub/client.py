"""A scripted mini-program client: plays a customer, a rep or a manager over real HTTP.

It follows the same rules as the mini-program's ``utils/api.js``:

* a bearer token, refreshed once through ``/auth/refresh`` on a 401 (a spent or revoked refresh
  token means logging in again, as the phone would with ``wx.login``);
* an ``Idempotency-Key`` on every create (POST), kept the same across retries;
* retries with back-off on network failures, only for requests that are safe to repeat: reads,
  creates under an ``Idempotency-Key`` or with the client's own id, and actions that can be checked
  afterwards (``verify``: e.g. "is the contract already pending?").

Synchronous (``urllib``), no dependencies beyond the standard library. The transport is injectable,
so tests can make the network fail (``FlakyTransport``).
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

BACKOFF_S = (0.05, 0.1, 0.2, 0.4, 0.8, 1.6)  # six retries after the first try
RETRY_STATUSES = (502, 503, 504)


class NetworkError(Exception):
    """The request did not reach the server, or its answer was lost."""


class ClientError(Exception):
    """An answer the flow did not expect; carries the response for the message."""

    def __init__(self, what: str, response: Response | None = None) -> None:
        self.response = response
        detail = ""
        if response is not None:
            detail = f" → HTTP {response.status} {response.error_code or ''} {response.text[:300]}"
        super().__init__(what + detail)


@dataclass
class Response:
    status: int
    headers: dict = field(default_factory=dict)
    body: bytes = b""

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None

    @property
    def error_code(self) -> str | None:
        try:
            data = self.json
        except ValueError:
            return None
        return data.get("error", {}).get("code") if isinstance(data, dict) and isinstance(data.get("error"), dict) else None


class UrllibTransport:
    """One HTTP request with ``urllib``; any network problem becomes ``NetworkError``."""

    def __init__(self, timeout: float = 15.0) -> None:
        self.timeout = timeout

    def fetch(self, method: str, url: str, headers: dict, body: bytes | None) -> Response:
        req = urllib.request.Request(url, data=body, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return Response(resp.status, dict(resp.headers), resp.read())
        except urllib.error.HTTPError as exc:
            return Response(exc.code, dict(exc.headers or {}), exc.read() or b"")
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError) as exc:
            raise NetworkError(f"{method} {url}: {exc}") from exc


class FlakyTransport:
    """Every other request fails: alternately before it is sent, and after the server handled it
    (the answer is dropped). Deterministic, so a run can be repeated."""

    def __init__(self, inner: Any, every: int = 2) -> None:
        self.inner = inner
        self.every = every
        self.count = 0
        self.lost_before = 0
        self.lost_after = 0

    def fetch(self, method: str, url: str, headers: dict, body: bytes | None) -> Response:
        self.count += 1
        if self.count % self.every:
            return self.inner.fetch(method, url, headers, body)
        if (self.count // self.every) % 2:
            self.lost_before += 1
            raise NetworkError(f"{method} {url}: network down (request not sent)")
        self.inner.fetch(method, url, headers, body)
        self.lost_after += 1
        raise NetworkError(f"{method} {url}: connection reset (answer lost)")


class Client:
    """One person's mini-program session."""

    def __init__(self, base_url: str, transport: Any = None, *, name: str = "", sleep: Callable[[float], None] = time.sleep,
                 backoff: tuple[float, ...] = BACKOFF_S) -> None:
        self.base_url = base_url.rstrip("/")
        self.transport = transport or UrllibTransport()
        self.name = name
        self.sleep = sleep
        self.backoff = backoff
        self.access_token: str | None = None
        self.refresh_token: str | None = None
        self.user: dict | None = None
        self.relogin: Callable[[], None] | None = None  # how this person logs in again
        self.refreshes = 0
        self.retries = 0

    # ------------------------------------------------------------ low level
    def _send(self, method: str, path: str, body: Any, headers: dict, auth: bool) -> Response:
        hdrs = {"Accept": "application/json", **headers}
        data = None
        if body is not None:
            data = json.dumps(body, ensure_ascii=False).encode()
            hdrs["Content-Type"] = "application/json"
        elif method in ("POST", "PATCH", "PUT"):
            data = b""
        if auth and self.access_token:
            hdrs["Authorization"] = f"Bearer {self.access_token}"
        return self.transport.fetch(method, self.base_url + path, hdrs, data)

    def request(self, method: str, path: str, body: Any = None, *, query: dict | None = None, auth: bool = True,
                idempotent: bool | None = None, key: str | None = None, verify: Callable[[], Response | None] | None = None,
                headers: dict | None = None) -> Response:
        """Send with retries. ``idempotent``: safe to send again (default: GET, or a POST with a key).
        ``verify``: after a lost answer, checks whether the action already happened (returns the
        resource's response then, else None)."""
        if query:
            path = f"{path}?{urlencode({k: v for k, v in query.items() if v is not None})}"
        hdrs = dict(headers or {})
        if key:
            hdrs["Idempotency-Key"] = key
        safe = idempotent if idempotent is not None else (method == "GET" or key is not None)
        refreshed = False
        attempt = 0
        while True:
            try:
                resp = self._send(method, path, body, hdrs, auth)
            except NetworkError:
                if verify is not None:
                    done = self._verify(verify)
                    if done is not None:
                        return done
                elif not safe:
                    raise
                if attempt >= len(self.backoff):
                    raise
                self.retries += 1
                self.sleep(self.backoff[attempt])
                attempt += 1
                continue
            if resp.status == 401 and auth and not refreshed and self.refresh_token is not None:
                refreshed = True
                self.refresh()
                continue
            if resp.status in RETRY_STATUSES and safe and attempt < len(self.backoff):
                self.retries += 1
                self.sleep(self.backoff[attempt])
                attempt += 1
                continue
            return resp

    def _verify(self, verify: Callable[[], Response | None]) -> Response | None:
        for delay in (0,) + self.backoff:
            if delay:
                self.sleep(delay)
            try:
                return verify()
            except NetworkError:
                continue
        raise NetworkError("could not check whether the request was applied")

    def call(self, method: str, path: str, body: Any = None, *, expect: tuple[int, ...] = (200, 201), what: str = "", **kw) -> Any:
        resp = self.request(method, path, body, **kw)
        if resp.status not in expect:
            raise ClientError(f"{self.name}: {what or method + ' ' + path}", resp)
        return resp.json

    def get(self, path: str, **kw) -> Any:
        return self.call("GET", path, **kw)

    def create(self, path: str, body: Any, **kw) -> Any:
        """A creating POST: one Idempotency-Key for all its retries."""
        return self.call("POST", path, body, key=kw.pop("key", None) or str(uuid.uuid4()), **kw)

    # ------------------------------------------------------------ auth
    def _take_tokens(self, pair: dict) -> dict:
        self.access_token = pair["access_token"]
        self.refresh_token = pair["refresh_token"]
        self.user = pair["user"]
        return pair

    @property
    def me(self) -> dict:
        """The signed-in user, from the last login or refresh."""
        if self.user is None:
            raise ClientError(f"{self.name}: not signed in")
        return self.user

    def password_login(self, username: str, password: str) -> dict:
        def login() -> None:
            pair = self.call("POST", "/api/v1/auth/password-login", {"username": username, "password": password}, auth=False,
                             idempotent=True, what="password login")
            self._take_tokens(pair)

        self.relogin = login
        login()
        return self.me

    def wechat_login(self, wx_login: Callable[[], str], bind_code: str | None = None) -> dict:
        """``wx.login()`` → ``/auth/wechat-login``. A code is single-use, so each try asks ``wx_login``
        for a new one. A staff bind whose answer was lost has already happened: the next try
        logs in with the code alone."""
        state = {"bind_code": bind_code}

        def login() -> None:
            last: Exception | None = None
            for delay in (0,) + self.backoff:
                if delay:
                    self.sleep(delay)
                body = {"code": wx_login()}
                if state["bind_code"]:
                    body["bind_code"] = state["bind_code"]
                try:
                    resp = self._send("POST", "/api/v1/auth/wechat-login", body, {}, auth=False)
                except NetworkError as exc:
                    last = exc
                    self.retries += 1
                    continue
                if resp.status == 200:
                    self._take_tokens(resp.json)
                    state["bind_code"] = None  # bound: from now on the code alone logs in
                    return
                if resp.status == 401 and state["bind_code"] and last is not None:
                    state["bind_code"] = None  # the lost answer was the bind itself
                    continue
                raise ClientError(f"{self.name}: WeChat login", resp)
            raise ClientError(f"{self.name}: WeChat login failed after retries: {last}")

        self.relogin = login
        login()
        return self.me

    def refresh(self) -> None:
        """Rotate the token pair. A lost answer leaves us with a spent refresh token (the server
        then revokes the family), so any failure means logging in again."""
        self.refreshes += 1
        try:
            resp = self._send("POST", "/api/v1/auth/refresh", {"refresh_token": self.refresh_token}, {}, auth=False)
        except NetworkError:
            resp = None
        if resp is not None and resp.status == 200:
            self._take_tokens(resp.json)
            return
        if self.relogin is None:
            raise ClientError(f"{self.name}: token refresh failed and no way to log in again", resp)
        self.relogin()


class WechatStub:
    """The fake WeChat server's control endpoints: what ``wx.login`` and the phone button would give."""

    def __init__(self, base_url: str, transport: Any = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.transport = transport or UrllibTransport()

    def _post(self, path: str, body: dict) -> dict:
        resp = self.transport.fetch("POST", self.base_url + path, {"Content-Type": "application/json"}, json.dumps(body).encode())
        if resp.status != 200:
            raise ClientError(f"fake WeChat {path}", resp)
        return resp.json

    def login_code(self, openid: str) -> str:
        return self._post("/__stub__/login-codes", {"openid": openid})["code"]

    def phone_code(self, phone: str) -> str:
        return self._post("/__stub__/phone-codes", {"phone": phone})["code"]

    def request_subscribe_message(self, openid: str, template_ids: list[str], decisions: dict | None = None) -> dict:
        """``wx.requestSubscribeMessage({tmplIds})`` answered on the user's phone (every template
        accepted unless ``decisions`` says ``reject``): ``{template_id: "accept" | "reject"}``."""
        body = {"openid": openid, "template_ids": template_ids, **({"decisions": decisions} if decisions else {})}
        return {k: v for k, v in self._post("/__stub__/subscriptions", body).items() if k != "errMsg"}

    def messages(self, touser: str | None = None) -> list[dict]:
        resp = self.transport.fetch("GET", self.base_url + "/__stub__/messages", {}, None)
        if resp.status != 200:
            raise ClientError("fake WeChat messages", resp)
        items = resp.json["messages"]
        return [m for m in items if touser is None or m["touser"] == touser]
