const app = getApp();
const session = require('../../utils/session');
const view = require('../../lib/view');
const { listMethods, LIST_DATA } = require('../../lib/list');

function options(table, all) {
  return [{ value: '', label: all }].concat(Object.keys(table).map((value) => ({ value, label: table[value] })));
}
const STATUSES = options(view.TICKET_STATUS, '全部状态');
const PRIORITIES = options(view.TICKET_PRIORITY, '全部优先级');

// Tickets, newest first. A customer: 我的工单 (their own, with status) and 联系售后. Staff: the
// tickets in their scope with filters (status, priority, breached), "assigned to me" or everything
// they may see (a manager: the team's), or one lead's tickets (?lead_id=, from the lead page); the
// due times and a breached badge on each.
Page(Object.assign(listMethods({
  fetch(cursor) {
    const d = this.data;
    const q = { limit: 20, cursor };
    if (d.staff) {
      if (STATUSES[d.statusIndex].value) q.status = STATUSES[d.statusIndex].value;
      if (PRIORITIES[d.priorityIndex].value) q.priority = PRIORITIES[d.priorityIndex].value;
      if (d.breachedOnly) q.breached = 'true';
      if (d.mine) q.assignee_id = app.api.user().id;
      if (this.leadId) q.lead_id = this.leadId;
    }
    return app.api.get('/tickets', q);
  },
  map(t) { return view.ticketView(t, app.api.user(), this.names); }
}), {
  data: Object.assign({}, LIST_DATA, {
    staff: false, manager: false, forLead: false, statuses: STATUSES, priorities: PRIORITIES, statusIndex: 0, priorityIndex: 0,
    breachedOnly: false, mine: false
  }),
  onLoad(q) {
    this.leadId = q && q.lead_id ? q.lead_id : null;
    const user = app.api.user();
    const staff = session.isStaff(user);
    // Staff start with what is theirs to do; a manager and a lead's list with everything.
    this.setData({ staff, manager: session.isManager(user), forLead: Boolean(this.leadId), mine: staff && !session.isManager(user) && !this.leadId });
    if (wx.setNavigationBarTitle) wx.setNavigationBarTitle({ title: this.leadId ? '客户的工单' : staff ? '工单' : '我的工单' });
  },
  onShow() {
    const user = app.api.user();
    if (!session.guard(wx, user, 'any')) return;
    this.loadNames().then(() => this.reload());
  },
  // A manager sees the assignee's name; everyone else sees "我" on their own tickets.
  loadNames() {
    const user = app.api.user();
    this.names = {};
    this.names[user.id] = '我';
    if (!session.isManager(user) || this.namesLoaded) return Promise.resolve();
    return app.api.get('/users', { team_id: user.team_id || undefined, active: 'true', limit: 100 })
      .then((page) => { page.items.forEach((u) => { if (u.id !== user.id) this.names[u.id] = u.name || u.username; }); this.namesLoaded = this.names; })
      .catch(() => {});
  },
  onStatus(e) { this.setData({ statusIndex: Number(e.detail.value) }); this.reload(); },
  onPriority(e) { this.setData({ priorityIndex: Number(e.detail.value) }); this.reload(); },
  toggleBreached() { this.setData({ breachedOnly: !this.data.breachedOnly }); this.reload(); },
  toggleMine() { this.setData({ mine: !this.data.mine }); this.reload(); },
  open(e) { wx.navigateTo({ url: '/pages/ticket/ticket?id=' + this.data.items[e.currentTarget.dataset.index].id }); },
  create() { wx.navigateTo({ url: '/pages/ticket-new/ticket-new' }); }
}));
