const config = require('./config');
const { createApi } = require('./utils/api');

// One API layer for the whole mini-program (utils/api.js): tokens, the offline queue, /sync.
// The network is watched from the start, so a page knows within a second that it is offline.
App({
  globalData: { user: null, shareFrom: null },
  onLaunch(options) {
    this.api = createApi(wx, config);
    this.api.watchNetwork();
    this.api.onChange((what) => { if (what === 'user' || what === 'logout') this.globalData.user = this.api.user(); });
    this.globalData.user = this.api.user();
    this.globalData.launch = options || {};
    if (this.globalData.user) this.api.flush().catch(() => {});
  },
  onShow() {
    if (this.api && this.api.user() && this.api.isOnline()) this.api.flush().catch(() => {});
  }
});
