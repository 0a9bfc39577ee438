const app = getApp();
const session = require('../../utils/session');
const uCharts = require('../../vendor/u-charts/u-charts.min.js');
const charts = require('../../lib/charts');
const view = require('../../lib/view');
const format = require('../../utils/format');

const PERIODS = [
  { label: '本月', days: null }, { label: '近 7 天', days: 7 }, { label: '近 30 天', days: 30 }, { label: '近 90 天', days: 90 }
];
const CHARTS = ['funnel', 'reps', 'lifecycle', 'rfm', 'serviceVolume', 'serviceCsat', 'serviceNps'];

function range(period) {
  const to = format.today();
  if (period.days === null) return { from: to.slice(0, 8) + '01', to };
  const t = Date.parse(to + 'T00:00:00Z') - (period.days - 1) * 86400000;
  return { from: new Date(t).toISOString().slice(0, 10), to };
}

// The team dashboard (managers: their team; admins: everyone): the sales funnel, the rep
// leaderboard, customer lifecycle and churn, RFM layers, and after-sale service (tickets opened and
// resolved, median first response and resolution, SLA breach rate, CSAT and NPS per handler from
// GET /reports/service), drawn with uCharts into canvas 2d.
Page({
  data: {
    periods: PERIODS.map((p) => p.label), periodIndex: 0, from: '', to: '', loading: false, error: '',
    summary: null, leaders: [], lifecycle: null, rfm: null, service: null, handlers: [], charts: {}
  },
  onLoad() { this.instances = {}; },
  onShow() { if (session.guard(wx, app.api.user(), 'manager')) this.load(); },
  onPullDownRefresh() { this.load().then(() => wx.stopPullDownRefresh()); },
  onPeriod(e) { this.setData({ periodIndex: Number(e.detail.value) }); this.load(); },
  load() {
    const r = range(PERIODS[this.data.periodIndex]);
    this.setData({ from: r.from, to: r.to, loading: true, error: '' });
    return Promise.all([
      app.api.get('/reports/funnel', r), app.api.get('/reports/reps', r),
      app.api.get('/reports/lifecycle', r), app.api.get('/reports/rfm'), app.api.get('/reports/service', r)
    ])
      .then(([funnel, reps, lifecycle, rfm, service]) => {
        const options = {
          funnel: charts.funnel(funnel), reps: charts.reps(reps), lifecycle: charts.lifecycle(lifecycle), rfm: charts.rfm(rfm),
          serviceVolume: charts.serviceVolume(service), serviceCsat: charts.serviceCsat(service), serviceNps: charts.serviceNps(service)
        };
        const t = service.totals || {};
        this.setData({
          loading: false,
          charts: options,
          summary: { created: funnel.created, conversions: funnel.conversions, rate: view.percent(funnel.conversion_rate) },
          leaders: options.reps.categories.map((name, i) => ({
            rank: i + 1, name, leads: options.reps.series[0].data[i], followups: options.reps.series[1].data[i], conversions: options.reps.series[2].data[i]
          })),
          lifecycle: { now: lifecycle.customers_now, churnRate: view.percent(lifecycle.churn_rate), churned: lifecycle.churned, atRisk: lifecycle.into_at_risk },
          rfm: { A: rfm.counts.A || 0, B: rfm.counts.B || 0, C: rfm.counts.C || 0, on: rfm.computed_on ? format.day(rfm.computed_on) : '' },
          service: {
            opened: t.tickets_opened || 0, resolved: t.tickets_resolved || 0,
            firstResponse: view.duration(t.median_first_response_min),
            resolution: t.median_resolution_h === null || t.median_resolution_h === undefined ? '—' : view.duration(t.median_resolution_h * 60),
            breachRate: view.percent(t.sla_breach_rate),
            csat: t.csat_avg === null || t.csat_avg === undefined ? '—' : String(Math.round(t.csat_avg * 10) / 10),
            nps: t.nps === null || t.nps === undefined ? '—' : String(Math.round(t.nps))
          },
          handlers: charts.handlerRows(service).map((h) => ({
            id: h.handler_id, name: h.name || '未命名', resolved: h.tickets_resolved,
            csat: h.csat_avg === null || h.csat_avg === undefined ? '—' : String(Math.round(h.csat_avg * 10) / 10),
            nps: h.nps === null || h.nps === undefined ? '—' : String(Math.round(h.nps))
          }))
        });
        CHARTS.forEach((id) => this.draw(id, options[id]));
      })
      .catch((e) => this.setData({ loading: false, error: e.status === 403 ? '只有主管和管理员可以查看团队报表' : e.message }));
  },
  // One chart into its <canvas type="2d" id="…">, sized to the element, sharp on this screen.
  draw(id, options) {
    const query = wx.createSelectorQuery().in(this);
    query.select('#' + id).fields({ node: true, size: true }).exec((res) => {
      const box = res && res[0];
      if (!box || !box.node) return;
      const ratio = (wx.getWindowInfo ? wx.getWindowInfo().pixelRatio : wx.getSystemInfoSync().pixelRatio) || 1;
      const canvas = box.node;
      canvas.width = box.width * ratio;
      canvas.height = box.height * ratio;
      const context = canvas.getContext('2d');
      this.instances[id] = new uCharts(Object.assign({
        context, canvas2d: true, width: box.width * ratio, height: box.height * ratio, pixelRatio: ratio,
        animation: false, background: '#FFFFFF', padding: [15, 15, 5, 5], legend: { show: true }
      }, JSON.parse(JSON.stringify(options))));
    });
  },
  touch(e) {
    const chart = this.instances[e.currentTarget.dataset.id];
    if (chart) chart.showToolTip(e);
  }
});
