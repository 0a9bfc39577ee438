// The view models of the task, contract, payment and approval pages, and the arithmetic of amounts
// typed in yuan and of payment plans. Every date, label and amount shown comes from
// utils/format.js (the business time zone, the Chinese words, money); nothing here formats on
// its own. Pure (no wx), so the same code runs in the simulator tests.
'use strict';

const format = require('../utils/format');
const session = require('../utils/session');

const CONTRACT_STATUS = format.CONTRACT_STATUSES;
const STEP_STATE = format.STEP_STATES;
const STEP_HOLDER = { manager: '团队主管', admin: '管理员', named: '指定审批人' };
const DECISION = { approve: '同意', reject: '驳回', return: '退回' };
const TASK_STATUS = format.TASK_STATUSES;
const TASK_KIND = format.TASK_KINDS;
const PAYMENT_METHODS = [
  { value: 'bank_transfer', label: '银行转账' }, { value: 'wechat_pay', label: '微信支付' },
  { value: 'alipay', label: '支付宝' }, { value: 'cash', label: '现金' },
  { value: 'cheque', label: '支票' }, { value: 'other', label: '其他' }
];
const SUBMISSION_STATUS = format.SUBMISSION_STATUSES;
const PAYMENT_METHOD = Object.fromEntries(PAYMENT_METHODS.map((m) => [m.value, m.label]));
const label = format.label;
const yuan = format.money;

// "1234.5" (what a person types) → 123450 fen; anything that is not a positive amount with at
// most two decimals → null. No floats on the way: the digits are split as text.
function toFen(text) {
  const s = String(text === undefined || text === null ? '' : text).trim().replace(/[,，\s]/g, '');
  const m = /^(\d{1,12})(?:\.(\d{1,2}))?$/.exec(s);
  if (!m) return null;
  const fen = Number(m[1]) * 100 + Number((m[2] || '').padEnd(2, '0'));
  return fen > 0 ? fen : null;
}

function fenToInput(fen) {
  if (!fen) return '';
  return String(Math.floor(fen / 100)) + (fen % 100 ? '.' + String(fen % 100).padStart(2, '0').replace(/0$/, '') : '');
}

// Splits an amount into n instalments (the last takes the remainder), due each month from start.
function evenPlan(amountFen, n, startDate) {
  const count = Math.max(1, Math.min(120, Math.floor(n) || 1));
  const part = Math.floor(amountFen / count);
  const out = [];
  for (let i = 0; i < count; i += 1) {
    out.push({ due_date: addMonths(startDate, i), amount_fen: i === count - 1 ? amountFen - part * (count - 1) : part });
  }
  return out;
}

function addMonths(ymd, months) {
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(ymd || '');
  if (!m) return ymd;
  const total = Number(m[1]) * 12 + (Number(m[2]) - 1) + months;
  const y = Math.floor(total / 12);
  const mo = total % 12 + 1;
  const last = new Date(Date.UTC(y, mo, 0)).getUTCDate();
  const d = Math.min(Number(m[3]), last);
  return y + '-' + String(mo).padStart(2, '0') + '-' + String(d).padStart(2, '0');
}

function addYears(ymd, years) { return addMonths(ymd, years * 12); }

function stepView(s) {
  const who = (s.approvers || []).map((id) => (s.approver_names || {})[id] || '').filter(Boolean).join('、');
  return {
    index: s.index,
    no: s.index + 1,
    state: s.state,
    stateText: label(STEP_STATE, s.state),
    who: who || label(STEP_HOLDER, s.holder),
    decidedAt: format.when(s.decided_at),
    decisions: (s.decisions || []).map((d) => ({
      name: d.name || '', decision: label(DECISION, d.decision), comment: d.comment || '', at: format.when(d.at)
    }))
  };
}

function planView(plan, today) {
  return (plan || []).map((p) => ({
    no: p.no,
    due: format.day(p.due_date),
    amount: yuan(p.amount_fen),
    paid: p.paid_fen === null || p.paid_fen === undefined ? '' : yuan(p.paid_fen),
    settled: p.paid_fen !== null && p.paid_fen !== undefined && p.paid_fen >= p.amount_fen,
    overdue: Boolean(today) && p.paid_fen !== null && p.paid_fen !== undefined && p.paid_fen < p.amount_fen && String(p.due_date) < today
  }));
}

function paymentView(p) {
  return {
    id: p.id, amount: yuan(p.amount_fen), at: format.when(p.received_at),
    method: label(PAYMENT_METHOD, p.method),
    reference: p.reference || ''
  };
}

// A contract as every contract view shows it: parties, dates, amount, plan, notes, history.
function contractView(c, me) {
  const myId = me && me.id;
  const current = c.steps && c.current_step !== null && c.current_step !== undefined ? c.steps[c.current_step] : null;
  return {
    id: c.id,
    title: c.title,
    leadId: c.lead_id,
    leadName: c.lead_name || '',
    submitter: c.submitter_name || '',
    submittedAt: format.when(c.submitted_at),
    start: format.day(c.start_date),
    end: format.day(c.end_date),
    amount: yuan(c.amount_fen),
    status: c.status,
    statusText: label(CONTRACT_STATUS, c.status),
    notes: c.notes || '',
    returnComment: c.return_comment || '',
    stepText: current ? '第 ' + (c.current_step + 1) + '/' + c.steps.length + ' 步' : '',
    steps: (c.steps || []).map(stepView),
    plan: planView(c.payment_plan, format.today()),
    moneyVisible: c.paid_fen !== null && c.paid_fen !== undefined,
    paid: yuan(c.paid_fen),
    outstanding: yuan(c.outstanding_fen),
    overdue: c.overdue_fen ? yuan(c.overdue_fen) : '',
    settled: c.paid === true,
    payments: (c.payments || []).map(paymentView),
    renews: c.renews || '',
    renewedBy: c.renewed_by || '',
    version: c.version,
    canEdit: c.status === 'draft',
    canSubmit: c.status === 'draft',
    canRenew: (c.status === 'active' || c.status === 'ended') && !c.renewed_by,
    canDecide: c.status === 'pending' && Boolean(myId) && (c.current_approvers || []).indexOf(myId) >= 0
  };
}

function taskView(t, today) {
  const due = t.due_at ? format.when(t.due_at) : '';
  return {
    id: t.id, title: t.title, kind: t.kind, kindText: label(TASK_KIND, t.kind), leadId: t.lead_id || '',
    status: t.status, statusText: label(TASK_STATUS, t.status), due, remind: format.when(t.remind_at),
    completedAt: format.when(t.completed_at),
    overdue: t.status === 'open' && Boolean(t.due_at) && Date.parse(t.due_at) < Date.now(),
    managed: t.kind === 'followup', version: t.version, today: today || ''
  };
}

// ---------------------------------------------------------------- tickets and surveys
const TICKET_STATUS = format.TICKET_STATUSES;
const TICKET_PRIORITY = format.TICKET_PRIORITIES;
const TICKET_CATEGORY = format.TICKET_CATEGORIES;
const OPEN_TICKET = ['open', 'assigned', 'in_progress'];
const MAX_PHOTOS = 9;
const REOPEN_DAYS = 7; // the team's service.reopen_days default; the server decides (409 past it)

// A due time of a ticket: "今天 17:00" and whether it has passed (while the step is still open).
function dueView(at, doneAt, nowMs) {
  if (!at) return { text: '', late: false };
  const late = !doneAt && Date.parse(at) < nowMs;
  return { text: format.when(at, nowMs), late };
}

// One ticket as the list and the detail page show it. `me` is the user on the phone: staff see
// the due times, the breached badge, who it is assigned to; customers see status and replies only
// (the server sends them no staff fields). `names`: user id → name, for the assignee.
function ticketView(t, me, names, now) {
  const nowMs = now === undefined ? Date.now() : now;
  const staff = Boolean(me && me.role && me.role !== 'customer');
  const breached = (t.breached || []).map((k) => label(format.SLA_KINDS, k));
  const resolvedMs = t.resolved_at ? Date.parse(t.resolved_at) : null;
  const firstDue = dueView(t.first_response_due_at, t.first_response_at || t.resolved_at, nowMs);
  const resolveDue = dueView(t.resolution_due_at, t.resolved_at, nowMs);
  const assignee = t.assignee_id ? ((names && names[t.assignee_id]) || '') : '';
  return {
    id: t.id,
    leadId: t.lead_id,
    title: format.text(t.title, '未命名工单'),
    description: format.text(t.description),
    category: t.category,
    categoryText: label(TICKET_CATEGORY, t.category),
    priority: t.priority,
    priorityText: label(TICKET_PRIORITY, t.priority),
    urgent: t.priority === 'urgent' || t.priority === 'high',
    status: t.status,
    statusText: label(TICKET_STATUS, t.status),
    createdAt: format.when(t.created_at, nowMs),
    updatedAt: format.when(t.updated_at, nowMs),
    resolvedAt: format.when(t.resolved_at, nowMs),
    photos: (t.attachments || []).filter((a) => String(a.content_type || '').indexOf('image/') === 0).map((a) => ({ id: a.id, name: format.text(a.name) })),
    files: (t.attachments || []).filter((a) => String(a.content_type || '').indexOf('image/') !== 0).map((a) => ({ id: a.id, name: format.text(a.name, '附件') })),
    replyCount: t.reply_count || 0,
    version: t.version,
    staff,
    breached: staff && breached.length > 0,
    breachedText: staff && breached.length ? '已超时（' + breached.join('、') + '）' : '',
    escalated: staff && t.escalated === true,
    firstDue: staff ? firstDue.text : '',
    firstLate: staff && firstDue.late,
    firstDone: staff ? format.when(t.first_response_at, nowMs) : '',
    resolveDue: staff ? resolveDue.text : '',
    resolveLate: staff && resolveDue.late,
    assigneeText: staff ? (t.assignee_id ? (assignee || '已分派') : '未分派') : '',
    assignedToMe: Boolean(staff && me && t.assignee_id === me.id),
    reasonText: staff && t.assignment && t.assignment.reason ? format.text(typeof t.assignment.reason === 'object' ? (t.assignment.reason['zh-CN'] || t.assignment.reason.en) : t.assignment.reason) : '',
    resolutionNote: staff ? format.text(t.resolution_note) : '',
    open: OPEN_TICKET.indexOf(t.status) >= 0,
    canReply: t.status !== 'closed',
    canResolve: staff && OPEN_TICKET.indexOf(t.status) >= 0,
    canAssign: staff && session.isManager(me) && OPEN_TICKET.indexOf(t.status) >= 0,
    // The customer may reopen within the window after it was resolved (the server has the last word).
    canReopen: !staff && t.status === 'resolved' && resolvedMs !== null && nowMs - resolvedMs <= REOPEN_DAYS * 86400000,
    canRate: !staff && (t.status === 'resolved' || t.status === 'closed')
  };
}

// A reply in the conversation: who wrote it as the reader should see it ("我", "客服", "客户",
// a colleague's name), and the internal badge (staff only ever get those).
function replyView(r, me, names, now) {
  const mine = Boolean(me && r.author_id && r.author_id === me.id);
  const fromCustomer = r.author_role === 'customer';
  let who;
  if (mine) who = '我';
  else if (fromCustomer) who = '客户';
  else if (me && me.role === 'customer') who = '客服';
  else who = (names && r.author_id && names[r.author_id]) || '同事';
  return {
    id: r.id, who, mine, fromCustomer, internal: r.internal === true, body: format.text(r.body),
    at: format.when(r.created_at, now === undefined ? Date.now() : now),
    photos: (r.attachments || []).filter((a) => String(a.content_type || '').indexOf('image/') === 0).map((a) => ({ id: a.id }))
  };
}

// The survey page: five stars, the 0–10 scale, and what was answered.
function stars(csat) {
  const n = Number(csat) || 0;
  return [1, 2, 3, 4, 5].map((v) => ({ value: v, on: v <= n }));
}
function npsScale(nps) {
  const n = nps === null || nps === undefined ? -1 : Number(nps);
  return [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10].map((v) => ({ value: v, on: v === n }));
}
const CSAT_WORDS = { 1: '非常不满意', 2: '不满意', 3: '一般', 4: '满意', 5: '非常满意' };
function surveyView(s, now) {
  return {
    id: s.id, source: s.source, sourceText: s.source === 'contract' ? '合同服务' : '售后工单', status: s.status,
    answered: s.status === 'answered', csat: s.csat, nps: s.nps, csatText: CSAT_WORDS[s.csat] || '',
    comment: format.text(s.comment), offeredAt: format.when(s.offered_at, now), answeredAt: format.when(s.answered_at, now),
    ticketId: s.ticket_id || s.source_id || '', version: s.version
  };
}

// The survey's body for POST /surveys/{id}/answer, or the reason it cannot be sent yet.
function surveyAnswer(csat, nps, comment) {
  if (!(csat >= 1 && csat <= 5)) return { error: '请为本次服务打分（1–5 星）' };
  if (!(nps >= 0 && nps <= 10) || nps === null) return { error: '请选择推荐意愿（0–10）' };
  const body = { csat: Math.round(csat), nps: Math.round(nps) };
  const c = String(comment || '').trim();
  if (c) body.comment = c.slice(0, 1000);
  return { body };
}

// The new-ticket form's checks, before anything is uploaded or sent.
function ticketDraftError(d) {
  if (!d.category) return '请选择问题类型';
  if (!String(d.title || '').trim()) return '请填写标题';
  if (!String(d.description || '').trim()) return '请描述遇到的问题';
  if ((d.photos || []).length > MAX_PHOTOS) return '最多上传 ' + MAX_PHOTOS + ' 张照片';
  return '';
}

// Minutes as people read them: "45 分钟", "3 小时", "2 天".
function duration(minutes) {
  if (minutes === null || minutes === undefined) return '—';
  if (minutes < 60) return minutes + ' 分钟';
  if (minutes < 48 * 60) return (Math.round(minutes / 6) / 10) + ' 小时';
  return (Math.round(minutes / 144) / 10) + ' 天';
}

function percent(rate) {
  if (rate === null || rate === undefined) return '—';
  return (Math.round(rate * 1000) / 10) + '%';
}

module.exports = {
  CONTRACT_STATUS, STEP_STATE, DECISION, TASK_STATUS, PAYMENT_METHODS, SUBMISSION_STATUS,
  toFen, fenToInput, evenPlan, addMonths, addYears, contractView, stepView, planView, paymentView, taskView, percent,
  TICKET_STATUS, TICKET_PRIORITY, TICKET_CATEGORY, MAX_PHOTOS, ticketView, replyView, stars, npsScale, surveyView, surveyAnswer, ticketDraftError, duration
};
