const app = getApp();
const session = require('../../utils/session');
const view = require('../../lib/view');

// One contract (from the list, a lead, a renewal / payment / approval notification, or a WeChat
// message: ?id=<contract id>): parties, dates, amount, status and its approval step, the approval
// history with comments, the payment plan with what each instalment received, the payments, the
// notes. Its owner edits and submits a draft and renews an active one; managers, admins and finance
// record payments; the current approver decides here too.
Page({
  data: { c: null, comment: '', error: '', busy: false, canPay: false },
  onLoad(q) { this.contractId = q.id; },
  onShow() { if (session.guard(wx, app.api.user(), 'staff')) this.load(); },
  onPullDownRefresh() { this.load().then(() => wx.stopPullDownRefresh()); },
  load() {
    if (!this.contractId) { this.setData({ error: '缺少合同编号' }); return Promise.resolve(); }
    const me = app.api.tokens().user || {};
    return app.api.get('/contracts/' + this.contractId)
      .then((raw) => {
        this.raw = raw;
        const c = view.contractView(raw, me);
        const payer = me.role === 'manager' || me.role === 'admin' || me.finance === true;
        this.setData({ c, canPay: payer && c.moneyVisible && raw.status === 'active' && !c.settled, error: '' });
      })
      .catch((e) => this.setData({ error: e.status === 404 ? '合同不存在或你无权查看' : e.message }));
  },
  act(promise, toast) {
    if (this.data.busy) return Promise.resolve();
    this.setData({ busy: true, error: '' });
    return promise()
      .then((res) => { wx.showToast({ title: toast }); return res; })
      .catch((e) => {
        this.setData({ error: e.status === 412 ? '合同已被他人更新，已刷新' : e.message });
        if (e.status === 412 || e.status === 409) this.load();
        return null;
      })
      .then((res) => { this.setData({ busy: false }); return res; });
  },
  submit() {
    this.act(() => app.api.post('/contracts/' + this.contractId + '/submit', { version: this.raw.version }, { noKey: true, retry: false }), '已提交审批')
      .then((res) => { if (res) this.load(); });
  },
  renew() {
    this.act(() => app.api.post('/contracts/' + this.contractId + '/renew', null, { noKey: true, retry: false }), '已生成续约草稿')
      .then((draft) => { if (draft) wx.navigateTo({ url: '/pages/contract-edit/contract-edit?id=' + draft.id }); });
  },
  edit() { wx.navigateTo({ url: '/pages/contract-edit/contract-edit?id=' + this.contractId }); },
  pay() { wx.navigateTo({ url: '/pages/payment/payment?contract_id=' + this.contractId }); },
  openLead() { if (this.raw) wx.navigateTo({ url: '/pages/lead/lead?id=' + this.raw.lead_id }); },
  openRenewal() { if (this.data.c.renewedBy) wx.navigateTo({ url: '/pages/contract/contract?id=' + this.data.c.renewedBy }); },
  openRenewed() { if (this.data.c.renews) wx.navigateTo({ url: '/pages/contract/contract?id=' + this.data.c.renews }); },
  onComment(e) { this.setData({ comment: e.detail.value }); },
  decide(e) {
    const decision = e.currentTarget.dataset.decision;
    const comment = this.data.comment.trim();
    if (decision !== 'approve' && !comment) { this.setData({ error: '驳回或退回请填写意见' }); return; }
    this.act(() => app.api.post('/contracts/' + this.contractId + '/' + decision, { version: this.raw.version, comment }, { noKey: true, retry: false }), '已处理')
      .then((res) => { if (res) { this.setData({ comment: '' }); this.load(); } });
  }
});
