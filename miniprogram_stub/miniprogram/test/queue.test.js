'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const q = require('../utils/queue');

function memory() {
  const data = {};
  return { data, get: (k) => data[k], set: (k, v) => { data[k] = JSON.parse(JSON.stringify(v)); } };
}

test('queued writes survive in storage and the same key is queued once', () => {
  const s = memory();
  q.enqueue(s, { method: 'POST', path: '/leads/1/followups', data: { id: 'f1' }, idempotencyKey: 'k1-aaaaaaaa' }, 1);
  q.enqueue(s, { method: 'POST', path: '/leads/1/followups', data: { id: 'f1' }, idempotencyKey: 'k1-aaaaaaaa' }, 2);
  q.enqueue(s, { method: 'POST', path: '/tasks', data: { title: 't' }, idempotencyKey: 'k2-bbbbbbbb' }, 3);
  assert.deepEqual(q.load(s).map((i) => i.idempotencyKey), ['k1-aaaaaaaa', 'k2-bbbbbbbb']);
  assert.ok(Array.isArray(s.data[q.QUEUE_KEY]));
});

test('replay sends in order with the original keys and empties the queue', async () => {
  const s = memory();
  ['a', 'b', 'c'].forEach((k) => q.enqueue(s, { method: 'POST', path: '/p/' + k, idempotencyKey: 'key-' + k + '0000000' }));
  const sent = [];
  const report = await q.replay(s, async (e) => { sent.push(e.path + ' ' + e.idempotencyKey); return { statusCode: 201 }; });
  assert.deepEqual(sent, ['/p/a key-a0000000', '/p/b key-b0000000', '/p/c key-c0000000']);
  assert.deepEqual([report.sent, report.remaining, report.stoppedBy], [3, 0, null]);
  assert.deepEqual(q.load(s), []);
});

test('a network failure stops the replay and keeps the order for next time', async () => {
  const s = memory();
  ['a', 'b', 'c'].forEach((k) => q.enqueue(s, { method: 'POST', path: '/p/' + k, idempotencyKey: 'key-' + k + '0000000' }));
  let n = 0;
  const report = await q.replay(s, async () => { n += 1; if (n === 2) throw new Error('request:fail'); return { statusCode: 201 }; });
  assert.equal(report.stoppedBy, 'network');
  assert.deepEqual(q.load(s).map((i) => i.path), ['/p/b', '/p/c']);
  assert.equal(q.load(s)[0].attempts, 1);
});

test('a server error keeps the entry; a refused one (4xx) moves to the not-sent list with the reason', async () => {
  const s = memory();
  ['a', 'b'].forEach((k) => q.enqueue(s, { method: 'POST', path: '/p/' + k, idempotencyKey: 'key-' + k + '0000000' }));
  let report = await q.replay(s, async () => ({ statusCode: 503 }));
  assert.equal(report.stoppedBy, 'server');
  assert.equal(q.load(s).length, 2);
  report = await q.replay(s, async (e) => (e.path === '/p/a' ? { statusCode: 422, data: { error: { code: 'request.invalid' } } } : { statusCode: 200 }));
  assert.deepEqual([report.sent, report.remaining, report.notSent.length, report.notSent[0].error.code], [1, 0, 1, 'request.invalid']);
  assert.deepEqual(q.notSent(s).map((i) => [i.path, i.statusCode, i.error.code]), [['/p/a', 422, 'request.invalid']]);
  assert.equal(q.take(s, q.notSent(s)[0].id).path, '/p/a');
  assert.deepEqual(q.notSent(s), []);
});

test('a 401 the refresh could not cure stops the replay and keeps the entry (it is not refused)', async () => {
  const s = memory();
  q.enqueue(s, { method: 'POST', path: '/p/a', idempotencyKey: 'key-a0000000' });
  const report = await q.replay(s, async () => ({ statusCode: 401, data: { error: { code: 'auth.invalid_token' } } }));
  assert.equal(report.stoppedBy, 'auth');
  assert.equal(q.load(s).length, 1);
  assert.deepEqual(q.notSent(s), []);
});
