// What the pages show: dates and times in the business time zone (Asia/Shanghai, UTC+8 all year,
// whatever zone the phone is set to), Chinese labels for stages, event kinds and statuses, money
// in yuan, and never "null" or "undefined". Pure (no wx); `now` is injectable for tests.
'use strict';

const TZ_OFFSET_MIN = 8 * 60; // Asia/Shanghai has had no daylight saving time since 1991
const DAY_MS = 86400000;

const STAGES = {
  new: '新线索', contacted: '已联系', qualified: '有意向', customer: '已成交', retained: '老客户',
  at_risk: '流失预警', churned: '已流失', won_back: '已挽回', lost: '已放弃'
};
const EVENT_KINDS = {
  created: '创建线索', updated: '修改资料', assigned: '分配负责人', claimed: '从公海领取', released: '释放到公海',
  reclaimed: '收回公海', pooled: '进入公海', imported: '导入', resubmitted: '客户再次提交', stage_changed: '阶段变更',
  followup: '跟进', contract_created: '起草合同', contract_updated: '修改合同', contract_submitted: '提交审批',
  contract_approved: '合同通过', contract_rejected: '合同驳回', contract_returned: '合同退回',
  contract_stage_unchanged: '合同生效', payment_recorded: '登记回款', revealed: '查看号码', form_submitted: '提交表单',
  ticket_opened: '新工单', ticket_assigned: '工单分派', ticket_replied: '工单回复', ticket_resolved: '工单已解决',
  ticket_reopened: '工单重新打开', ticket_closed: '工单已关闭', ticket_breached: '工单超时', survey_answered: '满意度评价'
};
const FOLLOWUP_KINDS = { call: '电话', visit: '拜访', wechat: '微信', meeting: '会议', note: '备注' };
const TASK_STATUSES = { open: '待办', done: '已完成' };
const TASK_KINDS = { manual: '待办', followup: '跟进提醒' };
const CONTRACT_STATUSES = { draft: '草稿', pending: '审批中', active: '已生效', rejected: '已驳回', ended: '已结束', returned: '已退回' };
const STEP_STATES = { waiting: '待审批', current: '审批中', approved: '已通过', rejected: '已驳回', returned: '已退回', skipped: '已跳过' };
const SUBMISSION_STATUSES = { received: '已收到', in_progress: '处理中', closed: '已处理' };
const TICKET_STATUSES = { open: '待受理', assigned: '已分派', in_progress: '处理中', resolved: '已解决', closed: '已关闭' };
const TICKET_PRIORITIES = { low: '低', normal: '普通', high: '高', urgent: '紧急' };
const TICKET_CATEGORIES = { consult: '咨询', fault: '故障报修', complaint: '投诉', return: '退换货', invoice: '发票', other: '其他' };
const SLA_KINDS = { first_response: '首次响应', resolution: '解决' };
const ROLES = { rep: '销售', manager: '经理', admin: '管理员', customer: '客户' };
const LAYERS = { A: 'A 类（高价值）', B: 'B 类', C: 'C 类' };
const SOURCES = { form: '表单', manual: '手动录入', import: '导入' };

// ---------------------------------------------------------------- values
function isBlank(v) { return v === null || v === undefined || v === '' || v === 'null' || v === 'undefined' || (typeof v === 'number' && isNaN(v)); }
// A value to show: blanks become `fallback` (default: nothing), arrays are joined.
function text(v, fallback) {
  if (Array.isArray(v)) return v.filter((x) => !isBlank(x)).join('、') || (fallback || '');
  return isBlank(v) ? (fallback || '') : String(v);
}
function label(table, code, fallback) { return isBlank(code) ? (fallback || '') : (table[code] || fallback || '其他'); }

// ---------------------------------------------------------------- time
function toDate(v) {
  if (isBlank(v)) return null;
  if (v instanceof Date) return isNaN(v.getTime()) ? null : v;
  if (typeof v === 'number') return new Date(v);
  const s = String(v);
  // A plain date ("2026-12-20") is a day in the business zone, not UTC midnight.
  const m = /^(\d{4})-(\d{2})-(\d{2})$/.exec(s);
  if (m) return new Date(Date.UTC(+m[1], +m[2] - 1, +m[3]) - TZ_OFFSET_MIN * 60000);
  const d = new Date(s);
  return isNaN(d.getTime()) ? null : d;
}
// The wall clock in Shanghai: {year, month, day, hour, minute, weekday, dayIndex}.
function wall(v) {
  const d = toDate(v);
  if (!d) return null;
  const shifted = new Date(d.getTime() + TZ_OFFSET_MIN * 60000);
  return {
    year: shifted.getUTCFullYear(), month: shifted.getUTCMonth() + 1, day: shifted.getUTCDate(),
    hour: shifted.getUTCHours(), minute: shifted.getUTCMinutes(), weekday: shifted.getUTCDay(),
    dayIndex: Math.floor(shifted.getTime() / DAY_MS)
  };
}
function pad(n) { return (n < 10 ? '0' : '') + n; }
function clock(w) { return pad(w.hour) + ':' + pad(w.minute); }
function relativeDay(w, n) {
  const diff = w.dayIndex - n.dayIndex;
  if (diff === 0) return '今天';
  if (diff === -1) return '昨天';
  if (diff === 1) return '明天';
  if (diff === -2) return '前天';
  if (diff === 2) return '后天';
  return null;
}
// "12月20日" (this year) or "2025年12月20日"; "今天"/"明天"/"昨天" nearby.
function day(v, now) {
  const w = wall(v);
  if (!w) return '';
  const n = wall(now || Date.now());
  return relativeDay(w, n) || (w.year === n.year ? w.month + '月' + w.day + '日' : w.year + '年' + w.month + '月' + w.day + '日');
}
// "今天 14:00", "昨天 09:30", "12月20日 14:00", "2025年12月20日 14:00".
function when(v, now) {
  const w = wall(v);
  if (!w) return '';
  return day(v, now) + ' ' + clock(w);
}
// "14:00" in the business zone.
function time(v) { const w = wall(v); return w ? clock(w) : ''; }
// "2026-12-20" (what <picker mode="date"> takes) in the business zone.
function dateValue(v) { const w = wall(v); return w ? w.year + '-' + pad(w.month) + '-' + pad(w.day) : ''; }
// Today in the business zone, "2026-12-20".
function today(now) { return dateValue(now === undefined ? Date.now() : now); }
// A picked day and time in Shanghai as an ISO time with its offset, for the API.
function isoAt(date, hhmm) { return date ? date + 'T' + (hhmm || '10:00') + ':00+08:00' : null; }
// Days from today to a day (negative: past).
function daysFrom(v, now) { const w = wall(v); return w ? w.dayIndex - wall(now || Date.now()).dayIndex : null; }

// ---------------------------------------------------------------- money
function money(fen) {
  if (isBlank(fen)) return '';
  const yuan = Number(fen) / 100;
  const [int, dec] = Math.abs(yuan).toFixed(2).split('.');
  return (yuan < 0 ? '-' : '') + '¥' + int.replace(/\B(?=(\d{3})+(?!\d))/g, ',') + '.' + dec;
}

// ---------------------------------------------------------------- view models
function lead(l, now) {
  if (!l) return null;
  return Object.assign({}, l, {
    nameText: text(l.name, '未命名'),
    companyText: text(l.company),
    phoneText: text(l.phone),
    stageText: label(STAGES, l.stage),
    tagsText: text(l.tags),
    levelText: text(l.level),
    layerText: label(LAYERS, l.layer),
    cityText: text(l.city),
    emailText: text(l.email),
    notesText: text(l.notes),
    sourceText: label(SOURCES, l.source && l.source.kind),
    nextText: l.next_followup_at ? when(l.next_followup_at, now) : '',
    activityText: l.last_activity_at ? when(l.last_activity_at, now) : '',
    createdText: l.created_at ? when(l.created_at, now) : ''
  });
}

function location(loc) {
  if (!loc) return '';
  if (!isBlank(loc.address)) return loc.address;
  if (isBlank(loc.lat) || isBlank(loc.lng)) return '';
  return Number(loc.lat).toFixed(4) + ', ' + Number(loc.lng).toFixed(4);
}

// A timeline event: {title, atText, lines[]}.
function event(e, now) {
  const d = e.data || {};
  const lines = [];
  let title = label(EVENT_KINDS, e.kind, '动态');
  if (e.kind === 'followup') {
    title = '跟进 · ' + label(FOLLOWUP_KINDS, d.kind, '跟进');
    if (!isBlank(d.content)) lines.push(d.content);
    if (d.location) lines.push('签到：' + location(d.location));
    if (d.next_followup_at) lines.push('下次跟进：' + when(d.next_followup_at, now));
  } else if (e.kind === 'stage_changed') {
    title = '阶段：' + label(STAGES, d.from) + ' → ' + label(STAGES, d.to);
    if (!isBlank(d.reason)) lines.push('原因：' + (typeof d.reason === 'object' ? text(d.reason['zh-CN'] || d.reason.en) : d.reason));
  } else if (e.kind === 'survey_answered') {
    lines.push('满意度 ' + text(d.csat, '—') + '/5 · 推荐意愿 ' + text(d.nps, '—') + '/10');
  } else {
    if (!isBlank(d.reason)) lines.push('原因：' + (typeof d.reason === 'object' ? text(d.reason['zh-CN'] || d.reason.en) : d.reason));
    if (!isBlank(d.title)) lines.push(d.title);
    if (!isBlank(d.amount_fen)) lines.push('金额 ' + money(d.amount_fen));
  }
  return { id: e.id, kind: e.kind, title, atText: when(e.at, now), lines };
}

// A follow-up stored on the phone (from /sync) shown like its timeline event.
function followup(f, now) {
  return event({ id: f.id, kind: 'followup', at: f.occurred_at || f.created_at, data: f }, now);
}

// The message to show for an API error: the server's own (localised) message, else a plain one.
function errorText(e) {
  if (!e) return '';
  if (e.code === 'network.error') return '网络不可用，请稍后再试';
  return text(e.message, '操作失败，请稍后再试');
}

module.exports = {
  STAGES, EVENT_KINDS, FOLLOWUP_KINDS, TASK_STATUSES, TASK_KINDS, CONTRACT_STATUSES, STEP_STATES, SUBMISSION_STATUSES, ROLES, LAYERS, SOURCES,
  TICKET_STATUSES, TICKET_PRIORITIES, TICKET_CATEGORIES, SLA_KINDS,
  isBlank, text, label, toDate, wall, day, when, time, dateValue, today, isoAt, daysFrom, money, lead, event, followup, location, errorText,
  stage: (code) => label(STAGES, code),
  role: (code) => label(ROLES, code)
};
