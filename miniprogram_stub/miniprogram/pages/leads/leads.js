const app = getApp();
const session = require('../../utils/session');
const format = require('../../utils/format');

const STAGE_OPTIONS = [{ value: '', label: '全部阶段' }].concat(Object.keys(format.STAGES).map((k) => ({ value: k, label: format.STAGES[k] })));
const LAYER_OPTIONS = [{ value: '', label: '全部分层' }, { value: 'A', label: 'A 类' }, { value: 'B', label: 'B 类' }, { value: 'C', label: 'C 类' }];

function matches(lead, f) {
  if (f.stage && lead.stage !== f.stage) return false;
  if (f.layer && lead.layer !== f.layer) return false;
  if (f.tag && (lead.tags || []).indexOf(f.tag) < 0) return false;
  if (f.q && String(lead.name || '').indexOf(f.q) !== 0 && String(lead.company || '').indexOf(f.q) !== 0) return false;
  return true;
}

// My leads (a manager: the team's), newest activity first: search by name or company, filter by
// stage, tag and layer; pull to refresh, more at the bottom. Offline (known within a second), the
// copy of the last /sync shows at once, with leads captured offline on top.
Page({
  data: {
    items: [], pending: [], cursor: null, done: false, loading: false, error: '', offline: false, empty: false,
    q: '', tag: '', stageOptions: STAGE_OPTIONS, stageIndex: 0, layerOptions: LAYER_OPTIONS, layerIndex: 0
  },
  onShow() {
    const user = app.api.user();
    if (!session.guard(wx, user, 'staff')) return;
    session.selectTab(this, user);
    if (!this.unwatch) {
      this.unwatch = app.api.onChange((what, s) => {
        if (what === 'network') { if (!s.online) this.showCached(); else this.reload(); }
        if (what === 'sync' && this.data.offline === false && !this.data.items.length) this.reload();
        if (what === 'queue') this.setData({ pending: this.pendingLeads() });
      });
    }
    this.reload();
  },
  onHide() { if (this.unwatch) { this.unwatch(); this.unwatch = null; } },
  onUnload() { this.onHide(); },
  onPullDownRefresh() {
    app.api.flush().catch(() => {});
    this.reload().then(() => wx.stopPullDownRefresh());
  },
  onReachBottom() { this.more(); },
  filters() {
    return { q: this.data.q.trim(), tag: this.data.tag.trim(), stage: STAGE_OPTIONS[this.data.stageIndex].value, layer: LAYER_OPTIONS[this.data.layerIndex].value };
  },
  pendingLeads() {
    return app.api.pending().queued.filter((e) => e.kind === 'capture').map((e) => ({ id: e.data.id, name: format.text(e.data.name, '未命名'), company: format.text(e.data.company) }));
  },
  reload() {
    this.token = (this.token || 0) + 1;
    this.setData({ items: [], cursor: null, done: false, error: '', empty: false, loading: false, pending: this.pendingLeads() });
    return this.more();
  },
  more() {
    if (this.data.loading || this.data.done) return Promise.resolve();
    const token = this.token;
    const f = this.filters();
    this.setData({ loading: true, error: '' });
    const query = { limit: 20, cursor: this.data.cursor || undefined, q: f.q || undefined, tag: f.tag || undefined, stage: f.stage || undefined, layer: f.layer || undefined };
    return app.api.get('/leads', query)
      .then((page) => {
        if (token !== this.token) return;
        const items = this.data.items.concat((page.items || []).map((l) => format.lead(l)));
        this.setData({ items, cursor: page.next_cursor || null, done: !page.next_cursor, offline: false, empty: !items.length, loading: false });
      })
      .catch((e) => {
        if (token !== this.token) return;
        if (e.code === 'network.error') this.showCached();
        else this.setData({ error: format.errorText(e), loading: false, done: true });
      });
  },
  // The leads the last /sync stored, filtered like the server would.
  showCached() {
    this.token = (this.token || 0) + 1;
    const f = this.filters();
    const items = app.api.localLeads().filter((l) => matches(l, f)).map((l) => format.lead(l));
    this.setData({ items, offline: true, done: true, loading: false, error: '', empty: !items.length, pending: this.pendingLeads() });
  },
  onQuery(e) { this.setData({ q: e.detail.value }); },
  search() { this.reload(); },
  onTag(e) { this.setData({ tag: e.detail.value }); },
  onStage(e) { this.setData({ stageIndex: Number(e.detail.value) }); this.reload(); },
  onLayer(e) { this.setData({ layerIndex: Number(e.detail.value) }); this.reload(); },
  clearFilters() { this.setData({ q: '', tag: '', stageIndex: 0, layerIndex: 0 }); this.reload(); },
  open(e) { wx.navigateTo({ url: '/pages/lead/lead?id=' + e.currentTarget.dataset.id }); },
  capture() { wx.navigateTo({ url: '/pages/capture/capture' }); }
});
