const app = getApp();
const session = require('../../utils/session');

// A manager gives a lead (?id=) to another active member of the lead's team, with a reason that
// goes on its timeline.
Page({
  data: { lead: null, people: [], index: -1, reason: '', error: '', saving: false },
  onLoad(q) {
    if (!session.guard(wx, app.api.user(), 'manager')) return;
    this.leadId = q.id;
    app.api.get('/leads/' + this.leadId)
      .then((lead) => {
        this.setData({ lead });
        return app.api.get('/users', { team_id: lead.team_id, active: 'true', limit: 100 });
      })
      .then((page) => {
        const owner = this.data.lead.owner_id;
        const people = page.items.filter((u) => (u.role === 'rep' || u.role === 'manager') && u.id !== owner)
          .map((u) => ({ id: u.id, name: (u.name || u.username) + '（在跟 ' + (u.open_leads || 0) + ' 条）' }));
        this.setData({ people });
      })
      .catch((e) => this.setData({ error: e.message }));
  },
  onPerson(e) { this.setData({ index: Number(e.detail.value) }); },
  onReason(e) { this.setData({ reason: e.detail.value }); },
  save() {
    if (this.data.saving) return;
    const person = this.data.people[this.data.index];
    if (!person) { this.setData({ error: '请选择新的负责人' }); return; }
    const body = { owner_id: person.id };
    if (this.data.reason.trim()) body.reason = this.data.reason.trim();
    this.setData({ saving: true, error: '' });
    app.api.post('/leads/' + this.leadId + '/assign', body, { noKey: true, retry: false })
      .then(() => { wx.showToast({ title: '已重新分配' }); wx.navigateBack(); })
      .catch((e) => this.setData({ error: e.message }))
      .then(() => this.setData({ saving: false }));
  }
});
