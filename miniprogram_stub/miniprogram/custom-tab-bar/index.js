// The tab bar (app.json tabBar.custom): the tabs of the role logged in (utils/session.js); a page
// sets `items` and `selected` in its onShow (session.selectTab).
const session = require('../utils/session');

Component({
  data: { items: [], selected: -1, color: '#666666', selectedColor: '#1677ff' },
  lifetimes: {
    attached() {
      const app = getApp();
      this.setData({ items: session.tabsFor(app && app.api ? app.api.user() : null) });
    }
  },
  methods: {
    open(e) {
      const i = Number(e.currentTarget.dataset.index);
      const tab = this.data.items[i];
      if (!tab || i === this.data.selected) return;
      wx.switchTab({ url: '/' + tab.pagePath });
    }
  }
});
