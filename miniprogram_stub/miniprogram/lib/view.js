// The view models of the task, contract, payment and approval pages, and the arithmetic of amounts
// typed in yuan and of payment plans. Every date, label and amount shown comes from
// utils/format.js (the business time zone, the Chinese words, money); nothing here formats on
// its own. Pure (no wx), so the same code runs in the simulator tests.
'use strict';

const format = require('../utils/format');

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

function percent(rate) {
  if (rate === null || rate === undefined) return '—';
  return (Math.round(rate * 1000) / 10) + '%';
}

module.exports = {
  CONTRACT_STATUS, STEP_STATE, DECISION, TASK_STATUS, PAYMENT_METHODS, SUBMISSION_STATUS,
  toFen, fenToInput, evenPlan, addMonths, addYears, contractView, stepView, planView, paymentView, taskView, percent
};
