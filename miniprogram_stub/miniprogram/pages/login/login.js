const app = getApp();

// wx.login → POST /auth/wechat-login. Staff enter the one-time bind code from their admin once;
// after that WeChat alone logs them in.
Page({
  data: { bindCode: '', error: '', user: null },
  onLoad() { this.setData({ user: app.api.tokens().user || null }); },
  onBindInput(e) { this.setData({ bindCode: e.detail.value.trim().toUpperCase() }); },
  login() {
    this.setData({ error: '' });
    app.api.loginWithWechat(this.data.bindCode || undefined)
      .then((pair) => {
        app.globalData.user = pair.user;
        this.setData({ user: pair.user, bindCode: '' });
        return app.api.flush();
      })
      .then(() => wx.switchTab({ url: '/pages/leads/leads' }))
      .catch((e) => this.setData({ error: e.message }));
  },
  logout() {
    const t = app.api.tokens();
    if (t.refresh) app.api.post('/auth/logout', { refresh_token: t.refresh }, { noKey: true }).catch(() => {});
    app.api.clearTokens();
    this.setData({ user: null });
  }
});
