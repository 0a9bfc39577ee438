// The offline queue: writes made without a network, kept in storage (wx.setStorageSync) and
// replayed in order when the network returns, and the "not sent" list: queued writes the server
// refused on replay, each with the server's reason, until the user edits or discards them.
// Pure: the storage is injected ({get(key), set(key, v)}; api.js scopes it to the user).
'use strict';

const QUEUE_KEY = 'mpcrm.offlineQueue';
const NOT_SENT_KEY = 'mpcrm.notSent';

function list(storage, key) {
  const items = storage.get(key);
  return Array.isArray(items) ? items : [];
}

function load(storage) { return list(storage, QUEUE_KEY); }
function save(storage, items) { storage.set(QUEUE_KEY, items); }
function notSent(storage) { return list(storage, NOT_SENT_KEY); }

// Queue a write; it keeps its Idempotency-Key (or own id) so a replay can never apply it twice.
// `label` says what it is to the user ("跟进 · 王总"); `kind` which page edits it.
function enqueue(storage, entry, now) {
  const items = load(storage);
  if (entry.idempotencyKey && items.some((i) => i.idempotencyKey === entry.idempotencyKey)) return items;
  items.push({
    id: entry.id || entry.idempotencyKey,
    method: entry.method,
    path: entry.path,
    data: entry.data,
    idempotencyKey: entry.idempotencyKey || null,
    kind: entry.kind || null,
    label: entry.label || null,
    queuedAt: now || Date.now(),
    attempts: 0
  });
  save(storage, items);
  return items;
}

// Replay in order. send(entry) resolves {statusCode, data} (after the caller's own refresh of an
// expired token) or rejects on a network error.
// A network error, a 5xx/429 or a 401 that a refresh could not cure stops the replay: the entry
// and the rest wait, order kept. A 2xx removes it. Any other 4xx (validation, not found, conflict,
// forbidden) will never succeed as it is: it moves to the not-sent list with the server's reason.
async function replay(storage, send, now) {
  const report = { sent: 0, notSent: [], remaining: 0, stoppedBy: null };
  let items = load(storage);
  while (items.length) {
    const head = items[0];
    let res;
    try {
      res = await send(head);
    } catch (err) {
      head.attempts += 1;
      save(storage, items);
      report.stoppedBy = 'network';
      break;
    }
    const status = res.statusCode;
    if (status >= 500 || status === 429 || status === 401) {
      head.attempts += 1;
      save(storage, items);
      report.stoppedBy = status === 401 ? 'auth' : 'server';
      break;
    }
    items = items.slice(1);
    if (!(status >= 200 && status < 300)) {
      const error = (res.data && res.data.error) || { code: 'http.' + status, message: '服务器拒绝了这条记录' };
      const refused = Object.assign({}, head, {
        statusCode: status,
        error: { code: error.code, message: error.message, details: error.details || null },
        refusedAt: now || Date.now()
      });
      storage.set(NOT_SENT_KEY, notSent(storage).filter((i) => i.id !== head.id).concat([refused]));
      report.notSent.push(refused);
    } else {
      report.sent += 1;
    }
    save(storage, items);
  }
  report.remaining = items.length;
  return report;
}

// Take a refused write out of the not-sent list (to edit it, or to discard it): returns it.
function take(storage, id) {
  const items = notSent(storage);
  const found = items.find((i) => i.id === id) || null;
  if (found) storage.set(NOT_SENT_KEY, items.filter((i) => i.id !== id));
  return found;
}

module.exports = { QUEUE_KEY, NOT_SENT_KEY, load, save, enqueue, replay, notSent, take };
