const app = getApp();
const config = require('../../config');
const session = require('../../utils/session');
const format = require('../../utils/format');
const { listMethods, LIST_DATA } = require('../../lib/list');

// Where a notification leads (the same place its WeChat message opens, see templates.js). A
// ticket's (assigned, due soon, breached, escalated, replied) opens the ticket; an approval opens its contract, where the current approver decides. session.open picks switchTab
// for the tab pages (the pool, the leads) and navigateTo for the rest.
function target(n) {
  const d = n.data || {};
  if (d.ticket_id) return '/pages/ticket/ticket?id=' + d.ticket_id;
  if (d.survey_id) return '/pages/survey/survey?id=' + d.survey_id;
  if (d.task_id) return '/pages/task/task?id=' + d.task_id;
  if (n.kind === 'lead_reclaimed') return '/pages/pool/pool';
  if (d.contract_id) return '/pages/contract/contract?id=' + d.contract_id;
  if (d.lead_id) return '/pages/lead/lead?id=' + d.lead_id;
  if (n.kind === 'allocation_stuck') return '/pages/leads/leads';
  return null;
}

// The in-app inbox, newest first; tapping one marks it read and opens what it is about (a task,
// a lead, a contract, an approval). The subscribe-message opt-in: each acceptance allows one
// WeChat message of that template, so the page asks again and reports every acceptance.
Page(Object.assign(listMethods({
  fetch(cursor) { return app.api.get('/notifications', { limit: 20, unread: this.data.unreadOnly ? 'true' : undefined, cursor }); },
  map(n) { return { id: n.id, kind: n.kind, title: n.title, body: n.body, at: format.when(n.created_at), read: Boolean(n.read_at), urgent: n.urgent, hasTarget: Boolean(target(n)), raw: n }; }
}), {
  data: Object.assign({}, LIST_DATA, { unreadOnly: false, remaining: {} }),
  onShow() {
    const user = app.api.user();
    if (!session.guard(wx, user, 'staff')) return;
    session.selectTab(this, user);
    this.reload();
  },
  toggle() { this.setData({ unreadOnly: !this.data.unreadOnly }); this.reload(); },
  open(e) {
    const index = e.currentTarget.dataset.index;
    const n = this.data.items[index];
    if (!n.read) {
      this.setData({ ['items[' + index + '].read']: true });
      app.api.post('/notifications/' + n.id + '/read', null, { noKey: true, retry: true }).catch(() => {});
    }
    const url = target(n.raw);
    if (url) session.open(wx, url);
  },
  subscribe() {
    const ids = Object.keys(config.templates).map((k) => config.templates[k]);
    wx.requestSubscribeMessage({
      tmplIds: ids.slice(0, 3),
      success: (res) => {
        const accepted = ids.filter((id) => res[id] === 'accept');
        Promise.all(accepted.map((id) => app.api.post('/me/subscriptions', { template_id: id, accepted: true }, { noKey: true, retry: false })))
          .then((out) => {
            const remaining = {};
            out.forEach((r) => { remaining[r.template_id] = r.remaining; });
            this.setData({ remaining });
            wx.showToast({ title: '已订阅 ' + accepted.length + ' 条提醒', icon: 'none' });
          })
          .catch((err) => this.setData({ error: err.message }));
      },
      fail: (err) => this.setData({ error: err.errMsg })
    });
  }
}));
