const app = getApp();
const session = require('../../utils/session');
const format = require('../../utils/format');

const REMINDS = [
  { label: '不提醒', minutes: null }, { label: '提前 15 分钟', minutes: 15 },
  { label: '提前 1 小时', minutes: 60 }, { label: '提前 1 天', minutes: 1440 }
];

// A new task (?lead_id= to tie it to a lead) or an edit (?id=). Managers may give it to a member
// of their team; everyone else gets it themselves. A create carries an Idempotency-Key (api.js),
// so a retry never makes two.
Page({
  data: {
    title: '', date: '', time: '10:00', reminds: REMINDS.map((r) => r.label), remindIndex: 0,
    people: [], personIndex: 0, leadName: '', editing: false, error: '', saving: false
  },
  onLoad(q) {
    if (!session.guard(wx, app.api.user(), 'staff')) return;
    this.taskId = q.id || null;
    this.leadId = q.lead_id || null;
    const me = (app.api.tokens().user) || {};
    this.me = me;
    this.setData({ editing: Boolean(this.taskId), date: format.today() });
    wx.setNavigationBarTitle && wx.setNavigationBarTitle({ title: this.taskId ? '编辑待办' : '新建待办' });
    const jobs = [];
    if (me.role === 'manager' && me.team_id) {
      jobs.push(app.api.get('/users', { team_id: me.team_id, active: 'true', limit: 100 })
        .then((page) => {
          const others = page.items.filter((u) => u.id !== me.id && u.role !== 'customer');
          this.setData({ people: [{ id: me.id, name: '我自己' }].concat(others.map((u) => ({ id: u.id, name: u.name || u.username }))) });
        })
        .catch(() => {}));
    }
    if (this.taskId) {
      jobs.push(app.api.get('/tasks/' + this.taskId).then((t) => {
        this.task = t;
        this.leadId = t.lead_id || null;
        const due = { date: format.dateValue(t.due_at), time: format.time(t.due_at) };
        let remindIndex = 0;
        if (t.remind_at) {
          const before = Math.round((Date.parse(t.due_at) - Date.parse(t.remind_at)) / 60000);
          const i = REMINDS.findIndex((r) => r.minutes === before);
          remindIndex = i > 0 ? i : 0;
        }
        this.setData({ title: t.title, date: due.date, time: due.time, remindIndex });
      }).catch((e) => this.setData({ error: e.message })));
    }
    Promise.all(jobs).then(() => {
      if (this.task && this.data.people.length) {
        const i = this.data.people.findIndex((p) => p.id === this.task.assignee_id);
        if (i >= 0) this.setData({ personIndex: i });
      }
      if (this.leadId) {
        app.api.get('/leads/' + this.leadId).then((lead) => {
          this.setData({ leadName: lead.name || '' });
          if (!this.taskId && !this.data.title) this.setData({ title: '跟进 ' + (lead.name || '') });
        }).catch(() => {});
      }
    });
  },
  onTitle(e) { this.setData({ title: e.detail.value }); },
  onDate(e) { this.setData({ date: e.detail.value }); },
  onTime(e) { this.setData({ time: e.detail.value }); },
  onRemind(e) { this.setData({ remindIndex: Number(e.detail.value) }); },
  onPerson(e) { this.setData({ personIndex: Number(e.detail.value) }); },
  save() {
    if (this.data.saving) return;
    const title = this.data.title.trim();
    if (!title) { this.setData({ error: '请填写待办内容' }); return; }
    if (!this.data.date) { this.setData({ error: '请选择截止日期' }); return; }
    const dueAt = format.isoAt(this.data.date, this.data.time);
    const minutes = REMINDS[this.data.remindIndex].minutes;
    const remindAt = minutes === null ? null : new Date(Date.parse(dueAt) - minutes * 60000).toISOString();
    const person = this.data.people[this.data.personIndex];
    this.setData({ saving: true, error: '' });
    let done;
    if (this.taskId) {
      const body = { version: this.task.version, title, due_at: dueAt, remind_at: remindAt };
      if (person) body.assignee_id = person.id;
      done = app.api.patch('/tasks/' + this.taskId, body);
    } else {
      const body = { title, due_at: dueAt };
      if (remindAt) body.remind_at = remindAt;
      if (this.leadId) body.lead_id = this.leadId;
      if (person && person.id !== this.me.id) body.assignee_id = person.id;
      done = app.api.post('/tasks', body);
    }
    done
      .then((t) => {
        wx.showToast({ title: '已保存' });
        if (this.taskId) wx.navigateBack();
        else wx.redirectTo({ url: '/pages/task/task?id=' + t.id });
      })
      .catch((e) => {
        const text = e.code === 'task.managed_by_lead' ? '跟进提醒随线索自动更新，请在线索里修改下次跟进时间'
          : e.status === 412 ? '待办已被修改，请返回刷新后再改' : e.message;
        this.setData({ error: text });
      })
      .then(() => this.setData({ saving: false }));
  }
});
