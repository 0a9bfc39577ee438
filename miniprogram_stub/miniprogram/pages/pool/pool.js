const app = getApp();
const session = require('../../utils/session');
const format = require('../../utils/format');

const REFUSALS = {
  'pool.claim_lost': '手慢了，这条线索刚被同事领走',
  'pool.at_capacity': '你名下的线索已达上限，先跟进或释放一些',
  'pool.daily_limit': '今天的领取次数已用完，明天再来',
  'pool.cooldown': '这条线索刚被你释放，冷却期内不能再领'
};

// The team's public pool: filter by tag, pull to refresh, more at the bottom; claim one (the
// server says why when it cannot: someone was faster, at capacity, daily limit, cooldown).
// Releasing is on the lead's page.
Page({
  data: { items: [], cursor: null, done: false, loading: false, error: '', empty: false, tag: '', claiming: '' },
  onShow() {
    const user = app.api.user();
    if (!session.guard(wx, user, 'staff')) return;
    session.selectTab(this, user);
    this.reload();
  },
  onPullDownRefresh() { this.reload().then(() => wx.stopPullDownRefresh()); },
  onReachBottom() { this.more(); },
  onTag(e) { this.setData({ tag: e.detail.value }); },
  search() { this.reload(); },
  reload() {
    this.token = (this.token || 0) + 1;
    this.setData({ items: [], cursor: null, done: false, error: '', empty: false, loading: false });
    return this.more();
  },
  more() {
    if (this.data.loading || this.data.done) return Promise.resolve();
    const token = this.token;
    this.setData({ loading: true, error: '' });
    return app.api.get('/pool', { limit: 20, cursor: this.data.cursor || undefined, tag: this.data.tag.trim() || undefined })
      .then((page) => {
        if (token !== this.token) return;
        const items = this.data.items.concat((page.items || []).map((l) => format.lead(l)));
        this.setData({ items, cursor: page.next_cursor || null, done: !page.next_cursor, empty: !items.length, loading: false });
      })
      .catch((e) => { if (token === this.token) this.setData({ error: e.code === 'network.error' ? '离线时看不到公海，联网后下拉刷新' : format.errorText(e), loading: false, done: true }); });
  },
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
});
