const app = getApp();
const session = require('../../utils/session');
const format = require('../../utils/format');
const lifecycle = require('../../utils/lifecycle');

const LEVELS = [{ value: '', label: '未定' }, { value: 'A', label: 'A' }, { value: 'B', label: 'B' }, { value: 'C', label: 'C' }];

function moves(stage, allowed) {
  return (allowed || lifecycle.allowed(stage)).map((to) => ({ to, label: format.stage(to), reason: lifecycle.needsReason(stage, to) }));
}

// A lead in full: details, the timeline in words (newest first, more at the bottom), edit, the
// stage moves the lifecycle allows, the phone revealed (audited) and called, and what comes next:
// a follow-up, a task, a contract, release to the pool; a manager reassigns. Offline, the copy of
// the last /sync shows with its follow-ups.
Page({
  data: {
    lead: null, events: [], cursor: null, loadingMore: false, error: '', offline: false, manager: false,
    moves: [], phone: '', editing: false, form: {}, levels: LEVELS, levelIndex: 0, saving: false
  },
  onLoad(q) { this.leadId = q.id; },
  onShow() {
    const user = app.api.user();
    if (!session.guard(wx, user, 'staff')) return;
    this.setData({ manager: session.isManager(user) });
    this.load();
  },
  onPullDownRefresh() { this.load().then(() => wx.stopPullDownRefresh()); },
  load() {
    this.setData({ error: '' });
    return Promise.all([app.api.get('/leads/' + this.leadId), app.api.get('/leads/' + this.leadId + '/timeline', { limit: 30 })])
      .then(([lead, page]) => this.show(lead, page.items.map((e) => format.event(e)), page.next_cursor || null, false))
      .catch((e) => {
        const cached = e.code === 'network.error' ? app.api.localLead(this.leadId) : null;
        if (cached) this.show(cached, app.api.localFollowups(this.leadId).map((f) => format.followup(f)), null, true);
        else this.setData({ error: format.errorText(e) });
      });
  },
  show(lead, events, cursor, offline) {
    this.raw = lead;
    this.setData({ lead: format.lead(lead), events, cursor, offline, moves: moves(lead.stage), phone: '' });
  },
  onReachBottom() {
    if (!this.data.cursor || this.data.loadingMore) return;
    this.setData({ loadingMore: true });
    app.api.get('/leads/' + this.leadId + '/timeline', { limit: 30, cursor: this.data.cursor })
      .then((page) => this.setData({ events: this.data.events.concat(page.items.map((e) => format.event(e))), cursor: page.next_cursor || null, loadingMore: false }))
      .catch((e) => this.setData({ error: format.errorText(e), loadingMore: false }));
  },

  // -- phone: reveal (audited on the server), then call
  reveal() {
    return app.api.post('/leads/' + this.leadId + '/reveal', { field: 'phone' }, { noKey: true, retry: false })
      .then((r) => { this.setData({ phone: r.value }); return r.value; })
      .catch((e) => { this.setData({ error: format.errorText(e) }); return null; });
  },
  call() {
    const dial = (n) => { if (n) wx.makePhoneCall({ phoneNumber: n }); };
    if (this.data.phone) dial(this.data.phone);
    else this.reveal().then(dial);
  },

  // -- stage
  move(e) {
    const to = e.currentTarget.dataset.to;
    const from = this.raw.stage;
    const send = (reason) => app.api.post('/leads/' + this.leadId + '/stage', { to, reason: reason || undefined, version: this.raw.version }, { noKey: true, retry: false })
      .then((lead) => { wx.showToast({ title: '已改为' + format.stage(to), icon: 'none' }); this.raw = lead; this.load(); })
      .catch((err) => {
        const allowed = lifecycle.allowedFromError(err);
        if (allowed) this.setData({ moves: moves(from, allowed) });
        this.setData({ error: format.errorText(err) });
        if (err.status === 412 || err.code === 'request.stale') this.load();
      });
    if (!lifecycle.needsReason(from, to)) { send(); return; }
    wx.showModal({
      title: '改为“' + format.stage(to) + '”', editable: true, placeholderText: '请填写原因',
      success: (r) => { if (r.confirm && String(r.content || '').trim()) send(String(r.content).trim()); else if (r.confirm) this.setData({ error: '请填写原因' }); }
    });
  },

  // -- edit
  edit() {
    const l = this.raw;
    this.setData({
      editing: true, error: '',
      form: { name: format.text(l.name), company: format.text(l.company), email: format.text(l.email), city: format.text(l.city), tags: (l.tags || []).join(' '), notes: format.text(l.notes) },
      levelIndex: Math.max(0, LEVELS.findIndex((x) => x.value === (l.level || '')))
    });
  },
  cancelEdit() { this.setData({ editing: false }); },
  onField(e) { this.setData({ ['form.' + e.currentTarget.dataset.field]: e.detail.value }); },
  onLevel(e) { this.setData({ levelIndex: Number(e.detail.value) }); },
  saveEdit() {
    const f = this.data.form;
    if (!String(f.name || '').trim()) { this.setData({ error: '请填写姓名' }); return; }
    const blank = (v) => (String(v || '').trim() ? String(v).trim() : null);
    const body = {
      version: this.raw.version, name: f.name.trim(), company: blank(f.company), email: blank(f.email), city: blank(f.city), notes: blank(f.notes),
      tags: String(f.tags || '').split(/[\s,，、]+/).filter(Boolean), level: LEVELS[this.data.levelIndex].value || null
    };
    this.setData({ saving: true, error: '' });
    app.api.patch('/leads/' + this.leadId, body)
      .then(() => { this.setData({ editing: false, saving: false }); wx.showToast({ title: '已保存', icon: 'success' }); this.load(); })
      .catch((e) => this.setData({ saving: false, error: format.errorText(e) }));
  },

  // -- next steps
  followup() { wx.navigateTo({ url: '/pages/followup/followup?id=' + this.leadId }); },
  newTask() { wx.navigateTo({ url: '/pages/task-edit/task-edit?lead_id=' + this.leadId }); },
  contracts() { wx.navigateTo({ url: '/pages/contracts/contracts?lead_id=' + this.leadId }); },
  tickets() { wx.navigateTo({ url: '/pages/tickets/tickets?lead_id=' + this.leadId }); },
  newContract() { wx.navigateTo({ url: '/pages/contract-edit/contract-edit?lead_id=' + this.leadId }); },
  reassign() { wx.navigateTo({ url: '/pages/reassign/reassign?id=' + this.leadId }); },
  release() {
    wx.showModal({ title: '释放到公海', editable: true, placeholderText: '原因（必填）', success: (r) => {
      if (!r.confirm) return;
      if (!String(r.content || '').trim()) { this.setData({ error: '释放需要填写原因' }); return; }
      app.api.post('/leads/' + this.leadId + '/release', { reason: String(r.content).trim() }, { noKey: true, retry: false })
        .then(() => { wx.showToast({ title: '已释放到公海', icon: 'none' }); wx.navigateBack(); })
        .catch((e) => this.setData({ error: format.errorText(e) }));
    } });
  }
});
