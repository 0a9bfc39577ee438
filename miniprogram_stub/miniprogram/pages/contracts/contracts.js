const app = getApp();
const session = require('../../utils/session');
const { listMethods, LIST_DATA } = require('../../lib/list');
const view = require('../../lib/view');

const FILTERS = [
  { value: '', label: '全部' }, { value: 'draft', label: '草稿' }, { value: 'pending', label: '审批中' },
  { value: 'active', label: '生效中' }, { value: 'rejected', label: '已驳回' }, { value: 'ended', label: '已到期' }
];

// Contracts in my scope, or of one lead (?lead_id=), newest first; a status filter; tap to open.
Page(Object.assign(listMethods({
  fetch(cursor) {
    return app.api.get('/contracts', { limit: 20, cursor, status: this.data.status || undefined, lead_id: this.leadId || undefined });
  },
  map(c) { return view.contractView(c, app.api.tokens().user); }
}), {
  data: Object.assign({}, LIST_DATA, { filters: FILTERS, status: '', forLead: false }),
  onLoad(q) { this.leadId = q.lead_id || null; this.setData({ forLead: Boolean(this.leadId) }); },
  onShow() { if (session.guard(wx, app.api.user(), 'staff')) this.reload(); },
  pick(e) { this.setData({ status: e.currentTarget.dataset.value }); this.reload(); },
  open(e) { wx.navigateTo({ url: '/pages/contract/contract?id=' + e.currentTarget.dataset.id }); },
  create() { wx.navigateTo({ url: '/pages/contract-edit/contract-edit?lead_id=' + this.leadId }); }
}));
