const app = getApp();
const session = require('../../utils/session');
const format = require('../../utils/format');

// The first page: someone already logged in goes straight to their home (staff: my leads;
// customer: the customer home). Otherwise wx.login → POST /auth/wechat-login: staff enter the
// one-time bind code from their admin once; customers just tap the button.
Page({
  data: { bindCode: '', error: '', busy: false, staff: false },
  onLoad(query) {
    this.query = query || {};
    const user = app.api.user();
    if (user) session.goHome(wx, user);
  },
  onBindInput(e) { this.setData({ bindCode: String(e.detail.value || '').trim().toUpperCase() }); },
  toggleStaff() { this.setData({ staff: !this.data.staff, error: '' }); },
  login() {
    if (this.data.busy) return;
    this.setData({ error: '', busy: true });
    app.api.loginWithWechat(this.data.bindCode || undefined)
      .then((pair) => {
        app.globalData.user = pair.user;
        this.setData({ bindCode: '', busy: false });
        app.api.flush().catch(() => {}); // catching up must never keep anyone on the login page
        session.goHome(wx, pair.user);
      })
      .catch((e) => this.setData({ busy: false, error: e.code === 'auth.invalid_credentials' || e.status === 401 ? '绑定码无效或已使用，请向管理员重新获取' : format.errorText(e) }));
  }
});
