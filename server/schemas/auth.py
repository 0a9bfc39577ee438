from __future__ import annotations

from pydantic import Field

from server.schemas.common import OutModel, RequestModel, SingleLine
from server.schemas.users import UserOut


class PasswordLogin(RequestModel):
    username: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=256)


class WechatLogin(RequestModel):
    code: SingleLine = Field(min_length=1, max_length=128, description="wx.login() code")
    bind_code: SingleLine | None = Field(None, min_length=1, max_length=128, description="One-time staff bind code")


class RefreshRequest(RequestModel):
    refresh_token: str = Field(min_length=1, max_length=256)


class TokenPair(OutModel):
    access_token: str
    refresh_token: str
    token_type: str = "Bearer"
    expires_in: int
    user: UserOut
