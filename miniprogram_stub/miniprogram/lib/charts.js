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

module.exports = { funnel, reps, lifecycle, rfm, FUNNEL_STAGES };
