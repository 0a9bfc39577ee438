// The mini-program's API layer. Everything that touches wx goes through the injected `wx`, so the
// same code runs in Node tests with a fake. Rules: bearer token, one /auth/refresh on a 401 (then
// wx.login again), an Idempotency-Key on every create, retries with back-off for requests that are
// safe to repeat, an offline queue in storage replayed in order, then a /sync catch-up.
'use strict';

const request = require('./request');
const queue = require('./queue');
const sync = require('./sync');

const TOKENS_KEY = 'mpcrm.tokens';
const SYNC_KEY = 'mpcrm.syncStore';

function createApi(wx, config, options) {
  const opts = options || {};
  const sleep = opts.sleep || ((ms) => new Promise((r) => setTimeout(r, ms)));
  const storage = { get: (k) => wx.getStorageSync(k), set: (k, v) => wx.setStorageSync(k, v) };
  let refreshing = null;

  function tokens() { return wx.getStorageSync(TOKENS_KEY) || {}; }
  function setTokens(pair) {
    wx.setStorageSync(TOKENS_KEY, { access: pair.access_token, refresh: pair.refresh_token, user: pair.user });
    return pair;
  }
  function clearTokens() { wx.removeStorageSync(TOKENS_KEY); }

  // One wx.request as a promise: resolves {statusCode, data, header}, rejects on network failure.
  function send(req) {
    return new Promise((resolve, reject) => {
      wx.request({
        url: req.url, method: req.method, header: req.header, data: req.data, timeout: req.timeout,
        success: (res) => resolve(res),
        fail: (err) => reject(Object.assign(new Error((err && err.errMsg) || 'request:fail'), { networkError: true }))
      });
    });
  }

  function wxLogin() {
    return new Promise((resolve, reject) => wx.login({ success: (r) => resolve(r.code), fail: reject }));
  }

  async function loginWithWechat(bindCode) {
    const code = await wxLogin();
    const data = bindCode ? { code, bind_code: bindCode } : { code };
    const res = await call({ method: 'POST', path: '/auth/wechat-login', data, auth: false, retry: false, noKey: true });
    return setTokens(res);
  }

  async function refresh() {
    // Several requests may 401 at once: they share one refresh.
    if (!refreshing) {
      refreshing = (async () => {
        const t = tokens();
        try {
          if (!t.refresh) throw new Error('no refresh token');
          const res = await send(request.buildRequest(config, { method: 'POST', path: '/auth/refresh', data: { refresh_token: t.refresh }, auth: false, noKey: true }, null));
          if (res.statusCode !== 200) throw new Error('refresh refused');
          setTokens(res.data);
        } catch (err) {
          clearTokens();
          await loginWithWechat(); // a spent or revoked refresh token: log in again with wx.login
        } finally {
          refreshing = null;
        }
      })();
    }
    return refreshing;
  }

  // The one entry point. opts: {method, path, query, data, auth, retry, idempotencyKey, queueable}
  async function call(o) {
    let req = request.buildRequest(config, o, tokens().access, opts.newKey);
    const safe = request.isRetrySafe(req, o);
    let attempt = 0;
    let refreshed = false;
    for (;;) {
      let outcome;
      let res;
      try {
        res = await send(req);
        outcome = { statusCode: res.statusCode, retryAfter: res.header && (res.header['Retry-After'] || res.header['retry-after']) };
      } catch (err) {
        outcome = { networkError: true };
      }
      const d = request.decide(outcome, {
        attempt, safe, auth: o.auth, refreshed, hasRefreshToken: Boolean(tokens().refresh),
        maxRetries: config.maxRetries, queueable: Boolean(o.queueable)
      });
      if (d.action === 'done') return res.data;
      if (d.action === 'refresh') {
        refreshed = true;
        await refresh();
        req = request.buildRequest(config, Object.assign({}, o, { idempotencyKey: req.idempotencyKey }), tokens().access);
        continue;
      }
      if (d.action === 'retry') {
        attempt += 1;
        await sleep(d.delayMs);
        continue;
      }
      if (d.action === 'queue') {
        queue.enqueue(storage, { method: req.method, path: o.path, data: o.data, idempotencyKey: req.idempotencyKey });
        return { queued: true, idempotencyKey: req.idempotencyKey };
      }
      const error = outcome.networkError ? { status: 0, code: 'network.error', message: '网络不可用' } : request.errorOf(res);
      throw Object.assign(new Error(error.message), error);
    }
  }

  // When the network returns: replay the queue in order (same keys), then catch up with /sync.
  async function flush() {
    const report = await queue.replay(storage, (entry) =>
      send(request.buildRequest(config, { method: entry.method, path: entry.path, data: entry.data, idempotencyKey: entry.idempotencyKey }, tokens().access)));
    if (report.stoppedBy) return report;
    const store = wx.getStorageSync(SYNC_KEY) || { leads: {}, followups: {}, cursor: null };
    const merged = await sync.syncAll(store, (since) => call({ path: '/sync', query: { since: since || undefined, limit: 100 } }));
    wx.setStorageSync(SYNC_KEY, merged);
    report.leads = Object.keys(merged.leads).length;
    return report;
  }

  function watchNetwork() {
    if (wx.onNetworkStatusChange) wx.onNetworkStatusChange((s) => { if (s.isConnected) flush().catch(() => {}); });
  }

  return {
    call, flush, refresh, loginWithWechat, watchNetwork, tokens, setTokens, clearTokens,
    get: (path, query) => call({ path, query }),
    post: (path, data, extra) => call(Object.assign({ method: 'POST', path, data }, extra || {})),
    patch: (path, data) => call({ method: 'PATCH', path, data }),
    localLeads: () => sync.leadList(wx.getStorageSync(SYNC_KEY) || { leads: {} })
  };
}

module.exports = { createApi, TOKENS_KEY, SYNC_KEY };
