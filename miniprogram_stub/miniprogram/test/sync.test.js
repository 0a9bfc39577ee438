'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const sync = require('../utils/sync');

const empty = { leads: {}, followups: {}, cursor: null };

test('deleted leads go first (with their follow-ups), then upserts keep the higher version', () => {
  const store = {
    leads: { L1: { id: 'L1', version: 3, name: 'old' }, L2: { id: 'L2', version: 1 } },
    followups: { F1: { id: 'F1', lead_id: 'L2' }, F2: { id: 'F2', lead_id: 'L1' } },
    cursor: 'c0'
  };
  const out = sync.mergePage(store, {
    deleted: ['L2'], leads: [{ id: 'L1', version: 2, name: 'stale' }, { id: 'L3', version: 1 }],
    followups: [{ id: 'F3', lead_id: 'L3', updated_at: '2026-01-01T00:00:00Z' }], cursor: 'c1', has_more: false
  });
  assert.deepEqual(Object.keys(out.leads).sort(), ['L1', 'L3']);
  assert.equal(out.leads.L1.name, 'old');
  assert.deepEqual(Object.keys(out.followups).sort(), ['F2', 'F3']);
  assert.equal(out.cursor, 'c1');
  assert.equal(store.leads.L2.id, 'L2'); // the input is not changed
});

test('a repeated page (overlapping cursor) changes nothing', () => {
  const page = { deleted: [], leads: [{ id: 'L1', version: 2, updated_at: 'b' }], followups: [], cursor: 'c1', has_more: false };
  const once = sync.mergePage(empty, page);
  assert.deepEqual(sync.mergePage(once, page), once);
});

test('syncAll follows has_more with the returned cursor', async () => {
  const pages = {
    null: { leads: [{ id: 'L1', version: 1, updated_at: '1' }], followups: [], deleted: [], cursor: 'c1', has_more: true },
    c1: { leads: [{ id: 'L2', version: 1, updated_at: '2' }], followups: [], deleted: ['L1'], cursor: 'c2', has_more: false }
  };
  const asked = [];
  const out = await sync.syncAll(empty, async (since) => { asked.push(since); return pages[since]; });
  assert.deepEqual(asked, [null, 'c1']);
  assert.deepEqual(sync.leadList(out).map((l) => l.id), ['L2']);
  assert.equal(out.cursor, 'c2');
});
