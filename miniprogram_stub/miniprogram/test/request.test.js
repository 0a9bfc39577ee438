'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const r = require('../utils/request');

const config = { baseUrl: 'http://127.0.0.1:8000/', apiPrefix: '/api/v1', timeoutMs: 1000 };

test('a create gets one Idempotency-Key, a read gets none', () => {
  const post = r.buildRequest(config, { method: 'post', path: '/leads', data: { name: 'x' } }, 'T', () => 'key-12345678');
  assert.equal(post.url, 'http://127.0.0.1:8000/api/v1/leads');
  assert.equal(post.method, 'POST');
  assert.equal(post.header['Idempotency-Key'], 'key-12345678');
  assert.equal(post.header.Authorization, 'Bearer T');
  const get = r.buildRequest(config, { path: '/leads', query: { limit: 20, cursor: null, q: '王 先生' } }, 'T');
  assert.equal(get.header['Idempotency-Key'], undefined);
  assert.equal(get.url, 'http://127.0.0.1:8000/api/v1/leads?limit=20&q=%E7%8E%8B%20%E5%85%88%E7%94%9F');
});

test('a retry keeps the key it was given; auth endpoints send no key and no token', () => {
  const again = r.buildRequest(config, { method: 'POST', path: '/tasks', idempotencyKey: 'same-key-123' }, 'T');
  assert.equal(again.header['Idempotency-Key'], 'same-key-123');
  const login = r.buildRequest(config, { method: 'POST', path: '/auth/refresh', auth: false, noKey: true }, 'T');
  assert.equal(login.header['Idempotency-Key'], undefined);
  assert.equal(login.header.Authorization, undefined);
});

test('uuid4 looks like a v4 uuid and differs each time', () => {
  const a = r.uuid4();
  assert.match(a, /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  assert.notEqual(a, r.uuid4());
});

test('only requests that are safe to repeat are retried after a network failure', () => {
  const get = r.buildRequest(config, { path: '/leads' });
  const create = r.buildRequest(config, { method: 'POST', path: '/leads' });
  const action = r.buildRequest(config, { method: 'POST', path: '/contracts/1/approve', noKey: true });
  assert.equal(r.isRetrySafe(get, {}), true);
  assert.equal(r.isRetrySafe(create, {}), true);
  assert.equal(r.isRetrySafe(action, {}), false);
  assert.equal(r.isRetrySafe(action, { retry: true }), true);
  assert.equal(r.isRetrySafe(create, { retry: false }), false);
  assert.deepEqual(r.decide({ networkError: true }, { safe: false }), { action: 'fail' });
  assert.deepEqual(r.decide({ networkError: true }, { safe: false, queueable: true }), { action: 'queue' });
  assert.equal(r.decide({ networkError: true }, { safe: true, attempt: 0, random: () => 0.5 }).action, 'retry');
  assert.deepEqual(r.decide({ networkError: true }, { safe: true, attempt: 5, maxRetries: 5, queueable: true }), { action: 'queue' });
});

test('401 refreshes once; 503 is retried with Retry-After; 4xx fails; 2xx is done', () => {
  assert.deepEqual(r.decide({ statusCode: 401 }, { hasRefreshToken: true }), { action: 'refresh' });
  assert.deepEqual(r.decide({ statusCode: 401 }, { hasRefreshToken: true, refreshed: true }), { action: 'fail' });
  assert.deepEqual(r.decide({ statusCode: 401 }, { hasRefreshToken: false }), { action: 'fail' });
  assert.deepEqual(r.decide({ statusCode: 503, retryAfter: '5' }, { safe: true }), { action: 'retry', delayMs: 5000 });
  assert.deepEqual(r.decide({ statusCode: 503 }, { safe: false }), { action: 'fail' });
  assert.deepEqual(r.decide({ statusCode: 422 }, { safe: true }), { action: 'fail' });
  assert.deepEqual(r.decide({ statusCode: 201 }, {}), { action: 'done' });
});

test('back-off doubles from 500 ms, with ±20 % jitter, capped at 30 s', () => {
  const mid = () => 0.5;
  assert.deepEqual([0, 1, 2, 3].map((a) => r.backoffDelay(a, mid)), [500, 1000, 2000, 4000]);
  assert.equal(r.backoffDelay(20, mid), 30000);
  assert.equal(r.backoffDelay(0, () => 0), 400);
  assert.equal(r.backoffDelay(0, () => 0.9999), 600);
});

test('errors are read from the error envelope', () => {
  const e = r.errorOf({ statusCode: 409, data: { error: { code: 'pool.claim_lost', message: '慢了一步', details: [] } } });
  assert.equal(e.code, 'pool.claim_lost');
  assert.equal(e.status, 409);
  assert.equal(r.errorOf({ statusCode: 502, data: '<html>' }).code, 'http.502');
});
