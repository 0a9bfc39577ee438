// Loads the mini-program's pages into miniprogram-simulate (WeChat's component runtime, j-component
// + exparser, with the official wcc/wcsc compilers) and drives them like a thumb would.
//
//   const { makeWx } = require('./wx'); const sim = require('./page');
//   const phone = makeWx(backend, { openid });
//   sim.launch(phone);                                   // app.js: App({...}).onLaunch/onShow
//   const page = await sim.loadPage('pages/leads/leads', {}, { wx: phone });
//   await page.waitForText('王总'); await page.tap('text=王总'); page.data(); page.text();
//
// A page's `Page({...})` is run as a `Component({...})` (data, and every function as a method), so
// its WXML/WXSS compile and render exactly as in the runtime; the harness calls the page
// lifecycles (onLoad(query), onShow, onReady, onPullDownRefresh, onReachBottom, onUnload,
// onShareAppMessage) the way the base library does. `getApp()`, `getCurrentPages()`,
// `this.getTabBar()` (app.json tabBar.custom) work as in WeChat.
'use strict';

const path = require('path');
const fs = require('fs');
const { JSDOM } = require('jsdom');

const ROOT = path.resolve(__dirname, '..', 'miniprogram');

// j-component needs a DOM: one jsdom window for the process, its globals on `global`.
if (typeof global.window === 'undefined') {
  const dom = new JSDOM('<!doctype html><html><head></head><body></body></html>', { pretendToBeVisual: true });
  global.window = dom.window;
  Object.getOwnPropertyNames(dom.window).forEach((k) => {
    if (!(k in global)) { try { global[k] = dom.window[k]; } catch (e) { /* read-only */ } }
  });
  ['Event', 'CustomEvent', 'EventTarget', 'TouchEvent', 'document'].forEach((k) => { global[k] = dom.window[k]; });
}

const simulate = require('miniprogram-simulate');
const exparser = require('miniprogram-exparser');

const baseWx = global.wx; // miniprogram-simulate's own wx (createSelectorQuery, nextTick, …)
const appJson = JSON.parse(fs.readFileSync(path.join(ROOT, 'app.json'), 'utf8'));

let current = null; // {wx, app, pages: [], launch}
const launched = new Map(); // wx → session

function useWx(wx) {
  global.wx = Object.assign(Object.create(baseWx), wx);
  // Keep the recorder's own state reachable through the global (wx.calls, wx.state, …).
  return global.wx;
}

global.App = (options) => { if (!current) throw new Error('App() outside launch()'); current.app = options; };
global.getApp = () => (current && current.app) || null;
global.getCurrentPages = () => (current ? current.pages.map((p) => p.instance) : []);

const PAGE_HOOKS = ['onLoad', 'onShow', 'onReady', 'onHide', 'onUnload', 'onPullDownRefresh', 'onReachBottom', 'onShareAppMessage', 'onShareTimeline', 'onPageScroll', 'onTabItemTap', 'onResize'];

// Page({...}) as the runtime's component: data stays data, functions become methods, other fields
// are set on the instance when it is created (as the base library copies them onto the page).
global.Page = (options) => {
  const data = options.data || {};
  const methods = {};
  const fields = {};
  Object.keys(options).forEach((k) => {
    if (k === 'data') return;
    if (typeof options[k] === 'function') methods[k] = options[k];
    else fields[k] = options[k];
  });
  global.Component({
    data,
    methods: Object.assign({}, methods, {
      getTabBar() { return this.__tabBar || null; },
      // A real page is a component of its own; selectComponent & co. come from the runtime.
    }),
    lifetimes: {
      created() {
        Object.keys(fields).forEach((k) => { this[k] = JSON.parse(JSON.stringify(fields[k])); });
        this.__isPage = true;
      }
    }
  });
};

function clearMiniprogramModules() {
  Object.keys(require.cache).forEach((k) => { if (k.indexOf(ROOT + path.sep) === 0) delete require.cache[k]; });
}

// Open the mini-program on this phone (cold start): app.js runs, onLaunch and onShow are called.
function launch(wx, options) {
  const o = options || {};
  const session = { wx, app: null, pages: [], launch: { path: o.path || appJson.pages[0], query: o.query || {}, scene: o.scene || 1001, referrerInfo: {} } };
  current = session;
  launched.set(wx, session);
  const g = useWx(wx);
  wx.getLaunchOptionsSync = () => session.launch;
  wx.getEnterOptionsSync = () => session.launch;
  g.getLaunchOptionsSync = wx.getLaunchOptionsSync;
  g.getEnterOptionsSync = wx.getEnterOptionsSync;
  clearMiniprogramModules();
  // requests to the origin config.js names go to this test's backend
  const config = require(path.join(ROOT, 'config.js'));
  wx.state.apiOrigin = new URL(config.baseUrl).origin;
  require(path.join(ROOT, 'app.js'));
  if (!session.app) throw new Error('app.js did not call App()');
  if (session.app.onLaunch) session.app.onLaunch.call(session.app, session.launch);
  if (session.app.onShow) session.app.onShow.call(session.app, session.launch);
  return session.app;
}

function switchTo(wx) {
  const session = launched.get(wx);
  if (!session) return launch(wx);
  current = session;
  useWx(wx);
  return session.app;
}

function parseRoute(route, query) {
  let r = String(route).replace(/^\//, '');
  let q = Object.assign({}, query || {});
  const i = r.indexOf('?');
  if (i >= 0) {
    new URLSearchParams(r.slice(i + 1)).forEach((v, k) => { q[k] = v; });
    r = r.slice(0, i);
  }
  if (r.indexOf('pages/') !== 0 && r.indexOf('custom-tab-bar') !== 0 && !fs.existsSync(path.join(ROOT, r + '.js'))) r = 'pages/' + r;
  return { route: r, query: q };
}

function sleep(ms) { return new Promise((r) => setTimeout(r, ms)); }

async function waitFor(fn, timeoutMs, what) {
  const deadline = Date.now() + (timeoutMs || 8000);
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) { last = e; }
    if (Date.now() > deadline) throw new Error('timed out waiting for ' + (what || fn.toString()) + (last ? ': ' + last.message : ''));
    await sleep(25);
  }
}

function normalize(s) { return String(s || '').replace(/\s+/g, ' ').trim(); }

// The element showing exactly `text` (the innermost one), else the deepest whose text contains it
// (what a thumb would press).
function findByText(rootDom, text) {
  const exact = Array.from(rootDom.querySelectorAll('*')).filter((el) => normalize(el.textContent) === text);
  if (exact.length) return exact[exact.length - 1];
  return findContaining(rootDom, text);
}

function findContaining(rootDom, text) {
  let best = null;
  const walk = (el) => {
    if (!normalize(el.textContent).includes(text)) return;
    best = el;
    Array.from(el.children).forEach((c) => { if (best === el) walk(c); });
  };
  walk(rootDom);
  return best && best !== rootDom ? best : (best && normalize(best.textContent).includes(text) ? best : null);
}

function domSelector(selector) {
  return selector.replace(/(^|[\s>+~,])([a-z][a-z0-9-]*)/g, (m, sep, tag) => sep + (tag.indexOf('wx-') === 0 ? tag : 'wx-' + tag));
}

function dispatch(dom, name, detail) {
  const wxEl = dom.__wxElement;
  if (!wxEl) throw new Error('not a rendered mini-program node');
  const original = new window.CustomEvent(name, { detail });
  exparser.Event.dispatchEvent(wxEl, exparser.Event.create(name, detail || {}, {
    originalEvent: original, bubbles: true, capturePhase: true, composed: true,
    extraFields: { touches: {}, changedTouches: {} }
  }));
}

function wrapComponent(comp, route, wx) {
  const self = {
    comp, route, wx,
    get instance() { return comp.instance; },
    data: () => comp.data,
    text: () => normalize(comp.dom.textContent),
    html: () => comp.dom.outerHTML,
    // selector: a WXSS-like selector (.class, #id, tag), or "text=…" for the element showing that text
    find(selector) {
      if (selector.indexOf('text=') === 0) {
        const el = findByText(comp.dom, selector.slice(5));
        return el ? { dom: el } : null;
      }
      const c = comp.querySelector(selector);
      if (c) return { dom: c.dom };
      // built-in tags render as wx-<tag>: "input", "button[data-id=x]", "textarea"
      const el = comp.dom.querySelector(domSelector(selector));
      return el ? { dom: el } : null;
    },
    findAll(selector) {
      let els = comp.querySelectorAll(selector).map((c) => c.dom);
      if (!els.length) { try { els = Array.from(comp.dom.querySelectorAll(domSelector(selector))); } catch (e) { els = []; } }
      return els.map((dom) => ({ dom, text: normalize(dom.textContent) }));
    },
    has(selector) { return Boolean(self.find(selector)); },
    async trigger(selector, name, detail) {
      const el = await waitFor(() => self.find(selector), 10000, selector + ' in ' + route);
      useWx(wx);
      current = launched.get(wx) || current;
      dispatch(el.dom, name, detail);
      await sleep(0);
    },
    tap: (selector) => self.trigger(selector, 'tap', {}),
    longpress: (selector) => self.trigger(selector, 'longpress', {}),
    input: (selector, value) => self.trigger(selector, 'input', { value, cursor: String(value).length }),
    blur: (selector, value) => self.trigger(selector, 'blur', { value }),
    confirm: (selector, value) => self.trigger(selector, 'confirm', { value }),
    change: (selector, value) => self.trigger(selector, 'change', { value }),
    waitFor: (fn, ms, what) => waitFor(fn, ms, what),
    waitForText: (text, ms) => waitFor(() => self.text().includes(text), ms, '"' + text + '" on ' + route + ' (shows: ' + self.text().slice(0, 300) + ')')
      .catch((e) => { throw new Error('timed out waiting for "' + text + '" on ' + route + '; the page shows: ' + self.text().slice(0, 600)); }),
    waitForData: (fn, ms) => waitFor(() => fn(comp.data), ms, 'data on ' + route),
    hook(name, ...args) {
      useWx(wx);
      current = launched.get(wx) || current;
      const fn = comp.instance[name];
      return fn ? fn.apply(comp.instance, args) : undefined;
    },
    show: () => self.hook('onShow'),
    hide: () => self.hook('onHide'),
    pullDown: () => self.hook('onPullDownRefresh'),
    reachBottom: () => self.hook('onReachBottom'),
    share: (from) => self.hook('onShareAppMessage', { from: from || 'menu' }),
    close() {
      self.hook('onUnload');
      const s = launched.get(wx);
      if (s) s.pages = s.pages.filter((p) => p !== self);
      comp.detach();
    }
  };
  return self;
}

function loadComponent(file, tagName) {
  const id = simulate.load(path.join(ROOT, file), tagName, { rootPath: ROOT, compiler: 'official', usingComponents: appJson.usingComponents || {} });
  const comp = simulate.render(id);
  comp.attach(document.createElement('parent-wrapper'));
  return comp;
}

// Load pages/<route> (query from the arguments or "?a=b" in the route) on the phone `wx`, attach it,
// call onLoad(query), onShow and onReady. The custom tab bar is attached too on a tab page.
async function loadPage(route, query, options) {
  const o = options || {};
  const wx = o.wx || (current && current.wx);
  if (!wx) throw new Error('loadPage needs {wx}');
  switchTo(wx);
  const session = launched.get(wx);
  const r = parseRoute(route, query);
  const comp = loadComponent(r.route, 'page');
  const page = wrapComponent(comp, r.route, wx);
  comp.instance.route = r.route;
  comp.instance.options = r.query;
  const tab = appJson.tabBar && appJson.tabBar.custom && (appJson.tabBar.list || []).some((t) => t.pagePath === r.route);
  if (tab) {
    const bar = loadComponent('custom-tab-bar/index', 'custom-tab-bar');
    page.tabBar = wrapComponent(bar, 'custom-tab-bar', wx);
    comp.instance.__tabBar = bar.instance;
  }
  session.pages.push(page);
  page.hook('onLoad', r.query);
  page.hook('onShow');
  page.hook('onReady');
  await sleep(0);
  return page;
}

// Follow the last wx.navigateTo / redirectTo / switchTab / reLaunch the phone recorded.
async function follow(wx, apis) {
  const kinds = apis || ['navigateTo', 'redirectTo', 'switchTab', 'reLaunch'];
  const nav = [...wx.calls].reverse().find((c) => kinds.indexOf(c.api) >= 0);
  if (!nav) throw new Error('the page did not navigate');
  return loadPage(nav.args.url, {}, { wx });
}

module.exports = { ROOT, appJson, launch, switchTo, loadPage, follow, waitFor, sleep, normalize };
