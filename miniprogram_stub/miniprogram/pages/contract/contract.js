const app = getApp();

// One contract, opened from a renewal, payment or approval notification
// (pages/contract/contract?id=<contract id>): title, amount, dates, status, the approval steps and
// the payment plan. Money received is shown only to those who may see it (null otherwise).
const STATUS = { draft: '草稿', pending: '审批中', active: '生效中', rejected: '已驳回', ended: '已到期' };
const STEP = { waiting: '待审批', current: '审批中', approved: '已通过', rejected: '已驳回', returned: '已退回', skipped: '已跳过' };

function yuan(fen) { return fen === null || fen === undefined ? '' : '¥' + (fen / 100).toFixed(2); }

Page({
  data: { contract: null, steps: [], plan: [], error: '' },
  onLoad(q) { this.id = q.id; },
  onShow() { this.load(); },
  onPullDownRefresh() { this.load(); wx.stopPullDownRefresh(); },
  load() {
    if (!this.id) { this.setData({ error: '缺少合同编号' }); return; }
    app.api.get('/contracts/' + this.id)
      .then((c) => this.setData({
        contract: Object.assign({}, c, {
          amount: yuan(c.amount_fen), paid: yuan(c.paid_fen), outstanding: yuan(c.outstanding_fen),
          overdue: c.overdue_fen ? yuan(c.overdue_fen) : '', statusText: STATUS[c.status] || c.status
        }),
        steps: (c.steps || []).map((s) => ({
          index: s.index + 1, state: STEP[s.state] || s.state,
          who: s.approvers.map((id) => (s.approver_names || {})[id] || id).join('、'),
          comment: (s.decisions || []).map((d) => d.comment).filter(Boolean).join('；')
        })),
        plan: (c.payment_plan || []).map((p) => ({ no: p.no, due: p.due_date, amount: yuan(p.amount_fen), paid: yuan(p.paid_fen) })),
        error: ''
      }))
      .catch((e) => this.setData({ error: e.message }));
  }
});
