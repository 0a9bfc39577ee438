// Cursor-paged lists for the pages: pull-to-refresh reloads, reaching the bottom loads the next
// page, and the page data says what to show (loading, empty, error, done). Mixed into a Page:
//   Page(Object.assign(listMethods({ fetch(cursor) → Promise<{items, next_cursor}>, map?, offlineText? }), {...}))
// offlineText: what the list says when the phone has no network (default: pull down to retry).
// The page's data gets: items, cursor, loading, done, error, empty.
'use strict';

const format = require('../utils/format');

const LIST_DATA = { items: [], cursor: null, loading: false, done: false, error: '', empty: false };

// The server's own reason (utils/format.js errorText), with what to do next on a list.
function message(e) {
  if (e && e.code === 'network.error') return '网络不可用，下拉重试';
  return format.errorText(e);
}

function listMethods(spec) {
  return {
    reload() {
      this._listToken = (this._listToken || 0) + 1;
      this.setData({ items: [], cursor: null, done: false, error: '', empty: false, loading: false });
      return this.more();
    },
    more() {
      if (this.data.loading || this.data.done) return Promise.resolve();
      const token = this._listToken || 0;
      this.setData({ loading: true, error: '' });
      return Promise.resolve()
        .then(() => spec.fetch.call(this, this.data.cursor || undefined))
        .then((page) => {
          if (token !== (this._listToken || 0)) return;
          const mapped = (page.items || []).map((item, i) => (spec.map ? spec.map.call(this, item, i) : item));
          const items = this.data.items.concat(mapped);
          this.setData({ items, cursor: page.next_cursor || null, done: !page.next_cursor, empty: items.length === 0, loading: false });
        })
        .catch((e) => {
          if (token !== (this._listToken || 0)) return;
          this.setData({ error: e && e.code === 'network.error' && spec.offlineText ? spec.offlineText : message(e), loading: false });
        });
    },
    onPullDownRefresh() {
      return this.reload().then(() => { if (typeof wx !== 'undefined' && wx.stopPullDownRefresh) wx.stopPullDownRefresh(); });
    },
    onReachBottom() { return this.more(); }
  };
}

module.exports = { listMethods, LIST_DATA, message };
