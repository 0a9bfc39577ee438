const app = getApp();
const session = require('../../utils/session');
const format = require('../../utils/format');

const EDIT_PAGES = { capture: '/pages/capture/capture', followup: '/pages/followup/followup', ticket: '/pages/ticket-new/ticket-new' };

function view(entry) {
  return {
    id: entry.id,
    label: entry.label || (entry.method + ' ' + entry.path),
    reason: entry.error ? format.text(entry.error.message, '服务器拒绝了这条记录') : '',
    when: format.when(entry.refusedAt || entry.queuedAt),
    editable: Boolean(entry.kind && EDIT_PAGES[entry.kind])
  };
}

// "我的": the account, the workbench (tickets; a manager's approvals and team reports; a
// customer's 联系售后 and tickets), work saved offline that
// is still waiting, the "not sent" list (what the server refused on replay, with its reason: edit
// or discard), and logout — which asks first when unsent work would be lost.
Page({
  data: { user: null, roleText: '', manager: false, staff: false, customer: false, online: true, queued: [], notSent: [], error: '' },
  onShow() {
    const user = app.api.user();
    if (!session.guard(wx, user, 'any')) return;
    session.selectTab(this, user);
    this.refresh();
    if (!this.unwatch) this.unwatch = app.api.onChange(() => this.refresh());
  },
  onHide() { if (this.unwatch) { this.unwatch(); this.unwatch = null; } },
  onUnload() { this.onHide(); },
  onPullDownRefresh() { app.api.flush().catch(() => {}).then(() => { this.refresh(); wx.stopPullDownRefresh(); }); },
  refresh() {
    const user = app.api.user();
    if (!user) return;
    const p = app.api.pending();
    this.setData({
      user: { name: format.text(user.name, user.username || ''), username: format.text(user.username) },
      roleText: format.role(user.role),
      manager: session.isManager(user),
      staff: session.isStaff(user),
      customer: user.role === 'customer',
      online: app.api.isOnline(),
      queued: p.queued.map(view),
      notSent: p.notSent.map(view)
    });
  },
  sendNow() { app.api.flush().then(() => this.refresh()).catch((e) => this.setData({ error: format.errorText(e) })); },
  edit(e) {
    const entry = app.api.peekNotSent(e.currentTarget.dataset.id);
    if (!entry || !EDIT_PAGES[entry.kind]) return;
    wx.navigateTo({ url: EDIT_PAGES[entry.kind] + '?resend=' + encodeURIComponent(entry.id) });
  },
  discard(e) {
    const id = e.currentTarget.dataset.id;
    wx.showModal({
      title: '放弃这条记录？', content: '放弃后无法恢复。', confirmText: '放弃', confirmColor: '#d4380d',
      success: (r) => { if (r.confirm) { app.api.discard(id); this.refresh(); } }
    });
  },
  openApprovals() { wx.navigateTo({ url: '/pages/approvals/approvals' }); },
  openDashboard() { wx.navigateTo({ url: '/pages/dashboard/dashboard' }); },
  openTickets() { wx.navigateTo({ url: '/pages/tickets/tickets' }); },
  contactService() { wx.navigateTo({ url: '/pages/ticket-new/ticket-new' }); },
  logout() {
    const p = app.api.pending();
    const unsent = p.queued.length + p.notSent.length;
    const go = () => app.api.logout().then(() => { app.globalData.user = null; wx.reLaunch({ url: session.LOGIN }); });
    if (!unsent) { go(); return; }
    wx.showModal({
      title: '还有未发送的记录',
      content: '有 ' + unsent + ' 条记录还没有发送到服务器，退出登录会删除它们。确定退出？',
      confirmText: '仍然退出', confirmColor: '#d4380d',
      success: (r) => { if (r.confirm) go(); }
    });
  }
});
