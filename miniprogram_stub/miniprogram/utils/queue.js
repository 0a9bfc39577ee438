// The offline queue: writes made without a network, kept in storage (wx.setStorageSync) and
// replayed in order when the network returns. Pure: the storage is injected ({get(key), set(key, v)}).
'use strict';

const QUEUE_KEY = 'mpcrm.offlineQueue';

function load(storage) {
  const items = storage.get(QUEUE_KEY);
  return Array.isArray(items) ? items : [];
}

function save(storage, items) {
  storage.set(QUEUE_KEY, items);
}

// Queue a write; it keeps its Idempotency-Key (or own id) so a replay can never apply it twice.
function enqueue(storage, entry, now) {
  const items = load(storage);
  if (entry.idempotencyKey && items.some((i) => i.idempotencyKey === entry.idempotencyKey)) return items;
  items.push({
    id: entry.id || entry.idempotencyKey,
    method: entry.method,
    path: entry.path,
    data: entry.data,
    idempotencyKey: entry.idempotencyKey || null,
    queuedAt: now || Date.now(),
    attempts: 0
  });
  save(storage, items);
  return items;
}

// Replay in order. send(entry) resolves {statusCode} or rejects on a network error.
// A network error stops the replay (the rest waits, order kept); a 2xx or a 4xx that will never
// succeed (validation, not found, conflict) removes the entry; 5xx / 429 keeps it for later.
async function replay(storage, send) {
  const report = { sent: 0, dropped: [], remaining: 0, stoppedBy: null };
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
    if (status >= 500 || status === 429) {
      head.attempts += 1;
      save(storage, items);
      report.stoppedBy = 'server';
      break;
    }
    items = items.slice(1);
    save(storage, items);
    if (status >= 200 && status < 300) report.sent += 1;
    else report.dropped.push({ entry: head, statusCode: status, error: res.data && res.data.error });
  }
  report.remaining = items.length;
  return report;
}

module.exports = { QUEUE_KEY, load, save, enqueue, replay };
