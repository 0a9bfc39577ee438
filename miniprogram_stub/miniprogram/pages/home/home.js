const app = getApp();
const config = require('../../config');
const session = require('../../utils/session');
const format = require('../../utils/format');

const RECENT_FORMS_KEY = 'mpcrm.recentForms'; // [{slug, title}] the form page remembers (per user)

// The customer's home: the forms they can fill in (the mini-program's own and those shared with
// them), their submissions, and their account with logout. Staff never land here.
Page({
  data: { name: '', forms: [] },
  onShow() {
    const user = app.api.user();
    if (!session.guard(wx, user, 'customer')) return;
    const recent = app.api.storage.get(RECENT_FORMS_KEY);
    const forms = (Array.isArray(recent) ? recent : []).filter((f) => f && f.slug);
    if (!forms.some((f) => f.slug === config.formSlug)) forms.push({ slug: config.formSlug, title: '在线登记' });
    this.setData({ name: format.text(user.name, '微信用户'), forms: forms.map((f) => ({ slug: f.slug, title: format.text(f.title, '在线登记') })) });
  },
  openForm(e) { wx.navigateTo({ url: '/pages/form/form?slug=' + encodeURIComponent(e.currentTarget.dataset.slug) }); },
  openSubmissions() { wx.navigateTo({ url: '/pages/my-submissions/my-submissions' }); },
  logout() { app.api.logout().then(() => wx.reLaunch({ url: session.LOGIN })); }
});
