// Merging a /sync page into the local copy: drop deleted leads (and their follow-ups) first, then
// upsert leads and follow-ups by id keeping the newer version. Pure; the store is a plain object
// {leads: {id: lead}, followups: {id: followup}, cursor}.
'use strict';

function newer(a, b) {
  if (!a) return true;
  if (b.version !== undefined && a.version !== undefined && b.version !== a.version) return b.version > a.version;
  return String(b.updated_at || b.at || '') >= String(a.updated_at || a.at || '');
}

function mergePage(store, page) {
  const out = { leads: Object.assign({}, store.leads), followups: Object.assign({}, store.followups), cursor: store.cursor || null };
  (page.deleted || []).forEach((id) => {
    delete out.leads[id];
    Object.keys(out.followups).forEach((fid) => { if (out.followups[fid].lead_id === id) delete out.followups[fid]; });
  });
  (page.leads || []).forEach((lead) => { if (newer(out.leads[lead.id], lead)) out.leads[lead.id] = lead; });
  (page.followups || []).forEach((f) => { if (newer(out.followups[f.id], f)) out.followups[f.id] = f; });
  if (page.cursor) out.cursor = page.cursor;
  return out;
}

// Pull every page: fetchPage(since) resolves a SyncOut page.
async function syncAll(store, fetchPage, maxPages) {
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

module.exports = { newer, mergePage, syncAll, leadList };
