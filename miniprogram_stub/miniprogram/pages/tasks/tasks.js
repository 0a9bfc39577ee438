const app = getApp();
const session = require('../../utils/session');
const format = require('../../utils/format');
const { listMethods, LIST_DATA } = require('../../lib/list');
const view = require('../../lib/view');

const FILTERS = [
  { value: 'open', label: '待完成' }, { value: 'today', label: '今天到期' },
  { value: 'overdue', label: '已逾期' }, { value: 'done', label: '已完成' }
];

function query(filter, cursor) {
  const q = { limit: 20, cursor };
  if (filter === 'done') q.status = 'done';
  else q.status = 'open';
  if (filter === 'overdue') q.due_before = new Date().toISOString();
  if (filter === 'today') q.due_before = format.today() + 'T23:59:59+08:00';
  return q;
}

// My tasks (a manager: the team's), soonest due first, with filters; tap one for its detail.
// Completing twice is harmless, so it may be retried.
Page(Object.assign(listMethods({
  fetch(cursor) { return app.api.get('/tasks', query(this.data.filter, cursor)); },
  map(t) { return view.taskView(t); }
}), {
  data: Object.assign({}, LIST_DATA, { filters: FILTERS, filter: 'open' }),
  onShow() {
    const user = app.api.user();
    if (!session.guard(wx, user, 'staff')) return;
    session.selectTab(this, user);
    this.reload();
  },
  pick(e) {
    const filter = e.currentTarget.dataset.value;
    if (filter === this.data.filter) return;
    this.setData({ filter });
    this.reload();
  },
  complete(e) {
    const task = this.data.items[e.currentTarget.dataset.index];
    app.api.post('/tasks/' + task.id + '/complete', { version: task.version }, { noKey: true, retry: true })
      .then(() => { wx.showToast({ title: '已完成' }); this.reload(); })
      .catch((err) => this.setData({ error: err.message }));
  },
  open(e) { wx.navigateTo({ url: '/pages/task/task?id=' + this.data.items[e.currentTarget.dataset.index].id }); },
  create() { wx.navigateTo({ url: '/pages/task-edit/task-edit' }); }
}));
