const app = getApp();
const session = require('../../utils/session');
const format = require('../../utils/format');
const view = require('../../lib/view');

// The satisfaction survey (满意度调查): 1–5 stars, how likely to recommend us (0–10) and a comment,
// answered once (POST /surveys/{id}/answer). Opened with ?id=<survey> (the subscribe message, the
// home page's 待评价) or ?ticket_id=<ticket> (评价服务 on a resolved ticket: its survey). A survey
// already answered shows the answer; answering again is refused by the server and says so.
Page({
  data: { s: null, pending: [], csat: 0, nps: null, comment: '', stars: view.stars(0), scale: view.npsScale(null), error: '', busy: false, loading: false, none: false },
  onLoad(q) { this.surveyId = q.id || null; this.ticketId = q.ticket_id || null; },
  onShow() {
    if (!session.guard(wx, app.api.user(), 'customer')) return;
    this.load();
  },
  load() {
    this.setData({ loading: true, error: '' });
    const found = this.surveyId ? app.api.get('/surveys/' + this.surveyId) : this.findForTicket();
    return found
      .then((s) => {
        if (!s) { this.setData({ loading: false }); return; }
        this.surveyId = s.id;
        this.show(s);
      })
      .catch((e) => this.setData({ loading: false, error: e.status === 404 ? '调查不存在或已失效' : format.errorText(e) }));
  },
  // The ticket's own survey; without one, the customer's surveys still to answer, to pick from.
  findForTicket() {
    return app.api.get('/surveys', { limit: 100 }).then((page) => {
      const mine = page.items.find((s) => s.source === 'ticket' && (s.ticket_id === this.ticketId || s.source_id === this.ticketId));
      if (mine) return mine;
      // An answer that does not say which ticket it is about: the one service survey still open is it.
      const open = page.items.filter((s) => s.status === 'pending');
      const service = open.filter((s) => s.source === 'ticket' && !s.ticket_id && !s.source_id);
      if (service.length === 1) return service[0];
      const pending = open.map((s) => view.surveyView(s));
      this.setData({ pending, none: pending.length === 0 });
      return null;
    });
  },
  show(s) {
    const v = view.surveyView(s);
    this.setData({
      loading: false, s: v, pending: [], none: false,
      csat: v.answered ? v.csat : this.data.csat, nps: v.answered ? v.nps : this.data.nps,
      stars: view.stars(v.answered ? v.csat : this.data.csat), scale: view.npsScale(v.answered ? v.nps : this.data.nps)
    });
  },
  pick(e) { this.surveyId = e.currentTarget.dataset.id; this.load(); },
  onStar(e) {
    if (this.data.s && this.data.s.answered) return;
    const csat = Number(e.currentTarget.dataset.value);
    this.setData({ csat, stars: view.stars(csat), error: '' });
  },
  onNps(e) {
    if (this.data.s && this.data.s.answered) return;
    const nps = Number(e.currentTarget.dataset.value);
    this.setData({ nps, scale: view.npsScale(nps), error: '' });
  },
  onComment(e) { this.setData({ comment: e.detail.value }); },
  submit() {
    if (this.data.busy || !this.data.s) return Promise.resolve();
    const answer = view.surveyAnswer(this.data.csat, this.data.nps, this.data.comment);
    if (answer.error) { this.setData({ error: answer.error }); return Promise.resolve(); }
    this.setData({ busy: true, error: '' });
    return app.api.post('/surveys/' + this.surveyId + '/answer', answer.body, { noKey: true, retry: false })
      .then((s) => { this.setData({ busy: false }); wx.showToast({ title: '感谢你的评价', icon: 'success' }); this.show(s); })
      .catch((e) => {
        this.setData({ busy: false, error: e.code === 'survey.answered' ? '这次服务已经评价过了，每次服务只能评价一次' : format.errorText(e) });
        if (e.code === 'survey.answered') return app.api.get('/surveys/' + this.surveyId).then((s) => this.show(s)).catch(() => {});
        return null;
      });
  }
});
