// A `wx` for the simulator: the phone the mini-program runs on. wx.request goes over real HTTP to
// the backend; storage is in memory per phone name (two people on one phone share it); wx.login
// asks the fake WeChat for a real code for the WeChat account now using the phone; the network can
// be switched off (requests fail with request:fail, onNetworkStatusChange listeners fire);
// navigation, toasts, modals, calls and the like are recorded in `wx.calls` for the test to read.
'use strict';

const fs = require('fs');
const http = require('http');
const path = require('path');
const { httpJson } = require('./backend');

const storages = new Map(); // phone name → {key: JSON text}

function clone(v) { return v === undefined ? undefined : JSON.parse(JSON.stringify(v)); }

// WeChat's callback style, and a promise when no callback is given (as the base library does).
function callbackApi(name, impl) {
  return function api(options) {
    const o = options || {};
    const p = Promise.resolve().then(() => impl(o));
    const wantsPromise = !o.success && !o.fail && !o.complete;
    const done = p.then((res) => {
      const out = Object.assign({ errMsg: name + ':ok' }, res || {});
      if (o.success) o.success(out);
      if (o.complete) o.complete(out);
      return out;
    }, (err) => {
      const out = { errMsg: name + ':fail ' + ((err && err.message) || err || ''), errno: err && err.errno };
      if (o.fail) o.fail(out);
      if (o.complete) o.complete(out);
      if (wantsPromise) throw out;
    });
    return wantsPromise ? done : undefined;
  };
}

function makeWx(backend, options) {
  const opts = options || {};
  const phone = opts.phone || 'phone-1';
  if (!storages.has(phone)) storages.set(phone, {});
  const store = storages.get(phone);
  const calls = [];
  const requests = [];
  const netListeners = [];
  const privacyListeners = [];
  const modalAnswers = [];
  const state = {
    openid: opts.openid || null,
    offline: false,
    lose: null, // {n, match, thenOffline}: answers lost on the way back (wx.loseAnswers)
    location: opts.location || { latitude: 31.2304, longitude: 121.4737, accuracy: 15 },
    privacyAgreed: Boolean(opts.privacyAgreed),
    envVersion: opts.envVersion || 'develop',
    apiOrigin: null, // the origin config.js names; requests to it go to the test's backend
    media: [], // files on the camera roll, handed out by chooseMedia (wx.pickMedia)
    scans: [] // what the camera will read next, handed out by scanCode (wx.pointCameraAt)
  };
  const record = (api, args) => { calls.push({ api, args: clone(args) }); };

  function target(url) {
    if (state.apiOrigin && url.indexOf(state.apiOrigin) === 0) return backend.base_url + url.slice(state.apiOrigin.length);
    return url;
  }

  // WeChat asks for privacy authorisation before a privacy API the user has not agreed to: the
  // page's onNeedPrivacyAuthorization listener shows its agree button and calls resolve; without a
  // listener WeChat's own pop-up would ask (here: the answer in opts.privacyDefault, agree).
  function needPrivacy(apiName) {
    if (state.privacyAgreed) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const listener = privacyListeners[privacyListeners.length - 1];
      const answer = (r) => {
        if (r && r.event === 'agree') { state.privacyAgreed = true; resolve(); } else reject(new Error('privacy permission is not authorized'));
      };
      record('privacy.prompt', { api: apiName, listener: Boolean(listener) });
      if (listener) listener(answer, { referrer: apiName });
      else answer({ event: opts.privacyDefault || 'agree' });
    });
  }

  const wx = {
    calls, requests, state, modalAnswers,
    // -- storage
    getStorageSync: (k) => (Object.prototype.hasOwnProperty.call(store, k) ? JSON.parse(store[k]) : ''),
    setStorageSync: (k, v) => { store[k] = JSON.stringify(v === undefined ? null : v); },
    removeStorageSync: (k) => { delete store[k]; },
    clearStorageSync: () => { Object.keys(store).forEach((k) => delete store[k]); },
    getStorageInfoSync: () => ({ keys: Object.keys(store), currentSize: JSON.stringify(store).length / 1024, limitSize: 10240 }),
    // -- network
    request(o) {
      const entry = { method: (o.method || 'GET').toUpperCase(), url: o.url, header: clone(o.header || {}), data: clone(o.data) };
      requests.push(entry);
      let aborted = false;
      const fail = (msg) => setTimeout(() => { entry.error = msg; if (o.fail) o.fail({ errMsg: msg }); if (o.complete) o.complete({ errMsg: msg }); }, 0);
      if (state.offline) { fail('request:fail -101 net::ERR_INTERNET_DISCONNECTED'); return { abort() {} }; }
      const lose = state.lose;
      const lost = Boolean(lose && lose.n > 0 && (!lose.match || lose.match.test(entry.method + ' ' + o.url)));
      if (lost) lose.n -= 1;
      const u = new URL(target(o.url));
      let body = null;
      if (o.data !== undefined && o.data !== null && entry.method !== 'GET') body = Buffer.from(typeof o.data === 'string' ? o.data : JSON.stringify(o.data));
      let url = u.pathname + u.search;
      if (entry.method === 'GET' && o.data && typeof o.data === 'object') {
        const qs = new URLSearchParams(o.data).toString();
        if (qs) url += (u.search ? '&' : '?') + qs;
      }
      const headers = Object.assign({}, o.header || {});
      if (body) headers['Content-Length'] = body.length;
      const req = http.request({ hostname: u.hostname, port: u.port, path: url, method: entry.method, headers, timeout: o.timeout || 60000, agent: false }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          if (aborted) return;
          if (lost) {
            entry.statusCode = res.statusCode;
            entry.lost = true;
            if (lose.thenOffline) wx.setOffline(true);
            fail('request:fail timeout');
            return;
          }
          const text = Buffer.concat(chunks).toString('utf8');
          let data = text;
          if (o.dataType !== 'text') { try { data = text ? JSON.parse(text) : ''; } catch (e) { /* keep text */ } }
          const header = {};
          Object.keys(res.headers).forEach((h) => { header[h.replace(/(^|-)([a-z])/g, (m, d, c) => d + c.toUpperCase())] = res.headers[h]; });
          entry.statusCode = res.statusCode;
          entry.response = clone(data);
          const out = { statusCode: res.statusCode, data, header, errMsg: 'request:ok' };
          if (o.success) o.success(out);
          if (o.complete) o.complete(out);
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err) => { if (!aborted) fail('request:fail ' + err.message); });
      if (body) req.write(body);
      req.end();
      return { abort() { aborted = true; req.destroy(); } };
    },
    getNetworkType: callbackApi('getNetworkType', () => ({ networkType: state.offline ? 'none' : 'wifi' })),
    onNetworkStatusChange: (fn) => { netListeners.push(fn); },
    offNetworkStatusChange: (fn) => { const i = netListeners.indexOf(fn); if (i >= 0) netListeners.splice(i, 1); else if (!fn) netListeners.length = 0; },
    // -- WeChat account
    login: callbackApi('login', async () => {
      if (state.offline) throw new Error('network');
      if (!state.openid) throw new Error('no WeChat account on this phone (makeWx({openid}) or wx.useAccount)');
      const res = await httpJson('POST', backend.wechat_base + '/__stub__/login-codes', { openid: state.openid });
      return { code: res.data.code };
    }),
    checkSession: callbackApi('checkSession', () => ({})),
    getAccountInfoSync: () => ({ miniProgram: { appId: 'wx0000000000000000', envVersion: state.envVersion, version: '' }, plugin: {} }),
    requestSubscribeMessage: callbackApi('requestSubscribeMessage', async (o) => {
      record('requestSubscribeMessage', { tmplIds: o.tmplIds });
      const res = await httpJson('POST', backend.wechat_base + '/__stub__/subscriptions', { openid: state.openid, template_ids: o.tmplIds });
      if (res.status !== 200) throw new Error(JSON.stringify(res.data));
      const out = Object.assign({}, res.data);
      delete out.errMsg;
      return out;
    }),
    // -- privacy (基础库 2.32.3+)
    onNeedPrivacyAuthorization: (fn) => { privacyListeners.push(fn); },
    getPrivacySetting: callbackApi('getPrivacySetting', () => ({ needAuthorization: !state.privacyAgreed, privacyContractName: '《mpcrm 隐私保护指引》' })),
    requirePrivacyAuthorize: callbackApi('requirePrivacyAuthorize', () => needPrivacy('requirePrivacyAuthorize')),
    openPrivacyContract: callbackApi('openPrivacyContract', () => record('openPrivacyContract', {})),
    // -- device
    getLocation: callbackApi('getLocation', async (o) => {
      await needPrivacy('getLocation');
      record('getLocation', { type: o.type });
      if (state.locationDenied) throw new Error('auth deny');
      return Object.assign({ speed: 0, altitude: 0, verticalAccuracy: 0, horizontalAccuracy: state.location.accuracy }, state.location);
    }),
    // Photos: the test puts files on the phone's camera roll (wx.pickMedia(paths)); chooseMedia
    // hands out up to `count` of them (none: the user cancelled).
    chooseMedia: callbackApi('chooseMedia', (o) => {
      record('chooseMedia', { count: o.count, mediaType: o.mediaType, sourceType: o.sourceType });
      const picked = state.media.splice(0, Math.max(1, Math.min(9, o.count || 9)));
      if (!picked.length) throw new Error('cancel');
      return { type: 'image', tempFiles: picked.map((p) => ({ tempFilePath: p, size: fs.statSync(p).size, fileType: 'image' })) };
    }),
    // The camera: scanCode reads what the test put in front of it (wx.pointCameraAt(text));
    // nothing there: the user cancelled.
    scanCode: callbackApi('scanCode', (o) => {
      record('scanCode', { onlyFromCamera: o.onlyFromCamera, scanType: o.scanType });
      if (!state.scans.length) throw new Error('cancel');
      return { result: state.scans.shift(), scanType: 'QR_CODE', charSet: 'UTF-8' };
    }),
    // wx.uploadFile: a real multipart/form-data POST of the file as field `name` (as WeChat sends it).
    uploadFile(o) {
      const entry = { method: 'UPLOAD', url: o.url, header: clone(o.header || {}), filePath: o.filePath, name: o.name };
      requests.push(entry);
      const fail = (msg) => setTimeout(() => { entry.error = msg; if (o.fail) o.fail({ errMsg: msg }); if (o.complete) o.complete({ errMsg: msg }); }, 0);
      if (state.offline) { fail('uploadFile:fail -101 net::ERR_INTERNET_DISCONNECTED'); return { abort() {} }; }
      let bytes;
      try { bytes = fs.readFileSync(o.filePath); } catch (e) { fail('uploadFile:fail file not found'); return { abort() {} }; }
      const boundary = '----WxUploadBoundary' + Math.random().toString(16).slice(2);
      const fields = Object.keys(o.formData || {}).map((k) => '--' + boundary + '\r\nContent-Disposition: form-data; name="' + k + '"\r\n\r\n' + o.formData[k] + '\r\n').join('');
      const body = Buffer.concat([
        Buffer.from(fields + '--' + boundary + '\r\nContent-Disposition: form-data; name="' + o.name + '"; filename="' + path.basename(o.filePath) + '"\r\nContent-Type: application/octet-stream\r\n\r\n'),
        bytes, Buffer.from('\r\n--' + boundary + '--\r\n')
      ]);
      const u = new URL(target(o.url));
      const headers = Object.assign({}, o.header || {}, { 'Content-Type': 'multipart/form-data; boundary=' + boundary, 'Content-Length': body.length });
      const req = http.request({ hostname: u.hostname, port: u.port, path: u.pathname + u.search, method: 'POST', headers, timeout: o.timeout || 60000, agent: false }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          entry.statusCode = res.statusCode;
          try { entry.response = JSON.parse(text); } catch (e) { entry.response = text; }
          const out = { statusCode: res.statusCode, data: text, errMsg: 'uploadFile:ok' }; // WeChat gives the body as a string
          if (o.success) o.success(out);
          if (o.complete) o.complete(out);
        });
      });
      req.on('timeout', () => req.destroy(new Error('timeout')));
      req.on('error', (err) => fail('uploadFile:fail ' + err.message));
      req.write(body);
      req.end();
      return { abort() { req.destroy(); } };
    },
    makePhoneCall: callbackApi('makePhoneCall', (o) => record('makePhoneCall', { phoneNumber: o.phoneNumber })),
    setClipboardData: callbackApi('setClipboardData', (o) => record('setClipboardData', { data: o.data })),
    getSystemInfoSync: () => ({ platform: 'devtools', windowWidth: 375, windowHeight: 667, pixelRatio: 2, SDKVersion: '3.3.4', language: 'zh_CN' }),
    getWindowInfo: () => ({ windowWidth: 375, windowHeight: 667, pixelRatio: 2, statusBarHeight: 20 }),
    // -- interface (recorded)
    showModal: callbackApi('showModal', (o) => {
      record('showModal', { title: o.title, content: o.content, editable: o.editable });
      const a = modalAnswers.length ? modalAnswers.shift() : { confirm: true };
      return { confirm: Boolean(a.confirm), cancel: !a.confirm, content: a.content || '' };
    }),
    showActionSheet: callbackApi('showActionSheet', (o) => {
      record('showActionSheet', { itemList: o.itemList });
      const a = modalAnswers.length ? modalAnswers.shift() : { tapIndex: 0 };
      if (a.cancel) throw new Error('cancel');
      return { tapIndex: a.tapIndex || 0 };
    })
  };
  ['showToast', 'hideToast', 'showLoading', 'hideLoading', 'stopPullDownRefresh', 'startPullDownRefresh', 'setNavigationBarTitle',
    'navigateTo', 'redirectTo', 'switchTab', 'reLaunch', 'navigateBack', 'showShareMenu', 'vibrateShort', 'pageScrollTo',
    'setTabBarBadge', 'removeTabBarBadge', 'hideHomeButton'].forEach((name) => {
    wx[name] = callbackApi(name, (o) => { record(name, o); if (wx.onNavigate && /navigate|switchTab|reLaunch|redirect/.test(name)) wx.onNavigate(name, o); });
  });

  // -- test controls
  wx.setOffline = (offline) => {
    state.offline = Boolean(offline);
    const status = { isConnected: !state.offline, networkType: state.offline ? 'none' : 'wifi' };
    netListeners.slice().forEach((fn) => fn(status));
  };
  // The next n requests (those whose "METHOD url" matches o.match, if given) are handled by the
  // server but the phone never gets the answer (a lift, a tunnel): wx.request fails with
  // "request:fail timeout" after the server did the work. o.thenOffline: the network goes with it.
  wx.loseAnswers = (n, o) => { state.lose = Object.assign({ n: n === undefined ? 1 : n }, o || {}); };
  // What WeChat does when a privacy API (the phone-number button, …) is used before the user agreed:
  // the page's onNeedPrivacyAuthorization listener is called; resolves once agreed, rejects on refusal.
  wx.askPrivacy = (apiName) => needPrivacy(apiName || 'getPhoneNumber');
  wx.pointCameraAt = (text) => { state.scans.push(String(text)); }; // the QR code the camera will read next
  wx.pickMedia = (paths) => { state.media.push(...[].concat(paths)); }; // the photos the user will pick next
  wx.useAccount = (openid) => { state.openid = openid; }; // another WeChat account on this phone
  wx.storage = () => { const out = {}; Object.keys(store).forEach((k) => { out[k] = JSON.parse(store[k]); }); return out; };
  wx.last = (api) => { for (let i = calls.length - 1; i >= 0; i -= 1) if (calls[i].api === api) return calls[i].args; return null; };
  wx.all = (api) => calls.filter((c) => c.api === api).map((c) => c.args);
  wx.answerModal = (answer) => { modalAnswers.push(answer); };
  wx.networkListeners = netListeners;
  return wx;
}

// Forget every phone's storage (between test files nothing is shared anyway: one process each).
function resetPhones() { storages.clear(); }

module.exports = { makeWx, resetPhones };
