'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const f = require('../utils/format');
const life = require('../utils/lifecycle');

// 2026-12-01 10:00 in Shanghai (02:00 UTC)
const NOW = Date.parse('2026-12-01T02:00:00Z');

test('times are Shanghai wall-clock times, relative to today', () => {
  assert.equal(f.when('2026-12-01T06:00:00Z', NOW), '今天 14:00');
  assert.equal(f.when('2026-11-30T16:30:00Z', NOW), '今天 00:30'); // UTC yesterday, Shanghai today
  assert.equal(f.when('2026-11-30T01:30:00Z', NOW), '昨天 09:30');
  assert.equal(f.when('2026-12-02T02:00:00+00:00', NOW), '明天 10:00');
  assert.equal(f.day('2026-12-20T04:00:00Z', NOW), '12月20日');
  assert.equal(f.when('2026-12-20T04:00:00Z', NOW), '12月20日 12:00');
  assert.equal(f.day('2025-03-05T04:00:00Z', NOW), '2025年3月5日');
  assert.equal(f.day('2026-12-20', NOW), '12月20日'); // a plain date is that day, not UTC midnight
  assert.equal(f.dateValue('2026-12-20T17:00:00Z'), '2026-12-21');
  assert.equal(f.today(Date.parse('2026-11-30T16:30:00Z')), '2026-12-01'); // already tomorrow in Shanghai
  assert.equal(f.isoAt('2026-12-20', '09:30'), '2026-12-20T09:30:00+08:00');
  assert.equal(f.daysFrom('2026-12-03', NOW), 2);
});

test('the phone\'s own time zone does not matter', () => {
  const before = process.env.TZ;
  process.env.TZ = 'America/Los_Angeles';
  try { assert.equal(f.when('2026-12-01T06:00:00Z', NOW), '今天 14:00'); } finally { process.env.TZ = before; }
});

test('labels are Chinese; blanks show nothing, never "null"', () => {
  assert.equal(f.stage('qualified'), '有意向');
  assert.equal(f.label(f.EVENT_KINDS, 'claimed'), '从公海领取');
  assert.equal(f.label(f.EVENT_KINDS, 'something_new'), '其他');
  assert.equal(f.text(null), '');
  assert.equal(f.text('null', '—'), '—');
  assert.equal(f.text(['展会', null, '华东']), '展会、华东');
  assert.equal(f.money(500000012), '¥5,000,000.12');
  assert.equal(f.when(null), '');
  const l = f.lead({ name: '王总', company: null, stage: 'new', tags: [], next_followup_at: '2026-12-01T06:00:00Z' }, NOW);
  assert.deepEqual([l.nameText, l.companyText, l.stageText, l.tagsText, l.nextText], ['王总', '', '新线索', '', '今天 14:00']);
  assert.ok(!JSON.stringify(l).includes('"null"'));
});

test('timeline events read as sentences', () => {
  const e = f.event({ id: '1', kind: 'stage_changed', at: '2026-12-01T01:00:00Z', data: { from: 'new', to: 'contacted', reason: null } }, NOW);
  assert.deepEqual([e.title, e.atText, e.lines], ['阶段：新线索 → 已联系', '今天 09:00', []]);
  const v = f.event({ id: '2', kind: 'followup', at: '2026-12-01T01:00:00Z', data: { kind: 'visit', content: '上门', location: { lat: 31.23041, lng: 121.47371 } } }, NOW);
  assert.deepEqual([v.title, v.lines], ['跟进 · 拜访', ['上门', '签到：31.2304, 121.4737']]);
});

test('stage moves follow the server\'s lifecycle; a 409 names the allowed targets', () => {
  assert.deepEqual(life.allowed('new'), ['contacted', 'lost']);
  assert.equal(life.needsReason('new', 'lost'), true);
  assert.equal(life.needsReason('new', 'contacted'), false);
  const detail = { field: 'to', code: 'allowed', message: '可以变为：qualified, lost', value: 'qualified,lost' };
  assert.deepEqual(life.allowedFromError({ details: [detail] }), ['qualified', 'lost'], 'the data is value, not the localized message');
  assert.deepEqual(life.allowedFromError({ details: [{ ...detail, message: 'allowed moves: qualified, lost' }] }), ['qualified', 'lost']);
  assert.deepEqual(life.allowedFromError({ details: [{ field: 'to', code: 'allowed', message: 'qualified,lost' }] }), ['qualified', 'lost'], 'an older server');
  assert.equal(life.allowedFromError({}), null);
});
