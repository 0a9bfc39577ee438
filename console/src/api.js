// The public API only (/api/v1): bearer tokens, one refresh on 401, Idempotency-Key on creates,
// version on PATCH; errors are {status, code, message, details} from the server's envelope.
import { reactive } from 'vue';
import { lang } from './i18n.js';

const BASE = '/api/v1';
const KEY = 'mpcrm.console.session';

export const session = reactive(JSON.parse(localStorage.getItem(KEY) || 'null') || { user: null, access: null, refresh: null });
const listeners = { expired: [] };
export function onExpired(fn) { listeners.expired.push(fn); }

function store() { localStorage.setItem(KEY, JSON.stringify(session)); }
function setTokens(answer) {
  session.access = answer.access_token;
  session.refresh = answer.refresh_token;
  if (answer.user) session.user = answer.user;
  store();
}
export function clearSession() {
  session.user = null; session.access = null; session.refresh = null;
  localStorage.removeItem(KEY);
}

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || 'http.' + status;
    this.details = error.details || [];
  }
}

export function newKey() {
  return (crypto.randomUUID ? crypto.randomUUID() : Date.now().toString(36) + Math.random().toString(36).slice(2));
}

let refreshing = null;
async function refreshTokens() {
  if (!session.refresh) return false;
  if (!refreshing) {
    refreshing = (async () => {
      const res = await fetch(BASE + '/auth/refresh', {
        method: 'POST', headers: { 'Content-Type': 'application/json', 'Accept-Language': lang },
        body: JSON.stringify({ refresh_token: session.refresh }),
      });
      if (!res.ok) return false;
      setTokens(await res.json());
      return true;
    })().finally(() => { setTimeout(() => { refreshing = null; }, 0); });
  }
  return refreshing;
}

async function send(method, path, { body, query, headers, raw } = {}) {
  let url = BASE + path;
  if (query) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(query)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
    if ([...q].length) url += '?' + q;
  }
  const isForm = body instanceof FormData;
  const make = () => fetch(url, {
    method,
    headers: Object.assign({ 'Accept-Language': lang, Accept: 'application/json' },
      body !== undefined && !isForm ? { 'Content-Type': 'application/json' } : {},
      session.access ? { Authorization: 'Bearer ' + session.access } : {}, headers || {}),
    body: body === undefined ? undefined : (isForm ? body : JSON.stringify(body)),
  });
  let res = await make();
  if (res.status === 401 && session.refresh && !path.startsWith('/auth/')) {
    if (await refreshTokens()) res = await make();
    if (res.status === 401) {
      clearSession();
      listeners.expired.forEach((fn) => fn());
    }
  }
  if (raw) {
    if (!res.ok) throw new ApiError(res.status, await res.json().catch(() => null));
    return res;
  }
  const text = await res.text();
  const data = text ? JSON.parse(text) : null;
  if (!res.ok) throw new ApiError(res.status, data);
  return data;
}

export const api = {
  get: (path, query) => send('GET', path, { query }),
  // A create: one Idempotency-Key per user action (pass the same key again to retry safely).
  create: (path, body, key) => send('POST', path, { body: body === undefined ? {} : body, headers: { 'Idempotency-Key': key || newKey() } }),
  post: (path, body) => send('POST', path, { body: body === undefined ? {} : body }),
  patch: (path, version, body) => send('PATCH', path, { body: Object.assign({}, body, { version }) }),
  del: (path) => send('DELETE', path),
  upload: (path, form) => send('POST', path, { body: form }),
  download: (path, query) => send('GET', path, { query, raw: true }),
  async login(username, password) {
    const answer = await send('POST', '/auth/password-login', { body: { username, password } });
    setTokens(answer);
    return answer.user;
  },
  async logout() {
    const { refresh, access } = session;
    clearSession();
    if (refresh) {
      await fetch(BASE + '/auth/logout', {
        method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + access },
        body: JSON.stringify({ refresh_token: refresh }),
      }).catch(() => {});
    }
  },
};

// All pages of a list (cursor paging), up to `max` items.
export async function listAll(path, query, max = 500) {
  const items = [];
  let cursor = null;
  do {
    const page = await api.get(path, Object.assign({ limit: 100 }, query || {}, cursor ? { cursor } : {}));
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor && items.length < max);
  return items;
}
