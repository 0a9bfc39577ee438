const app = getApp();
const session = require('../../utils/session');
const view = require('../../lib/view');
const format = require('../../utils/format');

function nowParts() {
  const now = Date.now();
  return { date: format.today(now), time: format.time(now) };
}

// Record a payment received on a contract (?contract_id=): managers of its team, admins and users
// with finance rights. The amount defaults to what is still outstanding; more than that is refused
// by the server (422). A create with an Idempotency-Key: a retry never records it twice.
Page({
  data: { c: null, amount: '', date: '', time: '', methods: view.PAYMENT_METHODS, methodIndex: 0, reference: '', error: '', saving: false, done: null },
  onLoad(q) {
    if (!session.guard(wx, app.api.user(), 'staff')) return;
    this.contractId = q.contract_id;
    const now = nowParts();
    this.setData({ date: now.date, time: now.time });
    app.api.get('/contracts/' + this.contractId)
      .then((raw) => {
        const c = view.contractView(raw, app.api.tokens().user);
        this.setData({ c, amount: raw.outstanding_fen ? view.fenToInput(raw.outstanding_fen) : '' });
      })
      .catch((e) => this.setData({ error: e.message }));
  },
  onAmount(e) { this.setData({ amount: e.detail.value }); },
  onDate(e) { this.setData({ date: e.detail.value }); },
  onTime(e) { this.setData({ time: e.detail.value }); },
  onMethod(e) { this.setData({ methodIndex: Number(e.detail.value) }); },
  onReference(e) { this.setData({ reference: e.detail.value }); },
  save() {
    if (this.data.saving) return;
    const amountFen = view.toFen(this.data.amount);
    if (!amountFen) { this.setData({ error: '请填写正确的金额（元，最多两位小数）' }); return; }
    const body = {
      amount_fen: amountFen,
      received_at: format.isoAt(this.data.date, this.data.time),
      method: view.PAYMENT_METHODS[this.data.methodIndex].value
    };
    if (this.data.reference.trim()) body.reference = this.data.reference.trim();
    this.setData({ saving: true, error: '' });
    app.api.post('/contracts/' + this.contractId + '/payments', body)
      .then((p) => {
        this.setData({ done: { amount: format.money(p.amount_fen), paid: format.money(p.paid_fen), outstanding: format.money(p.outstanding_fen), settled: p.paid } });
        wx.showToast({ title: '已登记回款' });
      })
      .catch((e) => this.setData({ error: e.status === 403 ? '只有主管、管理员或财务可以登记回款' : e.message }))
      .then(() => this.setData({ saving: false }));
  },
  back() { wx.navigateBack(); }
});
