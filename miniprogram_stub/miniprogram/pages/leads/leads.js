const app = getApp();

// My leads, newest activity first, with cursor paging (next_cursor) and pull-to-refresh.
Page({
  data: { items: [], cursor: null, done: false, loading: false, error: '', offline: false },
  onShow() {
    if (!app.api.tokens().access) { wx.navigateTo({ url: '/pages/login/login' }); return; }
    this.reload();
  },
  onPullDownRefresh() { this.reload().then(() => wx.stopPullDownRefresh()); },
  onReachBottom() { this.more(); },
  reload() {
    this.setData({ items: [], cursor: null, done: false });
    return this.more();
  },
  more() {
    if (this.data.loading || this.data.done) return Promise.resolve();
    this.setData({ loading: true, error: '' });
    return app.api.get('/leads', { limit: 20, cursor: this.data.cursor || undefined })
      .then((page) => this.setData({ items: this.data.items.concat(page.items), cursor: page.next_cursor, done: !page.next_cursor, offline: false }))
      .catch((e) => {
        // Offline: show what the last /sync stored.
        if (e.code === 'network.error') this.setData({ items: app.api.localLeads(), done: true, offline: true });
        else this.setData({ error: e.message });
      })
      .then(() => this.setData({ loading: false }));
  },
  open(e) { wx.navigateTo({ url: '/pages/lead/lead?id=' + e.currentTarget.dataset.id }); }
});
