// The mini-program's API layer. Everything that touches wx goes through the injected `wx`, so the
// same code runs in Node tests with a fake and in the simulator. Rules:
// - bearer token, one /auth/refresh on a 401 (then wx.login again), an Idempotency-Key on every
//   create, retries with back-off for requests that are safe to repeat;
// - the network state is watched (onNetworkStatusChange, getNetworkType after a failure): known
//   offline, a queueable write is queued at once and a read fails at once (the page shows its cache);
// - the offline queue is replayed in order through the same refresh-then-retry path as any request;
//   what the server refuses goes to the "not sent" list with its reason (edit or discard), never
//   dropped; then /sync catches up (a refused cursor starts a fresh snapshot);
// - each user's cached records, queue and not-sent list live under keys of their own
//   (mpcrm.u.<user id>.…), and logout removes every mpcrm.* key: people sharing a phone never see
//   or send each other's data.
'use strict';

const request = require('./request');
const queue = require('./queue');
const sync = require('./sync');

const PREFIX = 'mpcrm.';
const TOKENS_KEY = 'mpcrm.tokens';
const SYNC_KEY = 'mpcrm.syncStore';

function createApi(wx, config, options) {
  const opts = options || {};
  const sleep = opts.sleep || ((ms) => new Promise((r) => setTimeout(r, ms)));
  const now = opts.now || (() => Date.now());
  let refreshing = null;
  let flushing = null;
  let flushAgain = false;
  let online = true; // until the phone says otherwise
  const listeners = [];

  // ---------------------------------------------------------------- tokens and per-user storage
  function tokens() { return wx.getStorageSync(TOKENS_KEY) || {}; }
  function user() { return tokens().user || null; }
  function setTokens(pair) {
    wx.setStorageSync(TOKENS_KEY, { access: pair.access_token, refresh: pair.refresh_token, user: pair.user });
    emit('user');
    return pair;
  }
  function clearTokens() { wx.removeStorageSync(TOKENS_KEY); }

  // 'mpcrm.syncStore' → 'mpcrm.u.<user id>.syncStore' for the user now logged in.
  function keyOf(key) {
    const u = user();
    return PREFIX + 'u.' + ((u && u.id) || 'anonymous') + '.' + key.slice(PREFIX.length);
  }
  const storage = { get: (k) => wx.getStorageSync(keyOf(k)), set: (k, v) => wx.setStorageSync(keyOf(k), v) };
  function loadStore() { return storage.get(SYNC_KEY) || sync.emptyStore(); }

  // Every record this mini-program keeps: tokens, every user's cache, queue, not-sent list, drafts.
  function clearAll() {
    const info = wx.getStorageInfoSync ? wx.getStorageInfoSync() : { keys: [] };
    (info.keys || []).filter((k) => k.indexOf(PREFIX) === 0).forEach((k) => wx.removeStorageSync(k));
  }

  // ---------------------------------------------------------------- change listeners
  // fn(what, state): 'network', 'queue', 'sync', 'user', 'logout'. Returns the unsubscribe.
  function onChange(fn) {
    listeners.push(fn);
    return () => { const i = listeners.indexOf(fn); if (i >= 0) listeners.splice(i, 1); };
  }
  function emit(what) {
    const s = status();
    listeners.slice().forEach((fn) => { try { fn(what, s); } catch (e) { /* a page's problem */ } });
  }
  function status() {
    return { online, queued: queue.load(storage).length, notSent: queue.notSent(storage).length };
  }

  // ---------------------------------------------------------------- network state
  function setOnline(value) {
    const was = online;
    online = Boolean(value);
    if (was !== online) emit('network');
    if (!was && online) flush().catch(() => {});
  }
  // Ask the phone (answers at once; a phone that never answers counts as online).
  function probeNetwork() {
    if (!wx.getNetworkType) return Promise.resolve(online);
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(online), 1000);
      wx.getNetworkType({
        success: (r) => { clearTimeout(timer); setOnline(r.networkType !== 'none'); resolve(online); },
        fail: () => { clearTimeout(timer); resolve(online); }
      });
    });
  }
  function watchNetwork() {
    if (wx.onNetworkStatusChange) wx.onNetworkStatusChange((s) => setOnline(s.isConnected !== false && s.networkType !== 'none'));
    return probeNetwork();
  }

  // ---------------------------------------------------------------- sending
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
    return new Promise((resolve, reject) => wx.login({ success: (r) => resolve(r.code), fail: (e) => reject(Object.assign(new Error((e && e.errMsg) || 'wx.login failed'), { networkError: !online })) }));
  }

  async function loginWithWechat(bindCode) {
    const code = await wxLogin();
    const data = bindCode ? { code, bind_code: bindCode } : { code };
    const res = await call({ method: 'POST', path: '/auth/wechat-login', data, auth: false, retry: false, noKey: true });
    return setTokens(res);
  }

  async function loginWithPassword(username, password) {
    const res = await call({ method: 'POST', path: '/auth/password-login', data: { username, password }, auth: false, retry: false, noKey: true });
    return setTokens(res);
  }

  async function refresh() {
    // Several requests may 401 at once: they share one refresh.
    if (!refreshing) {
      refreshing = (async () => {
        const t = tokens();
        // No network rejects here and keeps the tokens: the caller waits for the network.
        const res = t.refresh ? await send(request.buildRequest(config, { method: 'POST', path: '/auth/refresh', data: { refresh_token: t.refresh }, auth: false, noKey: true }, null)) : null;
        if (res && res.statusCode === 200) { setTokens(res.data); return; }
        // A spent, expired or revoked refresh token: log in again with wx.login (same WeChat user).
        const before = user();
        const code = await wxLogin();
        const again = await send(request.buildRequest(config, { method: 'POST', path: '/auth/wechat-login', data: { code }, auth: false, noKey: true }, null));
        if (again.statusCode !== 200 || (before && again.data.user && again.data.user.id !== before.id)) {
          clearTokens();
          emit('user');
          throw Object.assign(new Error('请重新登录'), { status: 401, code: 'auth.login_required' });
        }
        setTokens(again.data);
      })().finally(() => { refreshing = null; });
    }
    return refreshing;
  }

  // One request through the whole policy. Resolves {action: 'done'|'fail'|'queue', res, outcome, req}.
  async function exchange(o) {
    let req = request.buildRequest(config, o, tokens().access, opts.newKey);
    const safe = request.isRetrySafe(req, o);
    const maxRetries = o.maxRetries !== undefined ? o.maxRetries : (o.queueable ? Math.min(2, config.maxRetries) : config.maxRetries);
    let attempt = 0;
    let refreshed = false;
    for (;;) {
      let outcome;
      let res;
      if (!online && !o.probe && !(await probeNetwork())) {
        outcome = { networkError: true }; // known offline: not even a try
      } else {
        try {
          res = await send(req);
          outcome = { statusCode: res.statusCode, retryAfter: res.header && (res.header['Retry-After'] || res.header['retry-after']) };
          if (!online) setOnline(true);
        } catch (err) {
          outcome = { networkError: true };
          await probeNetwork();
        }
      }
      const d = request.decide(outcome, {
        attempt, safe, auth: o.auth, refreshed, hasRefreshToken: Boolean(tokens().refresh || tokens().user),
        maxRetries, queueable: Boolean(o.queueable), offline: !online
      });
      if (d.action === 'refresh') {
        refreshed = true;
        try {
          await refresh();
        } catch (err) {
          if (err.networkError) return { action: o.queueable ? 'queue' : 'fail', outcome: { networkError: true }, req };
          return { action: 'fail', res, outcome, req };
        }
        req = request.buildRequest(config, Object.assign({}, o, { idempotencyKey: req.idempotencyKey }), tokens().access);
        continue;
      }
      if (d.action === 'retry') {
        attempt += 1;
        await sleep(d.delayMs);
        continue;
      }
      return { action: d.action, res, outcome, req };
    }
  }

  // The one entry point. o: {method, path, query, data, auth, retry, idempotencyKey, queueable, kind, label}
  // A queueable write that cannot be sent now is queued: resolves {queued: true, idempotencyKey}.
  async function call(o) {
    const r = await exchange(o);
    if (r.action === 'done') return r.res.data;
    if (r.action === 'queue') {
      queue.enqueue(storage, { method: r.req.method, path: o.path, data: o.data, idempotencyKey: r.req.idempotencyKey, kind: o.kind, label: o.label }, now());
      emit('queue');
      return { queued: true, idempotencyKey: r.req.idempotencyKey };
    }
    const error = r.outcome.networkError ? { status: 0, code: 'network.error', message: '网络不可用，请稍后再试' } : request.errorOf(r.res);
    throw Object.assign(new Error(error.message), error);
  }

  // A queued write, sent again exactly as queued (same key), through refresh-then-retry.
  async function replayEntry(entry) {
    const r = await exchange({ method: entry.method, path: entry.path, data: entry.data, idempotencyKey: entry.idempotencyKey, retry: false, probe: true });
    if (r.outcome.networkError) throw Object.assign(new Error('request:fail'), { networkError: true });
    return { statusCode: r.res.statusCode, data: r.res.data };
  }

  // When the network returns (and after login): replay the queue in order, then catch up with /sync.
  // Asked again while one runs (the network came back during the catch-up after login, with a
  // write queued after that run had replayed the queue): one more run follows it.
  function flush() {
    if (flushing) { flushAgain = true; return flushing; }
    flushing = (async () => {
      if (!tokens().access) return { sent: 0, notSent: [], remaining: 0, stoppedBy: 'auth' };
      const report = await queue.replay(storage, replayEntry, now());
      if (report.sent || report.notSent.length) emit('queue');
      if (report.stoppedBy) return report;
      await syncNow();
      report.leads = Object.keys(loadStore().leads).length;
      return report;
    })().finally(() => {
      flushing = null;
      if (flushAgain) { flushAgain = false; flush().catch(() => {}); }
    });
    return flushing;
  }

  async function syncNow() {
    const owner = user() && user().id;
    const merged = await sync.syncAll(loadStore(), (since) => call({ path: '/sync', query: { since: since || undefined, limit: 100 } }));
    if (!user() || user().id !== owner) return; // logged out or switched meanwhile: keep nothing
    storage.set(SYNC_KEY, merged);
    emit('sync');
  }

  // ---------------------------------------------------------------- uploads
  // A file (a photo from wx.chooseMedia) to POST /uploads as multipart field `file` with
  // wx.uploadFile, under the same bearer token and the same one refresh on a 401. An upload needs
  // the network: it is never queued (known offline, it fails at once with `offline: true`), so a
  // page uploads its photos first and only then sends (or queues) the write that refers to them.
  // Resolves the server's answer {id, name, content_type, size, …}.
  const UPLOAD_OFFLINE = '照片需要联网上传，请联网后再试';
  function uploadOnce(filePath) {
    return new Promise((resolve, reject) => {
      const access = tokens().access;
      wx.uploadFile({
        url: config.baseUrl.replace(/\/$/, '') + (config.apiPrefix || '') + '/uploads',
        filePath, name: 'file', header: access ? { Authorization: 'Bearer ' + access } : {}, timeout: config.timeoutMs || 15000,
        success: (res) => {
          let data = res.data;
          if (typeof data === 'string') { try { data = data ? JSON.parse(data) : null; } catch (e) { /* not JSON */ } }
          resolve({ statusCode: res.statusCode, data, header: res.header || {} });
        },
        fail: (err) => reject(Object.assign(new Error((err && err.errMsg) || 'uploadFile:fail'), { networkError: true }))
      });
    });
  }
  function offlineUpload() { return Object.assign(new Error(UPLOAD_OFFLINE), { status: 0, code: 'network.error', offline: true, message: UPLOAD_OFFLINE }); }
  async function upload(filePath) {
    if (!online && !(await probeNetwork())) throw offlineUpload();
    let res;
    for (let refreshed = false; ; refreshed = true) {
      try {
        res = await uploadOnce(filePath);
      } catch (err) {
        await probeNetwork();
        throw offlineUpload();
      }
      if (!online) setOnline(true);
      if (res.statusCode !== 401 || refreshed || !(tokens().refresh || tokens().user)) break;
      try { await refresh(); } catch (err) { throw err.networkError ? offlineUpload() : err; }
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return res.data;
    const error = request.errorOf(res);
    throw Object.assign(new Error(error.message), error);
  }

  // ---------------------------------------------------------------- not-sent list, logout
  function pending() { return { queued: queue.load(storage), notSent: queue.notSent(storage) }; }
  function discard(id) { const e = queue.take(storage, id); emit('queue'); return e; }
  // Take a refused write out of the list to edit it on its page (which sends it again).
  function takeNotSent(id) { return discard(id); }
  function peekNotSent(id) { return queue.notSent(storage).find((i) => i.id === id) || null; }

  // Logout: revoke the session on the server (best effort), then remove everything of this
  // mini-program from the phone: tokens, cached records, the queue, the not-sent list.
  async function logout() {
    const t = tokens();
    if (t.refresh && online) {
      try { await exchange({ method: 'POST', path: '/auth/logout', data: { refresh_token: t.refresh }, noKey: true, retry: false }); } catch (e) { /* revoked anyway when it expires */ }
    }
    clearAll();
    emit('logout');
  }

  return {
    call, upload, flush, syncNow, refresh, loginWithWechat, loginWithPassword, watchNetwork, probeNetwork, tokens, user, setTokens, clearTokens,
    onChange, status, isOnline: () => online, keyOf, pending, discard, takeNotSent, peekNotSent, logout,
    get: (path, query) => call({ path, query }),
    post: (path, data, extra) => call(Object.assign({ method: 'POST', path, data }, extra || {})),
    patch: (path, data, extra) => call(Object.assign({ method: 'PATCH', path, data }, extra || {})),
    localLeads: () => sync.leadList(loadStore()),
    localLead: (id) => loadStore().leads[id] || null,
    localFollowups: (leadId) => sync.followupsOf(loadStore(), leadId),
    // The user's own scoped storage for pages (drafts): get(key)/set(key, v) with 'mpcrm.' keys.
    storage
  };
}

module.exports = { createApi, TOKENS_KEY, SYNC_KEY, PREFIX };
