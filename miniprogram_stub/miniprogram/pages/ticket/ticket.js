const app = getApp();
const session = require('../../utils/session');
const format = require('../../utils/format');
const view = require('../../lib/view');

// One ticket (?id=) with its conversation, oldest first. The customer reads the handler's replies
// (the server never sends them internal ones), replies, reopens a resolved ticket within the window
// and rates it (the survey). Staff see the due times and the breached badge, reply (with an
// "internal" switch for a note to colleagues), resolve; a manager assigns it to a service staff
// member of the team. Every change sends the version last read; a stale one reloads.
Page({
  data: {
    t: null, replies: [], reply: '', internal: false, staff: false, manager: false, people: [], personIndex: -1,
    error: '', busy: false, loading: false
  },
  onLoad(q) { this.ticketId = q.id; this.names = {}; },
  onShow() {
    const user = app.api.user();
    if (!session.guard(wx, user, 'any')) return;
    this.setData({ staff: session.isStaff(user), manager: session.isManager(user) });
    this.load();
  },
  onPullDownRefresh() { this.load().then(() => wx.stopPullDownRefresh()); },
  load() {
    if (!this.ticketId) { this.setData({ error: '缺少工单编号' }); return Promise.resolve(); }
    const me = app.api.user();
    this.names[me.id] = '我';
    this.setData({ loading: true });
    return Promise.all([app.api.get('/tickets/' + this.ticketId), this.loadPeople()])
      .then(([raw]) => {
        this.raw = raw;
        this.setData({
          loading: false, error: '',
          t: view.ticketView(raw, me, this.names),
          replies: (raw.replies || []).map((r) => view.replyView(r, me, this.names))
        });
      })
      .catch((e) => this.setData({ loading: false, error: e.status === 404 ? '工单不存在或你无权查看' : format.errorText(e) }));
  },
  // A manager: the team's active staff (names on replies, and the service staff to assign to).
  loadPeople() {
    const me = app.api.user();
    if (!session.isManager(me) || this.peopleLoaded) return Promise.resolve();
    return app.api.get('/users', { active: 'true', limit: 100 })
      .then((page) => {
        page.items.forEach((u) => { if (u.id !== me.id) this.names[u.id] = u.name || u.username; });
        const people = page.items.filter((u) => u.service === true && (u.role === 'rep' || u.role === 'manager'))
          .map((u) => ({ id: u.id, name: (u.name || u.username) + (u.id === me.id ? '（我）' : '') }));
        this.peopleLoaded = true;
        this.setData({ people });
      })
      .catch(() => {});
  },
  act(promise, toast) {
    if (this.data.busy) return Promise.resolve(null);
    this.setData({ busy: true, error: '' });
    return promise()
      .then((res) => { if (toast) wx.showToast({ title: toast, icon: 'none' }); return res; })
      .catch((e) => {
        this.setData({ error: e.status === 412 ? '工单已被他人更新，已刷新' : format.errorText(e) });
        if (e.status === 412 || e.status === 409) this.load();
        return null;
      })
      .then((res) => { this.setData({ busy: false }); if (res) this.load(); return res; });
  },
  onReply(e) { this.setData({ reply: e.detail.value }); },
  onInternal(e) { this.setData({ internal: Boolean(e.detail.value) }); },
  send() {
    const body = this.data.reply.trim();
    if (!body) { this.setData({ error: '请输入回复内容' }); return Promise.resolve(); }
    const data = { body };
    if (this.data.staff && this.data.internal) data.internal = true;
    return this.act(() => app.api.post('/tickets/' + this.ticketId + '/replies', data, { noKey: true, retry: false }), data.internal ? '已添加内部备注' : '已回复')
      .then((res) => { if (res) this.setData({ reply: '', internal: false }); });
  },
  resolve() {
    wx.showModal({
      title: '标记为已解决', editable: true, placeholderText: '处理结果（选填，仅同事可见）',
      success: (r) => {
        if (!r.confirm) return;
        const note = String(r.content || '').trim();
        this.act(() => app.api.post('/tickets/' + this.ticketId + '/resolve', note ? { version: this.raw.version, note } : { version: this.raw.version }, { noKey: true, retry: false }), '已解决');
      }
    });
  },
  onPerson(e) {
    const person = this.data.people[Number(e.detail.value)];
    if (!person) return;
    this.setData({ personIndex: Number(e.detail.value) });
    this.act(() => app.api.post('/tickets/' + this.ticketId + '/assign', { version: this.raw.version, assignee_id: person.id }, { noKey: true, retry: false }), '已指派给 ' + person.name);
  },
  reopen() {
    wx.showModal({
      title: '重新打开工单', editable: true, placeholderText: '还有什么问题（选填）',
      success: (r) => {
        if (!r.confirm) return;
        const reason = String(r.content || '').trim();
        this.act(() => app.api.post('/tickets/' + this.ticketId + '/reopen', reason ? { version: this.raw.version, reason } : { version: this.raw.version }, { noKey: true, retry: false }), '已重新打开');
      }
    });
  },
  rate() { wx.navigateTo({ url: '/pages/survey/survey?ticket_id=' + this.ticketId }); },
  openLead() { if (this.data.staff && this.raw) wx.navigateTo({ url: '/pages/lead/lead?id=' + this.raw.lead_id }); }
});
