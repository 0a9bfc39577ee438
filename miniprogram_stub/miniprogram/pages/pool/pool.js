const app = getApp();
const session = require('../../utils/session');
const format = require('../../utils/format');
const { listMethods, LIST_DATA } = require('../../lib/list');

const REFUSALS = {
  'pool.claim_lost': '手慢了，这条线索刚被同事领走',
  'pool.at_capacity': '你名下的线索已达上限，先跟进或释放一些',
  'pool.daily_limit': '今天的领取次数已用完，明天再来',
  'pool.cooldown': '这条线索刚被你释放，冷却期内不能再领'
};

// The team's public pool: filter by tag, pull to refresh, more at the bottom; claim one (the
// server says why when it cannot: someone was faster, at capacity, daily limit, cooldown).
// Releasing is on the lead's page.
Page(Object.assign(listMethods({
  fetch(cursor) { return app.api.get('/pool', { limit: 20, cursor, tag: this.data.tag.trim() || undefined }); },
  map(l) { return format.lead(l); },
  offlineText: '离线时看不到公海，联网后下拉刷新'
}), {
  data: Object.assign({}, LIST_DATA, { tag: '', claiming: '' }),
  onShow() {
    const user = app.api.user();
    if (!session.guard(wx, user, 'staff')) return;
    session.selectTab(this, user);
    this.reload();
  },
  onTag(e) { this.setData({ tag: e.detail.value }); },
  search() { this.reload(); },
  claim(e) {
    const id = e.currentTarget.dataset.id;
    if (this.data.claiming) return;
    this.setData({ claiming: id, error: '' });
    app.api.post('/leads/' + id + '/claim', null, { noKey: true, retry: false })
      .then(() => {
        this.setData({ claiming: '', items: this.data.items.filter((l) => l.id !== id) });
        wx.showToast({ title: '已领取', icon: 'success' });
        wx.navigateTo({ url: '/pages/lead/lead?id=' + id });
      })
      .catch((err) => {
        this.setData({ claiming: '', error: REFUSALS[err.code] || format.errorText(err) });
        if (err.code === 'pool.claim_lost') this.reload();
      });
  }
}));
