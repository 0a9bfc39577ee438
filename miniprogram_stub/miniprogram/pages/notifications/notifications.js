const app = getApp();
const config = require('../../config');

// The in-app inbox, and the subscribe-message opt-in: each acceptance allows one WeChat message
// of that template, so the page asks again and reports every acceptance to the server.
Page({
  data: { items: [], cursor: null, unreadOnly: false, error: '', remaining: {} },
  onShow() { this.load(true); },
  onReachBottom() { if (this.data.cursor) this.load(false); },
  toggle() { this.setData({ unreadOnly: !this.data.unreadOnly }); this.load(true); },
  load(fresh) {
    app.api.get('/notifications', { limit: 20, unread: this.data.unreadOnly ? 'true' : undefined, cursor: fresh ? undefined : this.data.cursor })
      .then((page) => this.setData({ items: (fresh ? [] : this.data.items).concat(page.items), cursor: page.next_cursor, error: '' }))
      .catch((e) => this.setData({ error: e.message }));
  },
  read(e) {
    const n = this.data.items[e.currentTarget.dataset.index];
    app.api.post('/notifications/' + n.id + '/read', null, { noKey: true, retry: true }).then(() => this.load(true));
  },
  subscribe() {
    const ids = Object.keys(config.templates).map((k) => config.templates[k]);
    wx.requestSubscribeMessage({
      tmplIds: ids.slice(0, 3),
      success: (res) => {
        const accepted = ids.filter((id) => res[id] === 'accept');
        Promise.all(accepted.map((id) => app.api.post('/me/subscriptions', { template_id: id, accepted: true }, { noKey: true, retry: false })))
          .then((out) => {
            const remaining = {};
            out.forEach((r) => { remaining[r.template_id] = r.remaining; });
            this.setData({ remaining });
            wx.showToast({ title: '已订阅 ' + accepted.length + ' 条提醒', icon: 'none' });
          })
          .catch((err) => this.setData({ error: err.message }));
      },
      fail: (err) => this.setData({ error: err.errMsg })
    });
  }
});
