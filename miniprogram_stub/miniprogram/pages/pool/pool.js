const app = getApp();

// The team's public pool: claim (409 if someone was faster, at capacity, daily limit, cooldown).
Page({
  data: { items: [], cursor: null, error: '' },
  onShow() { this.load(true); },
  onReachBottom() { if (this.data.cursor) this.load(false); },
  load(fresh) {
    app.api.get('/pool', { limit: 20, cursor: fresh ? undefined : this.data.cursor })
      .then((page) => this.setData({ items: (fresh ? [] : this.data.items).concat(page.items), cursor: page.next_cursor, error: '' }))
      .catch((e) => this.setData({ error: e.message }));
  },
  claim(e) {
    const id = e.currentTarget.dataset.id;
    app.api.post('/leads/' + id + '/claim', null, { noKey: true, retry: false })
      .then(() => { wx.showToast({ title: '已领取' }); this.load(true); })
      .catch((err) => this.setData({ error: err.message }));
  }
});
