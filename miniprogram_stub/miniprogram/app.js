const config = require('./config');
const { createApi } = require('./utils/api');

App({
  globalData: { user: null },
  onLaunch() {
    this.api = createApi(wx, config);
    this.api.watchNetwork();
    const t = this.api.tokens();
    this.globalData.user = t.user || null;
    if (t.access) this.api.flush().catch(() => {});
  }
});
