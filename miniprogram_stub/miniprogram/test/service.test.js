// The after-sale view models (lib/view.js), labels (utils/format.js) and service charts
// (lib/charts.js): what the ticket, survey and dashboard pages show.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const view = require('../lib/view');
const charts = require('../lib/charts');
const format = require('../utils/format');

const NOW = Date.parse('2026-12-01T04:00:00Z'); // 12:00 in Shanghai
const rep = { id: 'u1', role: 'rep' };
const manager = { id: 'm1', role: 'manager' };
const customer = { id: 'c1', role: 'customer' };

function ticket(extra) {
  return Object.assign({
    id: 't1', lead_id: 'l1', category: 'fault', priority: 'high', title: '打印机坏了', description: '开不了机', status: 'assigned',
    assignee_id: 'u1', assignment: { reason: { 'zh-CN': '规则 售后：轮询第 1/1 位', en: 'rule' } },
    first_response_due_at: '2026-12-01T03:00:00Z', resolution_due_at: '2026-12-08T10:00:00Z', first_response_at: null, resolved_at: null,
    breached: ['first_response'], escalated: true, attachments: [{ id: 'a1', name: 'x.png', content_type: 'image/png', size: 10 }, { id: 'a2', name: 'r.pdf', content_type: 'application/pdf', size: 9 }],
    reply_count: 2, version: 3, created_at: '2026-12-01T01:00:00Z', updated_at: '2026-12-01T02:00:00Z'
  }, extra || {});
}

test('staff see the due times, the breached badge, the assignee and the reason; late times are marked', () => {
  const v = view.ticketView(ticket(), rep, { u1: '我' }, NOW);
  assert.equal(v.statusText, '已分派');
  assert.equal(v.categoryText, '故障报修');
  assert.equal(v.priorityText, '高');
  assert.equal(v.breached, true);
  assert.equal(v.breachedText, '已超时（首次响应）');
  assert.equal(v.firstDue, '今天 11:00');
  assert.equal(v.firstLate, true);
  assert.equal(v.resolveDue, '12月8日 18:00');
  assert.equal(v.resolveLate, false);
  assert.equal(v.assigneeText, '我');
  assert.equal(v.assignedToMe, true);
  assert.equal(v.reasonText, '规则 售后：轮询第 1/1 位');
  assert.deepEqual(v.photos.map((p) => p.id), ['a1']);
  assert.deepEqual(v.files.map((p) => p.id), ['a2']);
  assert.equal(v.canResolve, true);
  assert.equal(v.canAssign, false); // a rep does not assign
  assert.equal(view.ticketView(ticket(), manager, {}, NOW).canAssign, true);
  assert.equal(view.ticketView(ticket({ assignee_id: null }), manager, {}, NOW).assigneeText, '未分派');
  assert.equal(view.ticketView(ticket({ first_response_at: '2026-12-01T02:30:00Z' }), rep, {}, NOW).firstLate, false);
});

test('a customer sees status and category only: no badge, no due times, no assignee; reopen within the window, rate once resolved', () => {
  const open = view.ticketView(ticket({ breached: null, escalated: null, assignment: null, assignee_id: null }), customer, {}, NOW);
  assert.equal(open.breached, false);
  assert.equal(open.breachedText, '');
  assert.equal(open.firstDue, '');
  assert.equal(open.assigneeText, '');
  assert.equal(open.canResolve, false);
  assert.equal(open.canRate, false);
  assert.equal(open.canReopen, false);
  const resolved = view.ticketView(ticket({ status: 'resolved', resolved_at: '2026-11-28T04:00:00Z' }), customer, {}, NOW);
  assert.equal(resolved.statusText, '已解决');
  assert.equal(resolved.canReopen, true);
  assert.equal(resolved.canRate, true);
  const old = view.ticketView(ticket({ status: 'resolved', resolved_at: '2026-11-20T04:00:00Z' }), customer, {}, NOW);
  assert.equal(old.canReopen, false); // past 7 days: open a new ticket (the server says the same)
  assert.equal(view.ticketView(ticket({ status: 'closed' }), customer, {}, NOW).canReply, false);
});

test('replies name who wrote them as the reader sees it; internal ones carry the badge', () => {
  const r = { id: 'r1', author_id: 'u1', author_role: 'rep', internal: false, body: '已安排上门', created_at: '2026-12-01T03:30:00Z' };
  assert.equal(view.replyView(r, customer, {}, NOW).who, '客服');
  assert.equal(view.replyView(Object.assign({}, r, { author_id: null }), customer, {}, NOW).who, '客服');
  assert.equal(view.replyView(r, rep, {}, NOW).who, '我');
  assert.equal(view.replyView(r, manager, { u1: '赵售后' }, NOW).who, '赵售后');
  assert.equal(view.replyView(Object.assign({}, r, { author_id: 'c1', author_role: 'customer' }), rep, {}, NOW).who, '客户');
  assert.equal(view.replyView(Object.assign({}, r, { internal: true }), manager, {}, NOW).internal, true);
  assert.equal(view.replyView(r, rep, {}, NOW).at, '今天 11:30');
});

test('the survey: stars, the 0–10 scale, and an answer only with both scores', () => {
  assert.deepEqual(view.stars(3).map((s) => s.on), [true, true, true, false, false]);
  assert.deepEqual(view.npsScale(null).filter((c) => c.on), []);
  assert.deepEqual(view.npsScale(0).filter((c) => c.on).map((c) => c.value), [0]);
  assert.equal(view.surveyAnswer(0, 5).error, '请为本次服务打分（1–5 星）');
  assert.equal(view.surveyAnswer(4, null).error, '请选择推荐意愿（0–10）');
  assert.deepEqual(view.surveyAnswer(2, 0, '  太慢了 ').body, { csat: 2, nps: 0, comment: '太慢了' });
  assert.deepEqual(view.surveyAnswer(5, 10, '  ').body, { csat: 5, nps: 10 });
  const s = view.surveyView({ id: 's1', source: 'ticket', status: 'answered', csat: 5, nps: 9, comment: null, offered_at: '2026-12-01T01:00:00Z', answered_at: '2026-12-01T02:00:00Z' }, NOW);
  assert.equal(s.answered, true);
  assert.equal(s.csatText, '非常满意');
  assert.equal(s.comment, '');
  assert.equal(s.sourceText, '售后工单');
});

test('the new-ticket form says what is missing before anything is uploaded', () => {
  assert.equal(view.ticketDraftError({ title: 'a', description: 'b' }), '请选择问题类型');
  assert.equal(view.ticketDraftError({ category: 'fault', title: ' ', description: 'b' }), '请填写标题');
  assert.equal(view.ticketDraftError({ category: 'fault', title: 'a', description: '' }), '请描述遇到的问题');
  assert.equal(view.ticketDraftError({ category: 'fault', title: 'a', description: 'b', photos: new Array(10).fill({}) }), '最多上传 9 张照片');
  assert.equal(view.ticketDraftError({ category: 'fault', title: 'a', description: 'b', photos: [] }), '');
});

test('durations and ticket labels read as people say them', () => {
  assert.equal(view.duration(null), '—');
  assert.equal(view.duration(45), '45 分钟');
  assert.equal(view.duration(180), '3 小时');
  assert.equal(view.duration(72 * 60), '3 天');
  assert.equal(format.label(format.TICKET_STATUSES, 'in_progress'), '处理中');
  assert.equal(format.label(format.EVENT_KINDS, 'ticket_opened'), '新工单');
  const e = format.event({ id: 'e1', kind: 'survey_answered', at: '2026-12-01T02:00:00Z', data: { csat: 2, nps: 3 } }, NOW);
  assert.equal(e.title, '满意度评价');
  assert.deepEqual(e.lines, ['满意度 2/5 · 推荐意愿 3/10']);
});

test('the service charts carry the report\'s own figures: totals, and CSAT / NPS per handler by resolutions', () => {
  const report = {
    totals: { tickets_opened: 5, tickets_resolved: 3, tickets_reopened: 1, resolved_breached: 1 },
    handlers: [
      { handler_id: 'a', name: '钱', tickets_resolved: 1, csat_avg: 2, nps: -100 },
      { handler_id: 'b', name: '赵', tickets_resolved: 2, csat_avg: 4.5, nps: 50 },
      { handler_id: 'c', name: null, tickets_resolved: 0, csat_avg: null, nps: null }
    ]
  };
  assert.deepEqual(charts.serviceVolume(report).series[0].data, [5, 3, 1, 1]);
  assert.deepEqual(charts.serviceCsat(report).categories, ['赵', '钱', '未命名']);
  assert.deepEqual(charts.serviceCsat(report).series[0].data, [4.5, 2, 0]);
  assert.deepEqual(charts.serviceNps(report).series[0].data, [50, -100, 0]);
  assert.deepEqual(charts.serviceVolume({ totals: {} }).series[0].data, [0, 0, 0, 0]);
});
