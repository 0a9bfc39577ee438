// The subscribe-message templates of this mini-program, one per notification kind: the template id
// chosen in the mini-program console (订阅消息 → 我的模板), the page a message opens (it must be in
// app.json; "?id=<task, lead or contract>" is appended) and which notification value fills which
// template keyword (thing1, time2, ...; the keyword's type sets WeChat's limits).
//
// This is the one place these ids live. config.js gives the pages the ids; the server takes this
// catalogue as its built-in MPCRM_WECHAT_TEMPLATES (the variable is merged over it); the fake
// WeChat API knows exactly these templates. The DEMO_* ids work with the fake WeChat only: put your
// own ids here (and in MPCRM_WECHAT_TEMPLATES in production).
//
// Keep the part after "module.exports =" plain JSON (double quotes, no trailing commas, no
// comments): the server and the fake WeChat read it as JSON. The first three kinds are the ones
// the notifications page asks the user to accept (wx.requestSubscribeMessage takes at most three).
module.exports = {
  "lead_assigned": {"template_id": "DEMO_LEAD_ASSIGNED", "page": "pages/lead/lead", "fields": {"title": "thing1", "body": "thing2"}},
  "task_reminder": {"template_id": "DEMO_TASK_REMINDER", "page": "pages/task/task", "fields": {"title": "thing1", "due_at": "time2", "body": "thing3"}},
  "renewal_due": {"template_id": "DEMO_RENEWAL_DUE", "page": "pages/contract/contract", "fields": {"title": "thing1", "body": "thing2", "days_left": "number3"}},
  "payment_due": {"template_id": "DEMO_PAYMENT_DUE", "page": "pages/contract/contract", "fields": {"title": "thing1", "body": "thing2", "due_date": "date3"}},
  "task_escalated": {"template_id": "DEMO_TASK_ESCALATED", "page": "pages/task/task", "fields": {"title": "thing1", "due_at": "time2", "body": "thing3"}},
  "task_assigned": {"template_id": "DEMO_TASK_ASSIGNED", "page": "pages/task/task", "fields": {"title": "thing1", "due_at": "time2", "body": "thing3"}},
  "churn_warning": {"template_id": "DEMO_CHURN_WARNING", "page": "pages/lead/lead", "fields": {"title": "thing1", "body": "thing2", "last_activity_at": "date3"}},
  "allocation_stuck": {"template_id": "DEMO_ALLOCATION_STUCK", "page": "pages/leads/leads", "fields": {"title": "thing1", "body": "thing2"}},
  "reclaim_warning": {"template_id": "DEMO_RECLAIM_WARNING", "page": "pages/lead/lead", "fields": {"title": "thing1", "body": "thing2"}},
  "lead_reclaimed": {"template_id": "DEMO_LEAD_RECLAIMED", "page": "pages/pool/pool", "fields": {"title": "thing1", "body": "thing2"}},
  "approval_pending": {"template_id": "DEMO_APPROVAL_PENDING", "page": "pages/contract/contract", "fields": {"title": "thing1", "body": "thing2"}},
  "approval_decided": {"template_id": "DEMO_APPROVAL_DECIDED", "page": "pages/contract/contract", "fields": {"title": "thing1", "body": "thing2"}},
  "ticket_assigned": {"template_id": "DEMO_TICKET_ASSIGNED", "page": "pages/ticket/ticket", "fields": {"title": "thing1", "body": "thing2"}},
  "ticket_unassigned": {"template_id": "DEMO_TICKET_UNASSIGNED", "page": "pages/ticket/ticket", "fields": {"title": "thing1", "body": "thing2"}},
  "ticket_due_soon": {"template_id": "DEMO_TICKET_DUE_SOON", "page": "pages/ticket/ticket", "fields": {"title": "thing1", "body": "thing2"}},
  "ticket_breached": {"template_id": "DEMO_TICKET_BREACHED", "page": "pages/ticket/ticket", "fields": {"title": "thing1", "body": "thing2"}},
  "ticket_escalated": {"template_id": "DEMO_TICKET_ESCALATED", "page": "pages/ticket/ticket", "fields": {"title": "thing1", "body": "thing2"}},
  "ticket_customer_update": {"template_id": "DEMO_TICKET_CUSTOMER_UPDATE", "page": "pages/ticket/ticket", "fields": {"title": "thing1", "body": "thing2", "created_at": "time3"}},
  "survey_request": {"template_id": "DEMO_SURVEY_REQUEST", "page": "pages/home/home", "fields": {"title": "thing1", "body": "thing2", "created_at": "time3"}}
};
