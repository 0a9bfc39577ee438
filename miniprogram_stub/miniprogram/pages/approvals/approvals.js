const app = getApp();

// The approval inbox (oldest first): approve, reject or return with a comment. Decisions carry the
// contract's version: a stale one (someone decided first) gets 412 and the list reloads.
Page({
  data: { items: [], cursor: null, comment: '', error: '' },
  onShow() { this.load(true); },
  onReachBottom() { if (this.data.cursor) this.load(false); },
  load(fresh) {
    app.api.get('/approvals', { status: 'pending', limit: 20, cursor: fresh ? undefined : this.data.cursor })
      .then((page) => this.setData({ items: (fresh ? [] : this.data.items).concat(page.items), cursor: page.next_cursor, error: '' }))
      .catch((e) => this.setData({ error: e.message }));
  },
  onComment(e) { this.setData({ comment: e.detail.value }); },
  decide(e) {
    const { index, decision } = e.currentTarget.dataset;
    const item = this.data.items[index];
    if (decision !== 'approve' && !this.data.comment) { this.setData({ error: '驳回或退回请填写意见' }); return; }
    app.api.post('/contracts/' + item.contract_id + '/' + decision, { version: item.version, comment: this.data.comment }, { noKey: true, retry: false })
      .then(() => { this.setData({ comment: '' }); wx.showToast({ title: '已处理' }); this.load(true); })
      .catch((err) => { this.setData({ error: err.message }); if (err.status === 412 || err.status === 409) this.load(true); });
  }
});
