const app = getApp();
const session = require('../../utils/session');
const { listMethods, LIST_DATA } = require('../../lib/list');
const view = require('../../lib/view');
const format = require('../../utils/format');

// The approval inbox (oldest first), each item with the whole contract: parties, dates, amount,
// payment plan, notes and the history so far; approve, reject or return with a comment.
// Decisions carry the contract's version: a stale one (someone decided first) gets 412 and the
// list reloads. Managers and admins only: anyone else sees why, not a bare 403.
Page(Object.assign(listMethods({
  fetch(cursor) {
    return app.api.get('/approvals', { status: 'pending', limit: 10, cursor })
      .then((page) => Promise.all(page.items.map((item) => app.api.get('/contracts/' + item.contract_id)
        .then((c) => ({ item, c }), () => ({ item, c: null }))))
        .then((items) => ({ items, next_cursor: page.next_cursor })));
  },
  map(pair) {
    const me = app.api.tokens().user;
    const item = pair.item;
    return {
      id: item.contract_id, version: pair.c ? pair.c.version : item.version, title: item.title, leadName: item.lead_name,
      amount: format.money(item.amount_fen), submitter: item.submitter_name, waiting: format.when(item.waiting_since),
      stepText: '第 ' + (item.step + 1) + '/' + item.steps_total + ' 步',
      c: pair.c ? view.contractView(pair.c, me) : null, open: false
    };
  }
}), {
  data: Object.assign({}, LIST_DATA, { comments: {}, busyId: '' }),
  onShow() { if (session.guard(wx, app.api.user(), 'manager')) this.reload(); },
  toggle(e) {
    const i = e.currentTarget.dataset.index;
    this.setData({ ['items[' + i + '].open']: !this.data.items[i].open });
  },
  onComment(e) { this.setData({ ['comments.' + e.currentTarget.dataset.id]: e.detail.value }); },
  openContract(e) { wx.navigateTo({ url: '/pages/contract/contract?id=' + e.currentTarget.dataset.id }); },
  decide(e) {
    const { index, decision } = e.currentTarget.dataset;
    const item = this.data.items[index];
    const comment = String(this.data.comments[item.id] || '').trim();
    if (decision !== 'approve' && !comment) { this.setData({ error: '驳回或退回请填写意见' }); return; }
    if (this.data.busyId) return;
    this.setData({ busyId: item.id, error: '' });
    app.api.post('/contracts/' + item.id + '/' + decision, { version: item.version, comment }, { noKey: true, retry: false })
      .then(() => {
        this.setData({ ['comments.' + item.id]: '' });
        wx.showToast({ title: { approve: '已同意', reject: '已驳回', return: '已退回' }[decision] });
        this.reload();
      })
      .catch((err) => {
        this.setData({ error: err.status === 412 ? '合同已被他人处理或更新，已刷新' : err.message });
        if (err.status === 412 || err.status === 409 || err.status === 403) this.reload();
      })
      .then(() => this.setData({ busyId: '' }));
  }
}));
