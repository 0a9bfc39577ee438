const app = getApp();
const session = require('../../utils/session');
const format = require('../../utils/format');

// The first page: someone already logged in goes straight to their home (staff: my leads;
// customer: the customer home). Otherwise wx.login → POST /auth/wechat-login: staff enter the
// one-time bind code from their admin once (typed, or scanned from the console's QR code);
// customers just tap the button.
const BIND_CODE = /^[A-Z0-9]{10}$/;

Page({
  data: { bindCode: '', error: '', busy: false, staff: false },
  onLoad(query) {
    this.query = query || {};
    const user = app.api.user();
    if (user) session.goHome(wx, user);
  },
  onBindInput(e) { this.setData({ bindCode: String(e.detail.value || '').trim().toUpperCase() }); },
  // The console shows a new staff member's bind code as text and as a QR code of the same text.
  scan() {
    wx.scanCode({
      onlyFromCamera: true,
      scanType: ['qrCode'],
      success: (res) => {
        const code = String((res && res.result) || '').trim().toUpperCase();
        if (BIND_CODE.test(code)) this.setData({ bindCode: code, error: '' });
        else this.setData({ error: '这不是员工绑定码：请扫描管理后台“绑定码”弹窗里的二维码' });
      },
      fail: () => {} // cancelled: nothing to say
    });
  },
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
