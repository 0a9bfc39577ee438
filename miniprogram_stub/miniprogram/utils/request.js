// Pure request logic (no wx): building requests, idempotency keys, retry and back-off decisions.
'use strict';

const IDEMPOTENT_METHODS = ['GET', 'HEAD', 'PUT', 'DELETE', 'OPTIONS'];
const RETRY_STATUSES = [502, 503, 504];

function uuid4(random) {
  const rnd = random || Math.random;
  return 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (c) => {
    const r = Math.floor(rnd() * 16);
    return (c === 'x' ? r : (r & 0x3) | 0x8).toString(16);
  });
}

function isCreate(method) {
  return String(method).toUpperCase() === 'POST';
}

function buildQuery(query) {
  if (!query) return '';
  const parts = Object.keys(query)
    .filter((k) => query[k] !== undefined && query[k] !== null && query[k] !== '')
    .map((k) => encodeURIComponent(k) + '=' + encodeURIComponent(query[k]));
  return parts.length ? '?' + parts.join('&') : '';
}

// A request description, ready for wx.request. Every POST gets an Idempotency-Key, chosen once
// and kept for all its retries (and when it is queued offline).
function buildRequest(config, opts, token, newKey) {
  const method = String(opts.method || 'GET').toUpperCase();
  const header = Object.assign({ 'Content-Type': 'application/json' }, opts.header || {});
  if (token && opts.auth !== false) header.Authorization = 'Bearer ' + token;
  let key = opts.idempotencyKey || header['Idempotency-Key'];
  if (isCreate(method) && !key && !opts.noKey) key = (newKey || uuid4)();
  if (key) header['Idempotency-Key'] = key;
  const path = opts.path.indexOf('/') === 0 ? opts.path : '/' + opts.path;
  const prefix = opts.raw ? '' : (config.apiPrefix || '');
  return {
    url: config.baseUrl.replace(/\/$/, '') + prefix + path + buildQuery(opts.query),
    method,
    header,
    data: opts.data,
    timeout: config.timeoutMs || 15000,
    idempotencyKey: key || null
  };
}

// Safe to send again: reads, creates with a key, or requests the caller marked (own ids, harmless actions).
function isRetrySafe(req, opts) {
  if (opts && opts.retry === false) return false;
  if (opts && opts.retry === true) return true;
  if (IDEMPOTENT_METHODS.indexOf(req.method) >= 0) return true;
  return Boolean(req.idempotencyKey) && opts && opts.idempotent !== false;
}

// What to do after one try: {action: 'done'|'refresh'|'retry'|'fail'|'queue', delayMs?}
function decide(outcome, ctx) {
  const attempt = ctx.attempt || 0;
  const max = ctx.maxRetries === undefined ? 5 : ctx.maxRetries;
  if (outcome.networkError) {
    // Known to be offline (no network at all): queue or fail now, no back-off to sit through.
    if (!ctx.offline && ctx.safe && attempt < max) return { action: 'retry', delayMs: backoffDelay(attempt, ctx.random) };
    if (ctx.queueable) return { action: 'queue' };
    return { action: 'fail' };
  }
  const status = outcome.statusCode;
  if (status === 401 && ctx.auth !== false && !ctx.refreshed && ctx.hasRefreshToken) return { action: 'refresh' };
  if (RETRY_STATUSES.indexOf(status) >= 0 && ctx.safe && attempt < max) {
    const retryAfter = Number(outcome.retryAfter);
    return { action: 'retry', delayMs: retryAfter > 0 ? retryAfter * 1000 : backoffDelay(attempt, ctx.random) };
  }
  if (status >= 200 && status < 300) return { action: 'done' };
  return { action: 'fail' };
}

// Exponential back-off with jitter: 500 ms, 1 s, 2 s, 4 s … capped at 30 s, ±20 %.
function backoffDelay(attempt, random) {
  const base = Math.min(30000, 500 * Math.pow(2, attempt));
  const jitter = ((random || Math.random)() * 0.4 - 0.2) * base;
  return Math.round(base + jitter);
}

function errorOf(res) {
  const body = res && res.data;
  if (body && body.error) return { status: res.statusCode, code: body.error.code, message: body.error.message, details: body.error.details };
  return { status: res ? res.statusCode : 0, code: res ? 'http.' + res.statusCode : 'network.error', message: 'request failed' };
}

module.exports = { uuid4, isCreate, buildQuery, buildRequest, isRetrySafe, decide, backoffDelay, errorOf, RETRY_STATUSES };
