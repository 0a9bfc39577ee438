const app = getApp();

// Open tasks, soonest due first; completing twice is harmless, so it may be retried.
Page({
  data: { items: [], cursor: null, error: '' },
  onShow() { this.load(true); },
  onReachBottom() { if (this.data.cursor) this.load(false); },
  load(fresh) {
    app.api.get('/tasks', { status: 'open', limit: 20, cursor: fresh ? undefined : this.data.cursor })
      .then((page) => this.setData({ items: (fresh ? [] : this.data.items).concat(page.items), cursor: page.next_cursor, error: '' }))
      .catch((e) => this.setData({ error: e.message }));
  },
  complete(e) {
    const task = this.data.items[e.currentTarget.dataset.index];
    app.api.post('/tasks/' + task.id + '/complete', { version: task.version }, { noKey: true, retry: true })
      .then(() => this.load(true)).catch((err) => this.setData({ error: err.message }));
  },
  open(e) {
    const task = this.data.items[e.currentTarget.dataset.index];
    if (task.lead_id) wx.navigateTo({ url: '/pages/lead/lead?id=' + task.lead_id });
  }
});
