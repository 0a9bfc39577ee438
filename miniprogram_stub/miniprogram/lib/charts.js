// The team dashboard's charts as uCharts options, from the /reports/* answers. Pure: the page
// draws them (vendor/u-charts) and the simulator tests compare them with the API's figures.
'use strict';

const format = require('../utils/format');

const FUNNEL_STAGES = ['new', 'contacted', 'qualified', 'customer'];
const COLORS = ['#1677ff', '#52c41a', '#faad14', '#f5222d', '#13c2c2', '#722ed1'];

function funnel(report) {
  const rows = {};
  (report.stages || []).forEach((s) => { rows[s.stage] = s; });
  return {
    type: 'funnel',
    color: COLORS,
    series: [{ name: '销售漏斗', data: FUNNEL_STAGES.map((stage) => ({ name: format.stage(stage), value: (rows[stage] && rows[stage].entered) || 0 })) }],
    extra: { funnel: { activeOpacity: 0.3, labelAlign: 'right', border: true, borderWidth: 2, borderColor: '#FFFFFF' } }
  };
}

// The leaderboard: reps by conversions, then follow-ups.
function reps(report) {
  const items = (report.items || []).slice().sort((a, b) => (b.conversions - a.conversions) || (b.followups - a.followups));
  return {
    type: 'bar',
    color: COLORS,
    categories: items.map((r) => r.name || '未命名'),
    series: [
      { name: '新增线索', data: items.map((r) => r.new_leads) },
      { name: '跟进', data: items.map((r) => r.followups) },
      { name: '成交', data: items.map((r) => r.conversions) }
    ],
    xAxis: { boundaryGap: 'justify', disableGrid: false, min: 0 },
    extra: { bar: { type: 'group', width: 12 } }
  };
}

function lifecycle(report) {
  return {
    type: 'column',
    color: COLORS,
    categories: ['新客户', '进入预警', '挽留成功', '已流失', '已挽回'],
    series: [{ name: '客户数', data: [report.new_customers, report.into_at_risk, report.saved, report.churned, report.won_back] }],
    yAxis: { data: [{ min: 0 }] },
    extra: { column: { width: 24 } }
  };
}

function rfm(report) {
  const counts = report.counts || {};
  return {
    type: 'ring',
    color: COLORS,
    series: ['A', 'B', 'C'].map((layer) => ({ name: layer + ' 层客户', data: counts[layer] || 0 })),
    extra: { ring: { ringWidth: 24, activeOpacity: 0.5, offsetAngle: 0, labelWidth: 15, border: false } }
  };
}

// ---------------------------------------------------------------- service (GET /reports/service)
function num(v) { return v === null || v === undefined ? 0 : v; }

// Tickets opened and resolved in the period (the team's totals), with reopened and breached.
function serviceVolume(report) {
  const t = report.totals || {};
  return {
    type: 'column',
    color: COLORS,
    categories: ['新工单', '已解决', '重新打开', '超时解决'],
    series: [{ name: '工单数', data: [num(t.tickets_opened), num(t.tickets_resolved), num(t.tickets_reopened), num(t.resolved_breached)] }],
    yAxis: { data: [{ min: 0 }] },
    extra: { column: { width: 24 } }
  };
}

// The handlers, most resolutions first (then by name, so the order is stable).
function handlerRows(report) {
  return (report.handlers || []).slice().sort((a, b) => (num(b.tickets_resolved) - num(a.tickets_resolved)) || String(a.name || '').localeCompare(String(b.name || '')));
}

// CSAT (1–5 average) per handler; a handler with no answers shows 0.
function serviceCsat(report) {
  const rows = handlerRows(report);
  return {
    type: 'bar',
    color: COLORS,
    categories: rows.map((r) => r.name || '未命名'),
    series: [{ name: '满意度（1–5）', data: rows.map((r) => num(r.csat_avg)) }],
    xAxis: { boundaryGap: 'justify', disableGrid: false, min: 0, max: 5 },
    extra: { bar: { type: 'group', width: 12 } }
  };
}

// NPS (−100 to 100) per handler.
function serviceNps(report) {
  const rows = handlerRows(report);
  return {
    type: 'bar',
    color: COLORS.slice(1),
    categories: rows.map((r) => r.name || '未命名'),
    series: [{ name: 'NPS', data: rows.map((r) => num(r.nps)) }],
    xAxis: { boundaryGap: 'justify', disableGrid: false, min: -100, max: 100 },
    extra: { bar: { type: 'group', width: 12 } }
  };
}

module.exports = { funnel, reps, lifecycle, rfm, serviceVolume, serviceCsat, serviceNps, handlerRows, FUNNEL_STAGES };
