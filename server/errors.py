"""Domain errors with stable codes. Services and jobs raise these; only handlers know HTTP.

Every code has a zh-CN and an English message in ``MESSAGES``; a test checks that each code
raised anywhere in the code base has both. Messages may use ``{name}`` placeholders filled from
``params``.
"""

from __future__ import annotations

from typing import Any

MESSAGES: dict[str, dict[str, str]] = {
    # Request shape
    "request.malformed_json": {"zh-CN": "请求体不是有效的 JSON", "en": "The request body is not valid JSON"},
    "request.not_object": {"zh-CN": "请求体必须是 JSON 对象", "en": "The request body must be a JSON object"},
    "request.invalid": {"zh-CN": "请求参数有误", "en": "Some fields are invalid"},
    "request.operator_key": {
        "zh-CN": "字段名不能以 $ 开头或包含 .",
        "en": "Field names may not start with $ or contain a dot",
    },
    "request.too_large": {"zh-CN": "请求体过大（上限 {limit} 字节）", "en": "The request body is too large (limit {limit} bytes)"},
    "request.unsupported_media_type": {"zh-CN": "请使用 application/json", "en": "Send application/json"},
    "request.bad_cursor": {"zh-CN": "分页游标无效", "en": "The page cursor is invalid"},
    "request.not_found": {"zh-CN": "接口不存在", "en": "No such endpoint"},
    "request.method_not_allowed": {"zh-CN": "不支持该请求方法", "en": "This method is not allowed here"},
    "request.version_required": {
        "zh-CN": "请提供 version（请求体或 If-Match 头）",
        "en": "Send the version (in the body or an If-Match header)",
    },
    "request.rate_limited": {"zh-CN": "请求过于频繁，请 {retry_after} 秒后再试", "en": "Too many requests; retry in {retry_after} s"},
    "idempotency.key_reused": {
        "zh-CN": "该幂等键已用于不同的请求",
        "en": "This Idempotency-Key was already used with a different request",
    },
    "idempotency.in_progress": {
        "zh-CN": "相同幂等键的请求仍在处理中",
        "en": "A request with this Idempotency-Key is still being processed",
    },
    "idempotency.bad_key": {"zh-CN": "幂等键格式无效", "en": "The Idempotency-Key header is malformed"},
    # Auth
    "auth.required": {"zh-CN": "请先登录", "en": "Authentication required"},
    "auth.invalid_token": {"zh-CN": "登录凭证无效或已过期", "en": "The token is invalid or expired"},
    "auth.invalid_credentials": {"zh-CN": "用户名或密码错误", "en": "Wrong username or password"},
    "auth.invalid_refresh_token": {"zh-CN": "刷新凭证无效", "en": "The refresh token is invalid"},
    "auth.refresh_token_reused": {
        "zh-CN": "刷新凭证已被使用，相关会话已全部注销",
        "en": "The refresh token was already used; its sessions are revoked",
    },
    "auth.forbidden": {"zh-CN": "没有权限执行此操作", "en": "You are not allowed to do this"},
    "auth.wechat_code_invalid": {"zh-CN": "微信登录凭证无效或已过期", "en": "The WeChat login code is invalid or expired"},
    "auth.wechat_user_blocked": {"zh-CN": "微信判定该用户存在风险", "en": "WeChat flagged this user as risky"},
    "auth.bind_code_invalid": {"zh-CN": "绑定码无效或已过期", "en": "The bind code is invalid, used or expired"},
    "auth.openid_bound": {"zh-CN": "该微信已绑定其他员工账号", "en": "This WeChat account is bound to another staff account"},
    "auth.staff_only": {"zh-CN": "仅员工账号可使用", "en": "Staff accounts only"},
    # WeChat
    "wechat.unavailable": {"zh-CN": "微信服务暂时不可用，请稍后再试", "en": "WeChat is unavailable; try again shortly"},
    "wechat.rate_limited": {"zh-CN": "微信接口调用过于频繁", "en": "WeChat rate-limited this call"},
    # Service
    "service.unavailable": {"zh-CN": "服务暂时不可用，请稍后再试", "en": "The service is temporarily unavailable"},
    "internal": {"zh-CN": "服务器内部错误", "en": "Internal server error"},
    # Resources
    "user.not_found": {"zh-CN": "用户不存在", "en": "User not found"},
    "user.username_taken": {"zh-CN": "用户名已被使用", "en": "This username is taken"},
    "user.version_mismatch": {"zh-CN": "用户已被他人修改，请刷新后重试", "en": "The user changed since you loaded it"},
    "user.team_required": {"zh-CN": "员工必须属于一个团队", "en": "Reps and managers need a team"},
    "user.cannot_deactivate_self": {"zh-CN": "不能停用自己的账号", "en": "You cannot deactivate your own account"},
    "team.not_found": {"zh-CN": "团队不存在", "en": "Team not found"},
    "team.name_taken": {"zh-CN": "团队名称已存在", "en": "A team with this name exists"},
    "team.version_mismatch": {"zh-CN": "团队已被他人修改，请刷新后重试", "en": "The team changed since you loaded it"},
    "wechat.bad_encrypted_data": {"zh-CN": "微信加密数据无效", "en": "The WeChat encrypted data is invalid"},
    "form.not_found": {"zh-CN": "表单不存在或已停用", "en": "Form not found or no longer active"},
    "form.slug_taken": {"zh-CN": "表单标识已被使用", "en": "This form slug is taken"},
    "form.version_mismatch": {"zh-CN": "表单已被他人修改，请刷新后重试", "en": "The form changed since you loaded it"},
    "submission.invalid_answers": {"zh-CN": "表单填写有误", "en": "Some answers are invalid"},
    "submission.phone_code_invalid": {"zh-CN": "手机号授权已失效，请重新授权", "en": "The phone-number code is invalid or used"},
    "lead.not_found": {"zh-CN": "线索不存在", "en": "Lead not found"},
    "lead.version_mismatch": {"zh-CN": "线索已被他人修改，请刷新后重试", "en": "The lead changed since you loaded it"},
    "lead.invalid_transition": {"zh-CN": "线索不能从 {from} 变为 {to}", "en": "A lead cannot move from {from} to {to}"},
    "lead.reason_required": {"zh-CN": "请填写原因", "en": "This change needs a reason"},
    "lead.duplicate": {"zh-CN": "该手机号的线索已存在", "en": "A lead with this phone number exists"},
    "lead.id_taken": {"zh-CN": "该线索编号已被使用", "en": "This lead id is taken"},
    "pool.claim_lost": {"zh-CN": "手慢了，该线索已被他人领取", "en": "Someone else claimed this lead first"},
    "pool.at_capacity": {"zh-CN": "已达到保有量上限（{capacity}）", "en": "You are at your capacity ({capacity} open leads)"},
    "pool.daily_limit": {"zh-CN": "今日领取已达上限（{limit}）", "en": "You reached today's claim limit ({limit})"},
    "pool.cooldown": {"zh-CN": "释放后 {days} 天内不能重新领取", "en": "You released this lead; you may claim it again after {days} days"},
    "pool.not_owner": {"zh-CN": "只能释放自己的线索", "en": "You can only release your own leads"},
    "pool.bad_assignee": {"zh-CN": "只能分配给本团队的在职销售", "en": "Assign to an active member of the lead's team"},
    "job.unknown": {"zh-CN": "未知的任务 {name}", "en": "Unknown job {name}"},
}


class ApiError(Exception):
    """An error the client can act on: a stable ``code``, an HTTP ``status`` and optional details."""

    status = 400

    def __init__(
        self,
        code: str,
        status: int | None = None,
        *,
        details: list[dict[str, Any]] | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(code)
        self.code = code
        if status is not None:
            self.status = status
        self.details = details or []
        self.params = params or {}
        self.headers = headers or {}

    def message(self, language: str) -> str:
        texts = MESSAGES.get(self.code) or MESSAGES["internal"]
        text = texts.get(language) or texts["zh-CN"]
        try:
            return text.format(**self.params)
        except (KeyError, IndexError):
            return text


class NotFound(ApiError):
    status = 404


class Forbidden(ApiError):
    status = 403


class Conflict(ApiError):
    status = 409


class VersionMismatch(ApiError):
    status = 412


class Invalid(ApiError):
    status = 422


class Unauthorized(ApiError):
    status = 401


class Unavailable(ApiError):
    status = 503
