const app = getApp();
const config = require('../../config');
const session = require('../../utils/session');
const format = require('../../utils/format');

const RECENT_FORMS_KEY = 'mpcrm.recentForms'; // [{slug, title}] the form page remembers (per user)

// The customer's home: the forms they can fill in (the mini-program's own and those shared with
// them), their submissions, 联系售后 and their tickets, the surveys still to answer, 我的 and
// logout. Staff never land here. A survey's subscribe message opens it with ?id=<survey id>: the
// survey page is opened at once.
Page({
  data: { name: '', forms: [], pendingSurveys: 0 },
  onLoad(q) { this.surveyId = q && q.id ? q.id : null; },
  onShow() {
    const user = app.api.user();
    if (!session.guard(wx, user, 'customer')) return;
    const recent = app.api.storage.get(RECENT_FORMS_KEY);
    const forms = (Array.isArray(recent) ? recent : []).filter((f) => f && f.slug);
    if (!forms.some((f) => f.slug === config.formSlug)) forms.push({ slug: config.formSlug, title: '在线登记' });
    this.setData({ name: format.text(user.name, '微信用户'), forms: forms.map((f) => ({ slug: f.slug, title: format.text(f.title, '在线登记') })) });
    if (this.surveyId) {
      const id = this.surveyId;
      this.surveyId = null;
      wx.navigateTo({ url: '/pages/survey/survey?id=' + encodeURIComponent(id) });
      return;
    }
    app.api.get('/surveys', { status: 'pending', limit: 20 })
      .then((page) => { this.pending = page.items; this.setData({ pendingSurveys: page.items.length }); })
      .catch(() => {});
  },
  contactService() { wx.navigateTo({ url: '/pages/ticket-new/ticket-new' }); },
  openTickets() { wx.navigateTo({ url: '/pages/tickets/tickets' }); },
  openSurveys() {
    const one = this.pending && this.pending.length === 1 ? this.pending[0] : null;
    wx.navigateTo({ url: one ? '/pages/survey/survey?id=' + one.id : '/pages/survey/survey' });
  },
  openMe() { wx.navigateTo({ url: '/pages/me/me' }); },
  openForm(e) { wx.navigateTo({ url: '/pages/form/form?slug=' + encodeURIComponent(e.currentTarget.dataset.slug) }); },
  openSubmissions() { wx.navigateTo({ url: '/pages/my-submissions/my-submissions' }); },
  logout() { app.api.logout().then(() => wx.reLaunch({ url: session.LOGIN })); }
});
