const app = getApp();
const session = require('../../utils/session');
const view = require('../../lib/view');
const format = require('../../utils/format');

const COUNTS = [1, 2, 3, 4, 6, 12];

function dayBefore(ymd) {
  const t = Date.parse(ymd + 'T00:00:00Z') - 86400000;
  return new Date(t).toISOString().slice(0, 10);
}

// Draft a contract from a lead (?lead_id=) or edit a draft (?id=): title, amount in yuan, dates,
// a payment plan (split evenly into 1–12 instalments, each date and amount editable; it must add
// up to the amount) and notes. A create carries an Idempotency-Key, so a retry never drafts two.
Page({
  data: {
    leadName: '', title: '', amount: '', start: '', end: '', notes: '',
    counts: COUNTS.map((n) => n + ' 期'), countIndex: 0, plan: [], planTotal: '', planOk: true,
    editing: false, error: '', saving: false
  },
  onLoad(q) {
    if (!session.guard(wx, app.api.user(), 'staff')) return;
    this.contractId = q.id || null;
    this.leadId = q.lead_id || null;
    this.setData({ editing: Boolean(this.contractId) });
    if (wx.setNavigationBarTitle) wx.setNavigationBarTitle({ title: this.contractId ? '编辑合同' : '起草合同' });
    if (this.contractId) {
      app.api.get('/contracts/' + this.contractId).then((c) => {
        this.contract = c;
        this.leadId = c.lead_id;
        const plan = (c.payment_plan || []).map((p) => ({ due: p.due_date, amount: view.fenToInput(p.amount_fen) }));
        const i = COUNTS.indexOf(plan.length);
        this.setData({
          leadName: c.lead_name || '', title: c.title, amount: view.fenToInput(c.amount_fen), start: c.start_date, end: c.end_date,
          notes: c.notes || '', plan, countIndex: i >= 0 ? i : 0
        });
        this.check();
        if (c.status !== 'draft') this.setData({ error: '只有草稿可以修改' });
      }).catch((e) => this.setData({ error: e.message }));
    } else if (this.leadId) {
      const start = format.today();
      this.setData({ start, end: dayBefore(view.addYears(start, 1)) });
      app.api.get('/leads/' + this.leadId).then((lead) => {
        this.setData({ leadName: lead.name || '', title: this.data.title || ((lead.company || lead.name || '') + ' 服务合同') });
      }).catch((e) => this.setData({ error: e.message }));
    } else {
      this.setData({ error: '请从线索详情起草合同' });
    }
  },
  onTitle(e) { this.setData({ title: e.detail.value }); },
  onAmount(e) { this.setData({ amount: e.detail.value }); this.split(); },
  onStart(e) { this.setData({ start: e.detail.value }); this.split(); },
  onEnd(e) { this.setData({ end: e.detail.value }); },
  onNotes(e) { this.setData({ notes: e.detail.value }); },
  onCount(e) { this.setData({ countIndex: Number(e.detail.value) }); this.split(); },
  onPlanDate(e) { this.setData({ ['plan[' + e.currentTarget.dataset.index + '].due']: e.detail.value }); },
  onPlanAmount(e) { this.setData({ ['plan[' + e.currentTarget.dataset.index + '].amount']: e.detail.value }); this.check(); },
  // An even split of the amount over the chosen number of instalments, monthly from the start.
  split() {
    const fen = view.toFen(this.data.amount);
    if (!fen || !this.data.start) { this.setData({ plan: [], planTotal: '', planOk: true }); return; }
    const plan = view.evenPlan(fen, COUNTS[this.data.countIndex], this.data.start)
      .map((p) => ({ due: p.due_date, amount: view.fenToInput(p.amount_fen) }));
    this.setData({ plan });
    this.check();
  },
  check() {
    const total = this.data.plan.reduce((sum, p) => sum + (view.toFen(p.amount) || 0), 0);
    const fen = view.toFen(this.data.amount);
    this.setData({ planTotal: format.money(total), planOk: !this.data.plan.length || total === fen });
  },
  save() {
    if (this.data.saving) return;
    const title = this.data.title.trim();
    const amountFen = view.toFen(this.data.amount);
    if (!title) { this.setData({ error: '请填写合同名称' }); return; }
    if (!amountFen) { this.setData({ error: '请填写正确的金额（元，最多两位小数）' }); return; }
    if (!this.data.start || !this.data.end || this.data.end < this.data.start) { this.setData({ error: '请选择合同期，结束日期不能早于开始日期' }); return; }
    const plan = this.data.plan.map((p) => ({ due_date: p.due, amount_fen: view.toFen(p.amount) }));
    if (plan.some((p) => !p.amount_fen || !p.due_date)) { this.setData({ error: '每期回款都要有日期和金额' }); return; }
    if (plan.length && plan.reduce((s, p) => s + p.amount_fen, 0) !== amountFen) { this.setData({ error: '回款计划合计须等于合同金额' }); return; }
    const body = { title, amount_fen: amountFen, start_date: this.data.start, end_date: this.data.end };
    if (plan.length) body.payment_plan = plan;
    const notes = this.data.notes.trim();
    this.setData({ saving: true, error: '' });
    let done;
    if (this.contractId) {
      done = app.api.patch('/contracts/' + this.contractId, Object.assign(body, { version: this.contract.version, notes: notes || null }));
    } else {
      if (notes) body.notes = notes;
      done = app.api.post('/contracts', Object.assign({ lead_id: this.leadId }, body));
    }
    done
      .then((c) => {
        wx.showToast({ title: '已保存草稿' });
        if (this.contractId) wx.navigateBack();
        else wx.redirectTo({ url: '/pages/contract/contract?id=' + c.id });
      })
      .catch((e) => {
        const fields = (e.details || []).map((d) => d.field).filter(Boolean);
        this.setData({ error: (e.status === 412 ? '合同已被修改，请返回刷新' : e.message) + (fields.length ? '（' + fields.join('、') + '）' : '') });
      })
      .then(() => this.setData({ saving: false }));
  }
});
