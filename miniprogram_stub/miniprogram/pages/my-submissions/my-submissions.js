const app = getApp();
const { listMethods, LIST_DATA } = require('../../lib/list');
const format = require('../../utils/format');

// What this customer submitted and where it stands (收到 / 跟进中 / 已完结), newest first.
Page(Object.assign(listMethods({
  fetch(cursor) { return app.api.get('/public/my-submissions', { limit: 20, cursor }); },
  map(s) {
    return { id: s.submission_id, title: s.form_title || s.form_slug, slug: s.form_slug, at: format.when(s.submitted_at), status: s.status, statusText: format.label(format.SUBMISSION_STATUSES, s.status) };
  }
}), {
  data: Object.assign({}, LIST_DATA, { customer: true }),
  onShow() {
    const user = app.api.tokens().user || {};
    const customer = user.role === 'customer';
    this.setData({ customer });
    if (customer) this.reload();
  },
  open(e) { wx.navigateTo({ url: '/pages/form/form?slug=' + encodeURIComponent(e.currentTarget.dataset.slug) }); },
  login() { wx.navigateTo({ url: '/pages/login/login' }); }
}));
