"""Domain errors with stable codes. Services and jobs raise these; only handlers know HTTP.

Every code has a zh-CN and an English message in ``MESSAGES``; a test checks that each code
raised anywhere in the code base has both. Messages may use ``{name}`` placeholders filled from
``params``.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

MESSAGES: dict[str, dict[str, str]] = {
    # Request shape
    "request.malformed_json": {"zh-CN": "请求体不是有效的 JSON", "en": "The request body is not valid JSON"},
    "request.not_object": {"zh-CN": "请求体必须是 JSON 对象", "en": "The request body must be a JSON object"},
    "request.invalid": {"zh-CN": "请求参数有误", "en": "Some fields are invalid"},
    "report.bad_range": {"zh-CN": "报表日期范围无效（开始不能晚于结束，最长 366 天）", "en": "Invalid report range (from must not be after to; at most 366 days)"},
    "report.team_not_found": {"zh-CN": "团队不存在", "en": "No such team"},
    "report.bad_group_by": {"zh-CN": "不支持的分组方式", "en": "Unsupported group_by"},
    "request.operator_key": {
        "zh-CN": "字段名不能以 $ 开头或包含 .",
        "en": "Field names may not start with $ or contain a dot",
    },
    "request.too_large": {"zh-CN": "请求体过大（上限 {limit} 字节）", "en": "The request body is too large (limit {limit} bytes)"},
    "request.too_deep": {"zh-CN": "JSON 嵌套层数过多（最多 {limit} 层）", "en": "The JSON is nested too deeply (at most {limit} levels)"},
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
    "wechat.qrcode_page_invalid": {
        "zh-CN": "微信无法为表单页生成小程序码：小程序正式版尚未发布该页面",
        "en": "WeChat cannot make a code for the form page: the released mini-program does not have it yet",
    },
    "wechat.qrcode_refused": {"zh-CN": "微信拒绝生成小程序码", "en": "WeChat refused to make the mini-program code"},
    # Service
    "service.unavailable": {"zh-CN": "服务暂时不可用，请稍后再试", "en": "The service is temporarily unavailable"},
    "service.busy": {"zh-CN": "服务繁忙，请 {retry_after} 秒后再试", "en": "The server is busy; retry in {retry_after} s"},
    "internal": {"zh-CN": "服务器内部错误", "en": "Internal server error"},
    # Resources
    "user.not_found": {"zh-CN": "用户不存在", "en": "User not found"},
    "user.username_taken": {"zh-CN": "用户名已被使用", "en": "This username is taken"},
    "user.version_mismatch": {"zh-CN": "用户已被他人修改，请刷新后重试", "en": "The user changed since you loaded it"},
    "user.team_required": {"zh-CN": "员工必须属于一个团队", "en": "Reps and managers need a team"},
    "user.cannot_deactivate_self": {"zh-CN": "不能停用自己的账号", "en": "You cannot deactivate your own account"},
    "user.customer_role": {"zh-CN": "客户账号不能改为员工或加入团队", "en": "A customer account cannot become staff or join a team"},
    "team.not_found": {"zh-CN": "团队不存在", "en": "Team not found"},
    "team.name_taken": {"zh-CN": "团队名称已存在", "en": "A team with this name exists"},
    "team.version_mismatch": {"zh-CN": "团队已被他人修改，请刷新后重试", "en": "The team changed since you loaded it"},
    "team.settings_invalid": {"zh-CN": "团队设置有误，未做任何修改", "en": "The team settings are not valid; nothing was changed"},
    "wechat.bad_encrypted_data": {"zh-CN": "微信加密数据无效", "en": "The WeChat encrypted data is invalid"},
    "form.not_found": {"zh-CN": "表单不存在或已停用", "en": "Form not found or no longer active"},
    "form.slug_taken": {"zh-CN": "表单标识已被使用", "en": "This form slug is taken"},
    "form.version_mismatch": {"zh-CN": "表单已被他人修改，请刷新后重试", "en": "The form changed since you loaded it"},
    "form.inactive": {"zh-CN": "表单已停用，启用后才能生成小程序码", "en": "The form is inactive; activate it to make its code"},
    "form.qrcode_scene_too_long": {"zh-CN": "小程序码参数过长（微信限 32 个字符）", "en": "The code's scene is too long (WeChat allows 32 characters)"},
    "form.qrcode_own_referrer": {"zh-CN": "销售只能生成以自己为推荐人的小程序码", "en": "A rep's code can only credit the rep"},
    "form.bad_referrer": {"zh-CN": "推荐人须是该表单团队的在职销售或经理", "en": "The referrer must be an active rep or manager of the form's team"},
    "submission.invalid_answers": {"zh-CN": "表单填写有误", "en": "Some answers are invalid"},
    "submission.phone_code_invalid": {"zh-CN": "手机号授权已失效，请重新授权", "en": "The phone-number code is invalid or used"},
    "lead.not_found": {"zh-CN": "线索不存在", "en": "Lead not found"},
    "lead.no_phone": {"zh-CN": "该线索没有手机号", "en": "This lead has no phone number"},
    "lead.version_mismatch": {"zh-CN": "线索已被他人修改，请刷新后重试", "en": "The lead changed since you loaded it"},
    "lead.invalid_transition": {"zh-CN": "线索不能从 {from} 变为 {to}", "en": "A lead cannot move from {from} to {to}"},
    "lead.reason_required": {"zh-CN": "请填写原因", "en": "This change needs a reason"},
    "lead.unknown_reason": {"zh-CN": "原因不在团队的原因列表中", "en": "This reason is not in the team's catalogue"},
    "lead.duplicate": {"zh-CN": "该手机号的线索已存在", "en": "A lead with this phone number exists"},
    "lead.id_taken": {"zh-CN": "该线索编号已被使用", "en": "This lead id is taken"},
    "pool.claim_lost": {"zh-CN": "手慢了，该线索已被他人领取", "en": "Someone else claimed this lead first"},
    "pool.at_capacity": {"zh-CN": "已达到保有量上限（{capacity}）", "en": "You are at your capacity ({capacity} open leads)"},
    "pool.daily_limit": {"zh-CN": "今日领取已达上限（{limit}）", "en": "You reached today's claim limit ({limit})"},
    "pool.cooldown": {"zh-CN": "释放后 {days} 天内不能重新领取", "en": "You released this lead; you may claim it again after {days} days"},
    "pool.not_owner": {"zh-CN": "只能释放自己的线索", "en": "You can only release your own leads"},
    "pool.bad_assignee": {"zh-CN": "只能分配给本团队的在职销售", "en": "Assign to an active member of the lead's team"},
    "notification.not_found": {"zh-CN": "通知不存在", "en": "Notification not found"},
    "task.not_found": {"zh-CN": "待办不存在", "en": "Task not found"},
    "task.version_mismatch": {"zh-CN": "待办已被他人修改，请刷新后重试", "en": "The task changed since you loaded it"},
    "task.bad_assignee": {"zh-CN": "只能指派给本团队的在职员工", "en": "Assign the task to an active member of your team"},
    "task.remind_after_due": {"zh-CN": "提醒时间不能晚于截止时间", "en": "remind_at must not be after due_at"},
    "task.managed_by_lead": {"zh-CN": "跟进待办随线索的下次跟进时间变化，请修改线索", "en": "A follow-up task follows the lead's next_followup_at; change the lead instead"},
    "task.closed": {"zh-CN": "待办已完成，不能修改", "en": "The task is done and can no longer be edited"},
    "task.id_taken": {"zh-CN": "该待办编号已被使用", "en": "This task id is taken"},
    "import.multipart_required": {"zh-CN": "请以 multipart/form-data 上传文件", "en": "Upload the file as multipart/form-data"},
    "import.bad_multipart": {"zh-CN": "上传内容格式有误", "en": "The multipart body is malformed"},
    "import.file_required": {"zh-CN": "请在 file 字段上传一个文件", "en": "Send one file in the field `file`"},
    "import.bad_file": {"zh-CN": "无法读取该文件，请上传 CSV 或 XLSX", "en": "The file cannot be read; upload a CSV or XLSX file"},
    "import.bad_header": {
        "zh-CN": "表头有误：第一行须为列名，必须包含“姓名”，且只能使用已知列",
        "en": "Bad header: the first row must name the columns, include name, and use only known columns",
    },
    "import.too_many_rows": {"zh-CN": "一次最多导入 {limit} 行（空行也计入）", "en": "At most {limit} rows per import (blank rows count)"},
    "import.unpacked_too_large": {"zh-CN": "表格解压后过大（上限 {limit} 字节）", "en": "The spreadsheet is too large once unpacked (limit {limit} bytes)"},
    "import.team_required": {"zh-CN": "请选择导入到哪个团队", "en": "Choose the team to import into"},
    "import.not_found": {"zh-CN": "导入记录不存在", "en": "Import not found"},
    "import.formula": {"zh-CN": "单元格含公式或以 = + - @ 开头，已拒绝", "en": "A cell holds a formula or starts with = + - @; rejected"},
    "import.control_character": {"zh-CN": "单元格含控制字符，已拒绝", "en": "A cell holds a control character; rejected"},
    "import.duplicate_row": {"zh-CN": "与文件中前面的行重复", "en": "Duplicates an earlier row of the file"},
    "import.bad_phone": {"zh-CN": "手机号无效", "en": "Not a valid mainland mobile number"},
    "import.name_required": {"zh-CN": "姓名不能为空", "en": "The name is missing"},
    "import.name_too_long": {"zh-CN": "姓名过长", "en": "The name is too long"},
    "import.field_too_long": {"zh-CN": "字段内容过长", "en": "A field is too long"},
    "import.bad_level": {"zh-CN": "等级只能是 A、B 或 C", "en": "The level must be A, B or C"},
    "import.bad_tag": {"zh-CN": "标签无效（每个不超过 32 字，不含 $ 或 .，最多 32 个）", "en": "Invalid tags (at most 32, each up to 32 characters, no $ or .)"},
    "import.phone_exists": {"zh-CN": "该手机号的线索已存在于其他团队", "en": "A lead with this phone exists outside your scope"},
    "import.write_failed": {"zh-CN": "写入失败", "en": "The row could not be written"},
    "import.aborted": {"zh-CN": "导入中断，此行未处理", "en": "The import stopped before this row"},
    "allocation_rule.not_found": {"zh-CN": "分配规则不存在", "en": "Allocation rule not found"},
    "allocation_rule.version_mismatch": {"zh-CN": "分配规则已被他人修改，请刷新后重试", "en": "The rule changed since you loaded it"},
    "allocation_rule.bad_members": {"zh-CN": "成员必须是本团队的销售或经理", "en": "Members must be reps or managers of the rule's team"},
    "lead.bulk_too_many": {"zh-CN": "一次最多分配 {limit} 条线索，请缩小筛选范围", "en": "At most {limit} leads per bulk assignment; narrow the filter"},
    "lead.bulk_team_required": {"zh-CN": "请在筛选条件中指定团队", "en": "Name the team in the filter"},
    "contract.not_found": {"zh-CN": "合同不存在", "en": "Contract not found"},
    "contract.version_mismatch": {"zh-CN": "合同已被他人修改，请刷新后重试", "en": "The contract changed since you loaded it"},
    "contract.amount_too_large": {"zh-CN": "合同金额超过上限（{max} 分）", "en": "The amount is above the limit ({max} fen)"},
    "contract.bad_dates": {"zh-CN": "结束日期不能早于开始日期", "en": "end_date is before start_date"},
    "contract.plan_mismatch": {"zh-CN": "回款计划合计（{plan} 分）与合同金额（{amount} 分）不一致", "en": "The payment plan adds up to {plan} fen, not the contract amount of {amount} fen"},
    "contract.not_draft": {"zh-CN": "只有草稿状态的合同可以修改或提交", "en": "Only a draft contract can be edited or submitted"},
    "contract.not_pending": {"zh-CN": "该合同当前不在审批中（{status}）", "en": "This contract is not awaiting approval ({status})"},
    "contract.not_your_step": {"zh-CN": "当前审批步骤不需要您审批", "en": "You are not an approver of the current step"},
    "contract.comment_required": {"zh-CN": "请填写意见", "en": "This decision needs a comment"},
    "contract.no_approver": {"zh-CN": "找不到可以审批该合同的人员", "en": "Nobody is eligible to approve this contract"},
    "contract.not_renewable": {"zh-CN": "只有生效或已到期的合同可以续约", "en": "Only an active or ended contract can be renewed"},
    "contract.already_renewed": {"zh-CN": "该合同已有续约合同", "en": "This contract already has a renewal"},
    "contract.renewal_out_of_range": {"zh-CN": "续约后的日期将晚于 {max}，无法续约", "en": "The renewal would end after {max}; it cannot be renewed"},
    "payment.forbidden": {"zh-CN": "只有经理、管理员和财务可以登记回款", "en": "Only managers, admins and finance may record payments"},
    "payment.contract_not_active": {"zh-CN": "合同生效后才能登记回款", "en": "Payments can be recorded only on an active contract"},
    "payment.over_balance": {"zh-CN": "回款金额超过未收余额（{outstanding} 分）", "en": "The payment is more than the outstanding balance ({outstanding} fen)"},
    "payment.future_date": {"zh-CN": "到账时间不能晚于现在", "en": "received_at is in the future"},
    "survey.not_found": {"zh-CN": "问卷不存在", "en": "Survey not found"},
    "survey.answered": {"zh-CN": "该问卷已经提交过，不能重复作答", "en": "This survey has already been answered"},
    "followup.bad_task": {"zh-CN": "该待办不是此线索待完成的回访", "en": "That task is not an open return visit of this lead"},
    "upload.not_found": {"zh-CN": "附件不存在", "en": "Attachment not found"},
    "upload.file_required": {"zh-CN": "请在 file 字段上传一个文件", "en": "Send one file in the field `file`"},
    "upload.bad_multipart": {"zh-CN": "上传内容格式有误", "en": "The multipart body is malformed"},
    "upload.too_many_parts": {"zh-CN": "上传内容的分段过多（最多 {max} 段）", "en": "Too many parts in the multipart body (at most {max})"},
    "upload.empty": {"zh-CN": "文件是空的", "en": "The file is empty"},
    "upload.too_large": {"zh-CN": "文件过大（上限 {limit} 字节）", "en": "The file is too large (limit {limit} bytes)"},
    "upload.unsupported_type": {
        "zh-CN": "只能上传图片（JPEG、PNG、WebP、GIF）或 PDF 文件",
        "en": "Only images (JPEG, PNG, WebP, GIF) and PDF files can be uploaded",
    },
    "upload.bad_content": {"zh-CN": "文件已损坏或夹带了其他内容", "en": "The file is damaged or carries other content"},
    "upload.quota_exceeded": {
        "zh-CN": "未使用的附件过多（最多 {limit} 个），请先使用或等待清理",
        "en": "Too many uploads not attached to anything yet (at most {limit})",
    },
    "upload.unknown": {"zh-CN": "附件不存在或不属于你", "en": "An attachment is unknown or not yours"},
    "upload.bad_name": {"zh-CN": "文件名含有控制字符或路径", "en": "The file name contains control characters or a path"},
    "upload.attach_conflict": {"zh-CN": "附件正被同时修改，请重试", "en": "The attachments changed at the same time; retry"},
    "upload.too_many": {"zh-CN": "一次最多附加 {max} 个文件", "en": "At most {max} attachments at a time"},
    "ticket.not_found": {"zh-CN": "工单不存在", "en": "Ticket not found"},
    "ticket.version_mismatch": {"zh-CN": "工单已被他人修改，请刷新后重试", "en": "The ticket changed since you loaded it"},
    "ticket.lead_required": {"zh-CN": "员工创建工单需要指定线索", "en": "Staff open a ticket for a lead: give lead_id"},
    "ticket.no_lead": {"zh-CN": "尚未找到你的客户资料，请先提交表单或联系你的顾问", "en": "We have no customer record of yours yet; submit a form first or contact your account manager"},
    "ticket.id_taken": {"zh-CN": "该工单编号已被使用", "en": "This ticket id is taken"},
    "ticket.closed": {"zh-CN": "工单已关闭", "en": "The ticket is closed"},
    "ticket.not_open": {"zh-CN": "工单已解决或已关闭（{status}），不能再分派", "en": "The ticket is {status}; it can no longer be assigned"},
    "ticket.invalid_transition": {"zh-CN": "工单不能从 {from} 变为 {to}", "en": "A ticket cannot move from {from} to {to}"},
    "ticket.reopen_window_passed": {"zh-CN": "工单解决已超过 {days} 天，不能重新打开，请新建工单", "en": "The ticket was resolved more than {days} days ago; open a new one"},
    "ticket.nobody_available": {"zh-CN": "没有可分派的售后人员", "en": "Nobody is available to take this ticket"},
    "ticket.bad_assignee": {"zh-CN": "只能分派给工单所在团队的在职销售或经理", "en": "Assign to an active rep or manager of the ticket's team"},
    "ticket.internal_staff_only": {"zh-CN": "只有员工可以添加内部备注", "en": "Only staff may post internal notes"},
    "ticket.reply_limit": {"zh-CN": "工单回复已达上限（{limit} 条），请新建工单", "en": "The ticket has the most replies it takes ({limit}); open a new one"},
    "handover.not_found": {"zh-CN": "交接记录不存在", "en": "Hand-over not found"},
    "handover.bad_source": {"zh-CN": "只能交接员工的工作", "en": "Only a staff member's work can be handed over"},
    "handover.bad_target": {"zh-CN": "接收人必须是在职的销售或经理（经理只能交接给本团队成员）", "en": "The receiver must be an active rep or manager (of your own team, for a manager)"},
    "handover.to_self": {"zh-CN": "不能交接给本人", "en": "A user cannot hand over to themselves"},
    "handover.bad_rule": {"zh-CN": "请选择该用户所在团队的有效线索分配规则", "en": "Choose an active lead allocation rule of the user's team"},
    "handover.rule_leads_only": {"zh-CN": "按分配规则交接只适用于线索；合同、待办和工单请交接给具体的人", "en": "A hand-over through a rule moves leads only; hand contracts, tasks and tickets to a person"},
    "handover.kind_unavailable": {"zh-CN": "暂不支持交接这类工作", "en": "This kind of work cannot be handed over here"},
    "handover.in_progress": {"zh-CN": "该用户的交接正在进行中", "en": "A hand-over of this user is already running"},
    "handover.deactivate_admin_only": {"zh-CN": "只有管理员可以在交接后停用账号", "en": "Only an admin may deactivate the user after the hand-over"},
    "user.has_open_work": {"zh-CN": "该用户仍有未交接的线索、合同、待办或工单，请先交接", "en": "This user still holds leads, contracts, tasks or tickets; hand them over first"},
    "job.unknown": {"zh-CN": "未知的任务 {name}；可用的任务：{valid}", "en": "Unknown job {name}; valid jobs: {valid}"},
}


# ``details[].message`` by detail code, in both languages. A detail made with ``detail(...)`` (and
# every pydantic validation problem, whose code is pydantic's error type and whose params are its
# ``ctx``) carries ``params`` and is rendered from here in the caller's language. Data a client acts
# on (the id of an existing lead, the allowed stages) travels in the detail's ``value``, not in its
# message (see ``detail``).
DETAIL_MESSAGES: dict[str, dict[str, str]] = {
    # /readyz: why the database is not ready ("restarting", "unreachable", "failed")
    "database_state": {"zh-CN": "数据库状态：{state}", "en": "database {state}"},
    # pydantic error types
    "missing": {"zh-CN": "必填", "en": "Field required"},
    "extra_forbidden": {"zh-CN": "不允许的字段", "en": "Extra inputs are not permitted"},
    "string_type": {"zh-CN": "应为文本", "en": "Input should be a valid string"},
    "string_too_short": {"zh-CN": "至少 {min_length} 个字符", "en": "String should have at least {min_length} characters"},
    "string_too_long": {"zh-CN": "最多 {max_length} 个字符", "en": "String should have at most {max_length} characters"},
    "string_pattern_mismatch": {"zh-CN": "格式不正确", "en": "String should match pattern '{pattern}'"},
    "string_unicode": {"zh-CN": "应为有效的 Unicode 文本", "en": "Input should be a valid string, unable to parse raw data as a unicode string"},
    "int_type": {"zh-CN": "应为整数", "en": "Input should be a valid integer"},
    "int_parsing": {"zh-CN": "应为整数", "en": "Input should be a valid integer, unable to parse string as an integer"},
    "int_from_float": {"zh-CN": "应为整数，不能有小数部分", "en": "Input should be a valid integer, got a number with a fractional part"},
    "int_parsing_size": {"zh-CN": "整数超出范围", "en": "Unable to parse input string as an integer, exceeded maximum size"},
    "float_type": {"zh-CN": "应为数字", "en": "Input should be a valid number"},
    "float_parsing": {"zh-CN": "应为数字", "en": "Input should be a valid number, unable to parse string as a number"},
    "finite_number": {"zh-CN": "应为有限的数字", "en": "Input should be a finite number"},
    "bool_type": {"zh-CN": "应为 true 或 false", "en": "Input should be a valid boolean"},
    "bool_parsing": {"zh-CN": "应为 true 或 false", "en": "Input should be a valid boolean, unable to interpret input"},
    "greater_than": {"zh-CN": "应大于 {gt}", "en": "Input should be greater than {gt}"},
    "greater_than_equal": {"zh-CN": "应大于或等于 {ge}", "en": "Input should be greater than or equal to {ge}"},
    "less_than": {"zh-CN": "应小于 {lt}", "en": "Input should be less than {lt}"},
    "less_than_equal": {"zh-CN": "应小于或等于 {le}", "en": "Input should be less than or equal to {le}"},
    "multiple_of": {"zh-CN": "应为 {multiple_of} 的倍数", "en": "Input should be a multiple of {multiple_of}"},
    "literal_error": {"zh-CN": "应为 {expected} 之一", "en": "Input should be one of {expected}"},
    "enum": {"zh-CN": "应为 {expected} 之一", "en": "Input should be one of {expected}"},
    "too_short": {"zh-CN": "至少 {min_length} 项", "en": "{field_type} should have at least {min_length} items"},
    "too_long": {"zh-CN": "最多 {max_length} 项", "en": "{field_type} should have at most {max_length} items"},
    "list_type": {"zh-CN": "应为列表", "en": "Input should be a valid list"},
    "dict_type": {"zh-CN": "应为对象", "en": "Input should be a valid dictionary"},
    "model_type": {"zh-CN": "应为对象", "en": "Input should be an object"},
    "model_attributes_type": {"zh-CN": "应为对象", "en": "Input should be a valid dictionary or object to extract fields from"},
    "json_invalid": {"zh-CN": "不是有效的 JSON", "en": "Invalid JSON: {error}"},
    "datetime_type": {"zh-CN": "应为日期时间", "en": "Input should be a valid datetime"},
    "datetime_parsing": {"zh-CN": "应为 ISO 8601 日期时间（如 2026-11-23T09:00:00+08:00）", "en": "Input should be a valid datetime, {error}"},
    "datetime_from_date_parsing": {"zh-CN": "应为 ISO 8601 日期时间（如 2026-11-23T09:00:00+08:00）", "en": "Input should be a valid datetime or date, {error}"},
    "date_type": {"zh-CN": "应为日期", "en": "Input should be a valid date"},
    "date_parsing": {"zh-CN": "应为日期（YYYY-MM-DD）", "en": "Input should be a valid date in the format YYYY-MM-DD, {error}"},
    "date_from_datetime_parsing": {"zh-CN": "应为日期（YYYY-MM-DD）", "en": "Input should be a valid date or datetime, {error}"},
    "date_from_datetime_inexact": {"zh-CN": "日期不能带时间", "en": "Datetimes provided to dates should have zero time - e.g. be exact dates"},
    "time_parsing": {"zh-CN": "应为时间（HH:MM）", "en": "Input should be in a valid time format, {error}"},
    "timezone_aware": {"zh-CN": "请带上时区（如 +08:00）", "en": "Input should have timezone info"},
    "uuid_parsing": {"zh-CN": "应为 UUID", "en": "Input should be a valid UUID, {error}"},
    "union_tag_invalid": {"zh-CN": "类型无效", "en": "Input tag '{tag}' found using {discriminator} does not match any of the expected tags: {expected_tags}"},
    "value_error": {"zh-CN": "取值无效：{error}", "en": "Value error, {error}"},
    "assertion_error": {"zh-CN": "取值无效：{error}", "en": "Assertion failed, {error}"},
    # our own
    "operator_key": {"zh-CN": "字段名不能以 $ 开头或包含 .", "en": "keys may not start with $ or contain ."},
    "encoding": {"zh-CN": "不是 UTF-8 编码", "en": "not UTF-8"},
    "repeated": {"zh-CN": "该参数只能出现一次", "en": "give this parameter once"},
    "version_missing": {"zh-CN": "请提供 version 或 If-Match", "en": "send version or If-Match"},
    "null_not_allowed": {"zh-CN": "不能为 null；不修改请省略该字段", "en": "may not be null; leave the field out to keep it"},
    "control_character": {"zh-CN": "不能包含控制字符", "en": "control characters are not allowed"},
    "datetime_range": {"zh-CN": "应在 {min} 与 {max} 之间", "en": "must be between {min} and {max}"},
    "date_range": {"zh-CN": "应在 {min} 与 {max} 之间", "en": "must be between {min} and {max}"},
    # form answers (server/services/forms.py)
    "answer_unknown": {"zh-CN": "不是此表单的字段", "en": "not a field of this form"},
    "answer_required": {"zh-CN": "此项必填", "en": "this field is required"},
    "answer_text": {"zh-CN": "应为文本", "en": "must be text"},
    "answer_control": {"zh-CN": "不能包含控制字符", "en": "control characters are not allowed"},
    "answer_control_multiline": {"zh-CN": "不能包含控制字符（制表符和换行除外）", "en": "control characters are not allowed (tab and newline are)"},
    "answer_too_long": {"zh-CN": "不能超过 {limit} 个字", "en": "longer than {limit} characters"},
    "answer_too_short": {"zh-CN": "不能少于 {limit} 个字", "en": "shorter than {limit} characters"},
    "answer_email": {"zh-CN": "邮箱地址无效", "en": "not an email address"},
    "answer_phone": {"zh-CN": "不是有效的中国大陆手机号", "en": "not a mainland mobile number"},
    "answer_number": {"zh-CN": "应为数字", "en": "must be a number"},
    "answer_too_large": {"zh-CN": "数值过大", "en": "too large"},
    "answer_below": {"zh-CN": "不能小于 {min}", "en": "below {min}"},
    "answer_above": {"zh-CN": "不能大于 {max}", "en": "above {max}"},
    "answer_option": {"zh-CN": "请从选项中选择", "en": "not one of the options"},
    "answer_options": {"zh-CN": "每一项都须从选项中选择", "en": "every choice must be one of the options"},
    "answer_repeated": {"zh-CN": "选项重复", "en": "a choice is repeated"},
    "answer_date": {"zh-CN": "日期格式应为 YYYY-MM-DD", "en": "use YYYY-MM-DD"},
    "answer_date_range": {"zh-CN": "日期须在 {min} 至 {max} 之间", "en": "must be between {min} and {max}"},
    "answer_type": {"zh-CN": "不支持的字段类型", "en": "unsupported field type"},
    # business rules of the services (the English texts are what clients always saw)
    "ticket_lead_required": {"zh-CN": "请选择工单所属的线索", "en": "the lead this ticket is for"},
    "team_required": {"zh-CN": "销售和经理必须属于一个团队", "en": "required"},
    "username_taken": {"zh-CN": "用户名已被使用", "en": "taken"},
    "deactivate_self": {"zh-CN": "不能停用自己的账号", "en": "self"},
    "team_name_taken": {"zh-CN": "团队名称已存在", "en": "taken"},
    "team_unknown": {"zh-CN": "团队不存在", "en": "unknown"},
    "customer_account": {"zh-CN": "客户账号不能改为员工或加入团队", "en": "customer"},
    "no_such_team": {"zh-CN": "团队不存在", "en": "no such team"},
    "assignee_not_in_team": {"zh-CN": "不是该线索所在团队的在职成员", "en": "not an active member of the lead's team"},
    "task_assignee_outside_team": {"zh-CN": "请指派给本团队的在职员工", "en": "assign to an active member of your team"},
    "remind_after_due": {"zh-CN": "提醒时间不能晚于截止时间", "en": "remind_at must not be after due_at"},
    "followup_task_follows_lead": {"zh-CN": "请改线索的下次跟进时间", "en": "change the lead's next_followup_at instead"},
    "phone_invalid": {"zh-CN": "不是有效的中国大陆手机号", "en": "not a mainland mobile number"},
    "lead_exists": {"zh-CN": "该手机号的线索已存在", "en": "exists"},
    "lead_exists_visible": {"zh-CN": "已有该手机号的线索 {lead_id}", "en": "an existing lead: {lead_id}"},
    "choose_another_id": {"zh-CN": "请换一个编号", "en": "choose another id"},
    "id_taken": {"zh-CN": "该编号已被使用", "en": "this id is taken"},
    "allowed_moves": {"zh-CN": "可以变为：{allowed}", "en": "allowed moves: {allowed}"},
    "move_reason_required": {"zh-CN": "这次阶段变更需要填写原因", "en": "this move needs a reason"},
    "reason_code_unknown": {"zh-CN": "可选的原因：{allowed}", "en": "choose one of: {allowed}"},
    "reason_note_required": {"zh-CN": "选择“其他”时请填写说明", "en": "reason other needs a note"},
    "reason_code_lost_churned_only": {"zh-CN": "只有丢单或流失时填写原因代码", "en": "only a move to lost or churned takes a reason code"},
    "not_a_user_id": {"zh-CN": "不是用户编号", "en": "not a user id"},
    "members_outside_team": {"zh-CN": "不是本团队的销售或经理：{members}", "en": "not reps or managers of the rule's team: {members}"},
    "bulk_team_required": {"zh-CN": "管理员按条件批量分配时须指定团队", "en": "admins name the team of a filter"},
    "members_not_service": {"zh-CN": "不是本团队在职的售后人员：{members}", "en": "not active service staff of the rule's team: {members}"},
    "from_after_to": {"zh-CN": "开始日期晚于结束日期", "en": "from is after to"},
    "range_too_long": {"zh-CN": "最长 {days} 天", "en": "at most {days} days"},
    "group_by_values": {"zh-CN": "可选：{values}", "en": "one of: {values}"},
    "phone_code_invalid": {"zh-CN": "手机号授权码无效或已使用", "en": "invalid or used phone code"},
    "not_in_future": {"zh-CN": "不能晚于现在", "en": "not in the future"},
    "at_most": {"zh-CN": "最多 {max}", "en": "at most {max}"},
    "renewal_ends_after": {"zh-CN": "续约后将晚于 {max} 结束", "en": "the renewal would end after {max}"},
    "end_before_start": {"zh-CN": "结束日期不能早于开始日期", "en": "end_date is before start_date"},
    "plan_sum": {"zh-CN": "各期合计 {total}，不等于 {amount}", "en": "instalments add up to {total}, not {amount}"},
    "say_why": {"zh-CN": "请说明原因", "en": "say why"},
    "renewed_by": {"zh-CN": "已由合同 {contract_id} 续约", "en": "renewed by {contract_id}"},
    "slug_in_use": {"zh-CN": "该标识已被使用", "en": "slug in use"},
    "qrcode_slug_too_long": {"zh-CN": "表单标识有 {length} 个字符，小程序码最多 {max} 个", "en": "the slug has {length} characters; a code takes at most {max}"},
    "qrcode_ref_too_long": {
        "zh-CN": "带推荐人时共 {length} 个字符，最多 {max} 个：表单标识须不超过 {slug_max} 个字符",
        "en": "with a referrer the scene has {length} characters, at most {max}: the slug may have at most {slug_max}",
    },
    "referrer_not_team_staff": {"zh-CN": "不是该表单团队的在职销售或经理", "en": "not an active rep or manager of the form's team"},
    "return_visit_outcome_required": {"zh-CN": "回访需要填写结果", "en": "a return visit needs an outcome"},
    "outcome_return_visit_only": {"zh-CN": "只有回访可以填写结果和关联待办", "en": "only a return visit takes an outcome and a task"},
    "return_visit_task_not_open": {"zh-CN": "不是此线索待完成的回访待办", "en": "not an open return-visit task of this lead"},
    # team settings (server/schemas/team_settings.py, UserService.update_team_settings)
    "end_after_start": {"zh-CN": "须晚于开始时间 {start}", "en": "must be after start ({start})"},
    "listed_once": {"zh-CN": "每个值只能出现一次", "en": "each value once"},
    "approvers_required": {"zh-CN": "{type} 审批步骤须指定审批人", "en": "an {type} step names its approvers"},
    "open_tier_last": {"zh-CN": "只有最后一档可以不设上限（null）", "en": "only the last tier is open (null)"},
    "last_tier_open": {"zh-CN": "最后一档须不设上限（null）", "en": "the last tier takes any amount (null)"},
    "must_ascend": {"zh-CN": "须大于上一档（{previous}）", "en": "must be above the previous value ({previous})"},
    "must_ascend_list": {"zh-CN": "须从小到大排列（先写 3 分的阈值）", "en": "must ascend (score 3 first)"},
    "must_descend_list": {"zh-CN": "须从大到小排列（先写 3 分的阈值）", "en": "must descend (score 3 first)"},
    "must_exceed": {"zh-CN": "须大于 {other}（{score}）", "en": "must be above {other} ({score})"},
    "layers_required": {"zh-CN": "请给出 A 和 B 的分数（缺少 {missing}）", "en": "give the scores of A and B (missing {missing})"},
    "warning_below_threshold": {"zh-CN": "须小于 {threshold}（{days} 天）", "en": "must be below {threshold} ({days} days)"},
    "empty_window": {"zh-CN": "开始与结束相同；不设免打扰请传空字符串", "en": "start and end are the same; send \"\" for no quiet hours"},
    "step_after": {"zh-CN": "须晚于 {before}（{hours} 小时）", "en": "must be after {before} ({hours} h)"},
    "approver_not_active_staff": {"zh-CN": "不是在职的经理或管理员：{user}", "en": "not an active manager or admin: {user}"},
    "visit_location_required": {"zh-CN": "拜访需要签到位置", "en": "a visit needs a check-in location"},
    "within_coming_year": {"zh-CN": "须在未来一年内", "en": "must be in the coming year"},
    "within_last_30_days": {"zh-CN": "须在最近 30 天内", "en": "must be within the last 30 days"},
    "staff_only": {"zh-CN": "仅员工可用", "en": "staff only"},
    # hand-over (server/services/handover.py)
    "handover_staff_only": {"zh-CN": "只能交接员工的工作", "en": "not a staff member"},
    "handover_kind_unavailable": {"zh-CN": "暂不支持", "en": "not available here"},
    "handover_to_self": {"zh-CN": "不能是被交接的用户本人", "en": "the user handed over"},
    "handover_target_staff": {"zh-CN": "不是销售或经理", "en": "not a rep or manager"},
    "handover_target_inactive": {"zh-CN": "该用户已停用", "en": "inactive"},
    "handover_target_outside_team": {"zh-CN": "不是本团队成员（跨团队交接需管理员）", "en": "not of your team (across teams: admins only)"},
    "handover_rule_leads_only": {"zh-CN": "按规则交接时只能包含 leads", "en": "with rule_id, include leads only"},
    "handover_rule_of_team": {"zh-CN": "不是该用户所在团队的线索分配规则", "en": "not a lead rule of the user's team"},
    "handover_rule_inactive": {"zh-CN": "该规则已停用", "en": "inactive rule"},
    "handover_running": {"zh-CN": "交接进行中", "en": "a hand-over is running"},
    "handover_open_work": {"zh-CN": "未交接：{count}", "en": "still held: {count}"},
    # import headers and uploads (server/services/imports.py, handlers/imports.py)
    "unknown_column": {"zh-CN": "未知的列：{header}", "en": "unknown column: {header}"},
    "repeated_column": {"zh-CN": "重复的列：{header}", "en": "repeated column: {header}"},
    "name_column_required": {"zh-CN": "必须有“姓名”列", "en": "a name (姓名) column is required"},
    "header_first_row": {"zh-CN": "第一行必须是表头", "en": "the first row must be the header"},
    "file_empty": {"zh-CN": "文件是空的", "en": "the file is empty"},
    "import_allocate": {"zh-CN": "allocate 只能是 rules 或 pool", "en": "allocate is rules or pool"},
    "import_team_required": {"zh-CN": "请选择接收这些线索的团队公海", "en": "choose the team whose pool receives the leads"},
    "file_required": {"zh-CN": "请在 file 字段上传一个非空文件", "en": "send one non-empty file in the field `file`"},
    "upload_bad_name": {"zh-CN": "文件名不能含控制字符、/ 或 \\", "en": "no control characters, / or \\ in the name"},
    "upload_unknown": {"zh-CN": "附件不存在或不属于你", "en": "no such upload of yours"},
    "upload_too_many": {"zh-CN": "最多 {max} 个", "en": "at most {max}"},
    "upload_type": {"zh-CN": "文件内容不是 JPEG、PNG、WebP、GIF 或 PDF", "en": "the bytes are not a JPEG, PNG, WebP, GIF or PDF file"},
    "upload_unreadable": {"zh-CN": "无法读取该文件", "en": "the file cannot be read"},
    "upload_trailing_data": {"zh-CN": "文件结尾之后还有其他数据", "en": "there is more data after the end of the file"},
    "upload_embedded_markup": {"zh-CN": "文件中夹带了网页或压缩包内容", "en": "the file carries web page or archive content"},
    "upload_image_too_big": {"zh-CN": "图片尺寸过大（最多 {max} 像素）", "en": "the image is too big (at most {max} pixels)"},
}


def detail(field: str | None, code: str, *, text: str | None = None, value: str | None = None, **params: Any) -> dict[str, Any]:
    """One entry of an error's ``details``, its message rendered from ``DETAIL_MESSAGES[text or code]``
    in the caller's language.

    ``value`` is data a client acts on (the allowed stages, the id of the existing lead, the header
    text of an unknown column): it is answered as ``details[].value``, the same in every language,
    beside the localized ``message`` (which may repeat it for a person to read). Clients read the
    data from ``value``, never by parsing ``message``."""
    item: dict[str, Any] = {"field": field, "code": code, "params": params}
    if text:
        item["text"] = text
    if value is not None:
        item["value"] = value
    return item


def _plain(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, bool)) or value is None else str(value)


def _params(ctx: dict | None) -> dict:
    params = {k: _plain(v) for k, v in (ctx or {}).items()}
    if isinstance(params.get("expected"), str):  # "'A', 'B' or 'C'": a list in any language
        params["expected"] = params["expected"].replace(" or ", ", ")
    return params


def validation_details(exc: ValidationError) -> list[dict]:
    """Pydantic's problems as details: its error type is the code, its ``ctx`` the params from which
    ``ApiHandler.write_error`` renders the message in the caller's language (``DETAIL_MESSAGES``)."""
    return [
        {
            "field": ".".join(str(p) for p in err["loc"]) or None,
            "code": err["type"],
            "message": err["msg"],
            "params": _params(err.get("ctx")),
        }
        for err in exc.errors(include_url=False, include_input=False)
    ]


def render_detail(item: dict[str, Any], language: str) -> dict[str, Any]:
    out = {k: v for k, v in item.items() if k not in ("params", "text")}
    texts = DETAIL_MESSAGES.get(item.get("text") or item.get("code", ""))
    # A pydantic problem keeps pydantic's own English message (exactly what clients always saw).
    if "params" in item and texts and not (language == "en" and "message" in item):
        text = texts.get(language) or texts["zh-CN"]
        try:
            out["message"] = text.format(**(item["params"] or {}))
        except (KeyError, IndexError, ValueError):
            out["message"] = text
    elif "message" not in out:
        out["message"] = str(item.get("code", ""))
    return out


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

    def localized_details(self, language: str) -> list[dict[str, Any]]:
        return [render_detail(item, language) for item in self.details]

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
