// Merging a /sync page into the local copy: drop deleted leads (and their follow-ups) first, then
// upsert leads and follow-ups by id keeping the newer version. Pure; the store is a plain object
// {leads: {id: lead}, followups: {id: followup}, cursor}.
'use strict';

function newer(a, b) {
  if (!a) return true;
  if (b.version !== undefined && a.version !== undefined && b.version !== a.version) return b.version > a.version;
  return String(b.updated_at || b.at || '') >= String(a.updated_at || a.at || '');
}

function emptyStore() { return { leads: {}, followups: {}, tasks: {}, cursor: null }; }

function mergePage(store, page) {
  const out = {
    leads: Object.assign({}, store.leads), followups: Object.assign({}, store.followups), tasks: Object.assign({}, store.tasks),
    cursor: store.cursor || null
  };
  (page.deleted || []).forEach((id) => {
    delete out.leads[id];
    Object.keys(out.followups).forEach((fid) => { if (out.followups[fid].lead_id === id) delete out.followups[fid]; });
  });
  (page.leads || []).forEach((lead) => { if (newer(out.leads[lead.id], lead)) out.leads[lead.id] = lead; });
  (page.followups || []).forEach((f) => { if (newer(out.followups[f.id], f)) out.followups[f.id] = f; });
  (page.tasks || []).forEach((t) => { if (newer(out.tasks[t.id], t)) out.tasks[t.id] = t; });
  if (page.cursor) out.cursor = page.cursor;
  return out;
}

// Pull every page: fetchPage(since) resolves a SyncOut page. A cursor the server refuses
// (400 request.bad_cursor: too old, another user's, another deployment's) starts a fresh snapshot.
async function syncAll(store, fetchPage, maxPages) {
  try {
    return await pullPages(store, fetchPage, maxPages);
  } catch (err) {
    if (!err || err.code !== 'request.bad_cursor') throw err;
    return pullPages(emptyStore(), fetchPage, maxPages);
  }
}

async function pullPages(store, fetchPage, maxPages) {
  let current = store;
  for (let i = 0; i < (maxPages || 50); i += 1) {
    const page = await fetchPage(current.cursor || null);
    current = mergePage(current, page);
    if (!page.has_more) break;
  }
  return current;
}

function leadList(store) {
  return Object.keys(store.leads).map((id) => store.leads[id])
    .sort((a, b) => String(b.updated_at || '').localeCompare(String(a.updated_at || '')));
}

function followupsOf(store, leadId) {
  return Object.keys(store.followups || {}).map((id) => store.followups[id]).filter((f) => f.lead_id === leadId)
    .sort((a, b) => String(b.occurred_at || b.created_at || '').localeCompare(String(a.occurred_at || a.created_at || '')));
}

module.exports = { emptyStore, newer, mergePage, syncAll, leadList, followupsOf };
