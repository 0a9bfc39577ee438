"""Login, token refresh, logout and the current user."""

from __future__ import annotations

from handlers.base import ALL_ROLES, ApiHandler, operation
from server.schemas.auth import PasswordLogin, RefreshRequest, TokenPair, WechatLogin
from server.schemas.users import UserOut
from server.services.users import user_out


def _pair(result: dict) -> dict:
    return {**result, "user": user_out(result["user"])}


class PasswordLoginHandler(ApiHandler):
    @operation(
        "Staff login with username and password", public=True, body=PasswordLogin, response=TokenPair, tags=("auth",),
        extra_responses={401: "Wrong username or password, or the account is inactive", 429: "Too many failed logins (see Retry-After)"},
    )
    async def post(self) -> None:
        body = self.parse_body(PasswordLogin)
        self.write_model(TokenPair, _pair(await self.ctx.auth.password_login(body.username, body.password, self.client_ip())))


class WechatLoginHandler(ApiHandler):
    @operation(
        "Mini-program login: exchange a wx.login() code (and, once, a staff bind code) for tokens",
        public=True, body=WechatLogin, response=TokenPair, tags=("auth",),
        extra_responses={401: "The wx.login code or the bind code is invalid or expired", 409: "This WeChat account is bound to another staff member"},
    )
    async def post(self) -> None:
        body = self.parse_body(WechatLogin)
        self.write_model(TokenPair, _pair(await self.ctx.auth.wechat_login(body.code, body.bind_code)))


class RefreshHandler(ApiHandler):
    @operation(
        "Rotate a refresh token for a new token pair", public=True, body=RefreshRequest, response=TokenPair, tags=("auth",),
        extra_responses={401: "The refresh token is invalid, expired, revoked or was already used"},
    )
    async def post(self) -> None:
        body = self.parse_body(RefreshRequest)
        self.write_model(TokenPair, _pair(await self.ctx.auth.refresh(body.refresh_token)))


class LogoutHandler(ApiHandler):
    @operation("Revoke this session's refresh tokens", roles=ALL_ROLES, body=RefreshRequest, status=204, tags=("auth",))
    async def post(self) -> None:
        body = self.parse_body(RefreshRequest)
        await self.ctx.auth.logout(self.actor, body.refresh_token)
        self.no_content()


class MeHandler(ApiHandler):
    @operation("The current user", roles=ALL_ROLES, response=UserOut, tags=("auth",))
    async def get(self) -> None:
        self.write_model(UserOut, user_out(await self.current_user_doc()))


routes = [
    (r"/api/v1/auth/password-login", PasswordLoginHandler),
    (r"/api/v1/auth/wechat-login", WechatLoginHandler),
    (r"/api/v1/auth/refresh", RefreshHandler),
    (r"/api/v1/auth/logout", LogoutHandler),
    (r"/api/v1/me", MeHandler),
]
