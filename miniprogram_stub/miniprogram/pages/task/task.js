const app = getApp();
const session = require('../../utils/session');
const view = require('../../lib/view');

// One task (opened from the list or from a task notification / WeChat message: ?id=<task id>):
// title, due and remind times, its lead, complete, edit.
Page({
  data: { task: null, leadName: '', error: '', busy: false },
  onLoad(q) { this.taskId = q.id; },
  onShow() { if (session.guard(wx, app.api.user(), 'staff')) this.load(); },
  onPullDownRefresh() { this.load().then(() => wx.stopPullDownRefresh()); },
  load() {
    if (!this.taskId) { this.setData({ error: '缺少待办编号' }); return Promise.resolve(); }
    return app.api.get('/tasks/' + this.taskId)
      .then((t) => {
        this.raw = t;
        this.setData({ task: view.taskView(t), error: '' });
        if (t.lead_id) {
          return app.api.get('/leads/' + t.lead_id).then((lead) => this.setData({ leadName: lead.name || '' })).catch(() => {});
        }
        return null;
      })
      .catch((e) => this.setData({ error: e.status === 404 ? '待办不存在或已不归你负责' : e.message }));
  },
  complete() {
    if (this.data.busy) return;
    this.setData({ busy: true, error: '' });
    app.api.post('/tasks/' + this.taskId + '/complete', { version: this.raw.version }, { noKey: true, retry: true })
      .then(() => { wx.showToast({ title: '已完成' }); return this.load(); })
      .catch((e) => this.setData({ error: e.message }))
      .then(() => this.setData({ busy: false }));
  },
  edit() { wx.navigateTo({ url: '/pages/task-edit/task-edit?id=' + this.taskId }); },
  openLead() { if (this.raw && this.raw.lead_id) wx.navigateTo({ url: '/pages/lead/lead?id=' + this.raw.lead_id }); }
});
