const app = getApp();

// A lead in full and its timeline (newest first, cursor paging).
Page({
  data: { lead: null, events: [], cursor: null, error: '' },
  onLoad(q) { this.id = q.id; },
  onShow() {
    Promise.all([app.api.get('/leads/' + this.id), app.api.get('/leads/' + this.id + '/timeline', { limit: 30 })])
      .then(([lead, page]) => this.setData({ lead, events: page.items, cursor: page.next_cursor }))
      .catch((e) => this.setData({ error: e.message }));
  },
  onReachBottom() {
    if (!this.data.cursor) return;
    app.api.get('/leads/' + this.id + '/timeline', { limit: 30, cursor: this.data.cursor })
      .then((page) => this.setData({ events: this.data.events.concat(page.items), cursor: page.next_cursor }));
  },
  followup() { wx.navigateTo({ url: '/pages/followup/followup?id=' + this.id }); },
  release() {
    wx.showModal({ title: '释放到公海', editable: true, placeholderText: '原因', success: (r) => {
      if (!r.confirm || !r.content) return;
      app.api.post('/leads/' + this.id + '/release', { reason: r.content }, { retry: true })
        .then(() => wx.navigateBack()).catch((e) => this.setData({ error: e.message }));
    } });
  }
});
