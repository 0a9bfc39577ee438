'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const { createApi, TOKENS_KEY, SYNC_KEY } = require('../utils/api');
const { QUEUE_KEY } = require('../utils/queue');

// A fake wx: storage in memory, wx.request answered by a script of handlers.
function fakeWx(handler) {
  const store = {};
  const calls = [];
  let codes = 0;
  const wx = {
    calls, store,
    getStorageSync: (k) => (k in store ? JSON.parse(JSON.stringify(store[k])) : ''),
    setStorageSync: (k, v) => { store[k] = JSON.parse(JSON.stringify(v)); },
    removeStorageSync: (k) => { delete store[k]; },
    getStorageInfoSync: () => ({ keys: Object.keys(store) }),
    login: ({ success }) => success({ code: 'wxcode-' + (++codes) }),
    request: (req) => {
      calls.push(req);
      const out = handler(req, calls.length);
      setImmediate(() => (out === 'network' ? req.fail({ errMsg: 'request:fail timeout' }) : req.success(Object.assign({ header: {} }, out))));
    }
  };
  return wx;
}

const config = { baseUrl: 'http://api.test', apiPrefix: '/api/v1', maxRetries: 5 };
const noSleep = { sleep: async () => {} };
const pair = (n) => ({ access_token: 'A' + n, refresh_token: 'R' + n, user: { id: 'u1', role: 'rep' } });

test('a 401 refreshes the token once and repeats the request with the new token', async () => {
  const wx = fakeWx((req) => {
    if (req.url.endsWith('/auth/refresh')) return { statusCode: 200, data: pair(2) };
    return req.header.Authorization === 'Bearer A2' ? { statusCode: 200, data: { id: 'u1' } } : { statusCode: 401, data: { error: { code: 'auth.token_expired' } } };
  });
  const api = createApi(wx, config, noSleep);
  api.setTokens(pair(1));
  assert.deepEqual(await api.get('/me'), { id: 'u1' });
  assert.deepEqual(wx.calls.map((c) => c.url.replace('http://api.test/api/v1', '')), ['/me', '/auth/refresh', '/me']);
  assert.equal(wx.calls[1].data.refresh_token, 'R1');
  assert.equal(wx.store[TOKENS_KEY].refresh, 'R2');
});

test('a refused refresh logs in again with wx.login; a second 401 is an error, not a loop', async () => {
  const wx = fakeWx((req) => {
    if (req.url.endsWith('/auth/refresh')) return { statusCode: 401, data: { error: { code: 'auth.refresh_token_reused' } } };
    if (req.url.endsWith('/auth/wechat-login')) return { statusCode: 200, data: pair(3) };
    return { statusCode: 401, data: { error: { code: 'auth.invalid_token', message: 'no' } } };
  });
  const api = createApi(wx, config, noSleep);
  api.setTokens(pair(1));
  await assert.rejects(api.get('/me'), (e) => e.status === 401);
  const paths = wx.calls.map((c) => c.url.replace('http://api.test/api/v1', ''));
  assert.deepEqual(paths, ['/me', '/auth/refresh', '/auth/wechat-login', '/me']);
  assert.equal(wx.calls[2].data.code, 'wxcode-1');
  assert.equal(wx.calls[3].header.Authorization, 'Bearer A3');
});

test('a create is retried after network failures with the same Idempotency-Key', async () => {
  const wx = fakeWx((req, n) => (n < 3 ? 'network' : { statusCode: 201, data: { id: 't1' } }));
  const api = createApi(wx, config, noSleep);
  api.setTokens(pair(1));
  assert.deepEqual(await api.post('/tasks', { title: 'x', due_at: '2030-01-01T10:00:00+08:00' }), { id: 't1' });
  const keys = wx.calls.map((c) => c.header['Idempotency-Key']);
  assert.equal(keys.length, 3);
  assert.ok(keys[0] && keys.every((k) => k === keys[0]));
});

test('an action that is not safe to repeat is not retried', async () => {
  const wx = fakeWx(() => 'network');
  const api = createApi(wx, config, noSleep);
  api.setTokens(pair(1));
  await assert.rejects(api.post('/contracts/c1/approve', { version: 2 }, { noKey: true }), (e) => e.code === 'network.error');
  assert.equal(wx.calls.length, 1);
});

test('offline writes are queued in storage, replayed in order with their keys, then /sync catches up', async () => {
  let online = false;
  const wx = fakeWx((req) => {
    if (!online) return 'network';
    if (req.url.includes('/sync')) {
      return req.url.includes('since=c1')
        ? { statusCode: 200, data: { leads: [], followups: [], deleted: ['L9'], cursor: 'c2', has_more: false } }
        : { statusCode: 200, data: { leads: [{ id: 'L1', version: 2 }, { id: 'L9', version: 1 }], followups: [], deleted: [], cursor: 'c1', has_more: true } };
    }
    return { statusCode: 201, data: {} };
  });
  const api = createApi(wx, { ...config, maxRetries: 1 }, noSleep);
  api.setTokens(pair(1));
  const a = await api.post('/leads/L1/followups', { id: 'f-1', kind: 'call', content: '1' }, { retry: true, queueable: true });
  const b = await api.post('/leads/L1/followups', { id: 'f-2', kind: 'call', content: '2' }, { retry: true, queueable: true });
  assert.equal(a.queued && b.queued, true);
  assert.deepEqual(wx.store[api.keyOf(QUEUE_KEY)].map((e) => e.data.id), ['f-1', 'f-2']);
  online = true;
  wx.calls.length = 0;
  const report = await api.flush();
  assert.deepEqual([report.sent, report.remaining, report.leads], [2, 0, 1]);
  const posts = wx.calls.filter((c) => c.method === 'POST');
  assert.deepEqual(posts.map((c) => c.data.id), ['f-1', 'f-2']);
  assert.deepEqual(posts.map((c) => c.header['Idempotency-Key']), [a.idempotencyKey, b.idempotencyKey]);
  assert.deepEqual(Object.keys(wx.store[api.keyOf(SYNC_KEY)].leads), ['L1']);
  assert.equal(wx.store[api.keyOf(SYNC_KEY)].cursor, 'c2');
  assert.deepEqual(wx.store[api.keyOf(QUEUE_KEY)], []);
});

test('a queued write is replayed through refresh-then-retry: an expired token does not lose it', async () => {
  let online = false;
  const wx = fakeWx((req) => {
    if (!online) return 'network';
    if (req.url.endsWith('/auth/refresh')) return { statusCode: 200, data: pair(2) };
    if (req.header.Authorization !== 'Bearer A2') return { statusCode: 401, data: { error: { code: 'auth.token_expired' } } };
    if (req.url.includes('/sync')) return { statusCode: 200, data: { leads: [], followups: [], deleted: [], cursor: 'c1', has_more: false } };
    return { statusCode: 201, data: { id: 'f-1' } };
  });
  const api = createApi(wx, { ...config, maxRetries: 0 }, noSleep);
  api.setTokens(pair(1));
  assert.equal((await api.post('/leads/L1/followups', { id: 'f-1', kind: 'call', content: '1' }, { queueable: true })).queued, true);
  online = true;
  const report = await api.flush();
  assert.deepEqual([report.sent, report.notSent.length, report.remaining], [1, 0, 0]);
  const paths = wx.calls.filter((c) => c.method === 'POST').map((c) => c.url.replace('http://api.test/api/v1', ''));
  assert.deepEqual(paths.slice(-3), ['/leads/L1/followups', '/auth/refresh', '/leads/L1/followups']);
});

test('known offline, a queueable write is queued without a single try and a read fails at once', async () => {
  let type = 'wifi';
  const wx = fakeWx(() => ({ statusCode: 200, data: {} }));
  const listeners = [];
  wx.onNetworkStatusChange = (fn) => listeners.push(fn);
  wx.getNetworkType = ({ success }) => success({ networkType: type });
  const api = createApi(wx, config, { sleep: () => new Promise((r) => setTimeout(r, 1000)) });
  api.setTokens(pair(1));
  await api.watchNetwork();
  type = 'none';
  listeners.forEach((fn) => fn({ isConnected: false, networkType: 'none' }));
  const t0 = Date.now();
  assert.equal((await api.post('/leads', { id: 'l-1', name: 'x' }, { queueable: true, label: '新线索 · x' })).queued, true);
  await assert.rejects(api.get('/leads'), (e) => e.code === 'network.error');
  assert.ok(Date.now() - t0 < 500);
  assert.equal(wx.calls.length, 0);
  assert.equal(api.pending().queued[0].label, '新线索 · x');
});

test('a refused sync cursor starts a fresh snapshot', async () => {
  const wx = fakeWx((req) => (req.url.includes('since=old')
    ? { statusCode: 400, data: { error: { code: 'request.bad_cursor', message: '分页游标无效' } } }
    : { statusCode: 200, data: { leads: [{ id: 'L2', version: 1 }], followups: [], deleted: [], cursor: 'new', has_more: false } }));
  const api = createApi(wx, config, noSleep);
  api.setTokens(pair(1));
  wx.setStorageSync(api.keyOf(SYNC_KEY), { leads: { L1: { id: 'L1', version: 1 } }, followups: {}, cursor: 'old' });
  await api.flush();
  assert.deepEqual(Object.keys(wx.store[api.keyOf(SYNC_KEY)].leads), ['L2']);
  assert.equal(wx.store[api.keyOf(SYNC_KEY)].cursor, 'new');
});

test('each user has their own cache and queue; logout removes every record of the mini-program', async () => {
  const wx = fakeWx((req) => (req.url.includes('/sync')
    ? { statusCode: 200, data: { leads: [{ id: req.header.Authorization === 'Bearer A1' ? 'L-of-u1' : 'L-of-u2', version: 1 }], followups: [], deleted: [], cursor: 'c', has_more: false } }
    : { statusCode: 204, data: '' }));
  const api = createApi(wx, config, noSleep);
  api.setTokens(pair(1));
  await api.flush();
  assert.deepEqual(api.localLeads().map((l) => l.id), ['L-of-u1']);
  api.setTokens({ access_token: 'A2', refresh_token: 'R2', user: { id: 'u2', role: 'rep' } });
  assert.deepEqual(api.localLeads(), []);
  await api.flush();
  assert.deepEqual(api.localLeads().map((l) => l.id), ['L-of-u2']);
  await api.logout();
  assert.deepEqual(Object.keys(wx.store), []);
  assert.ok(wx.calls.some((c) => c.url.endsWith('/auth/logout') && c.data.refresh_token === 'R2'));
});

test('a write queued while a catch-up is still running is sent when the network returns, not left until the next change', async () => {
  // After login the mini-program flushes (replay, then /sync). If the phone goes offline while
  // that /sync is still on its way, a follow-up saved then is queued; when the network returns
  // the flush asked for must run again once the first one ends, or the follow-up waits forever.
  let online = true;
  let releaseSync;
  const syncHeld = new Promise((r) => { releaseSync = r; });
  const wx = fakeWx((req) => {
    if (!online) return 'network';
    if (req.url.includes('/sync')) return { statusCode: 200, data: { leads: [], followups: [], deleted: [], cursor: 'c1', has_more: false } };
    return { statusCode: 201, data: { id: 'f-1' } };
  });
  const request = wx.request;
  let held = false;
  wx.request = (req) => {
    if (req.url.includes('/sync') && !held) { held = true; syncHeld.then(() => request(req)); return; }
    request(req);
  };
  const listeners = [];
  wx.onNetworkStatusChange = (fn) => listeners.push(fn);
  wx.getNetworkType = ({ success }) => success({ networkType: online ? 'wifi' : 'none' });
  const api = createApi(wx, { ...config, maxRetries: 0 }, noSleep);
  api.setTokens(pair(1));
  await api.watchNetwork();
  const first = api.flush(); // the catch-up after login, its /sync held
  online = false;
  listeners.forEach((fn) => fn({ isConnected: false, networkType: 'none' }));
  assert.equal((await api.post('/leads/L1/followups', { id: 'f-1', kind: 'call', content: '1' }, { queueable: true })).queued, true);
  online = true;
  listeners.forEach((fn) => fn({ isConnected: true, networkType: 'wifi' }));
  releaseSync();
  await first.catch(() => {}); // it may fail: the phone went offline under it
  for (let i = 0; i < 50 && !wx.calls.some((c) => c.method === 'POST' && c.url.endsWith('/leads/L1/followups') && online); i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(wx.store[api.keyOf(QUEUE_KEY)], [], 'the queue is empty');
  assert.ok(wx.calls.some((c) => c.method === 'POST' && c.url.endsWith('/leads/L1/followups')), 'the follow-up was sent');
});
