const app = getApp();
const config = require('../../config');
const session = require('../../utils/session');
const { uuid4 } = require('../../utils/request');

const STAFF_ID = /^[0-9a-f]{24}$/;
// A QR code's scene (wxacode.getUnlimited, at most 32 characters): "<form slug>" or
// "<form slug>~<rep id>" — with the 24-character rep id, the slug has at most 7 characters.
const SCENE = /^([a-z0-9][a-z0-9-]{1,63})(?:~([0-9a-f]{24}))?$/;
const RECENT_FORMS_KEY = 'mpcrm.recentForms'; // [{slug, title}] the customer home lists (per user)
const RECENT_FORMS_MAX = 10;

// Where the customer came from: a share card (?slug=&ref=<sharing rep>), a QR code (?scene=), or
// neither (config.formSlug). A scene that is not one of ours (cut short, mistyped): null.
function entry(query) {
  const q = query || {};
  if (q.scene) {
    let scene = '';
    try { scene = decodeURIComponent(q.scene); } catch (e) { return null; }
    const m = SCENE.exec(scene);
    return m ? { slug: m[1], ref: m[2] || '', channel: 'qrcode' } : null;
  }
  return { slug: q.slug || config.formSlug, ref: q.ref || '', channel: q.ref ? 'share' : 'miniprogram' };
}

// The public form, rendered from GET /public/forms/{slug}. The phone comes from the phone-number
// button (a one-time phone_code the server exchanges with WeChat) or is typed. The sharing rep is
// sent as referrer_id and recorded on the lead. A failed submission keeps every answer; the phone
// button is asked again only when the server has spent the code (it resolves the code before it
// checks the answers). A network failure keeps the Idempotency-Key for the same answers, so trying
// again can never submit twice nor burn a second code.
Page({
  data: {
    form: null, fields: [], answers: {}, labels: {}, phoneCode: '', phoneOk: false, error: '', fieldErrors: {},
    done: null, submitting: false, staff: false, customer: false, sharePath: ''
  },
  onLoad(query) {
    const e = entry(query);
    if (!e) { this.setData({ error: '二维码无法识别，请向销售索取新的二维码' }); return; }
    this.slug = e.slug;
    this.channel = e.channel;
    this.referrer = STAFF_ID.test(e.ref) ? e.ref : '';
    const user = app.api.user();
    this.setData({ staff: session.isStaff(user), customer: Boolean(user) && user.role === 'customer' });
    if (wx.showShareMenu) wx.showShareMenu({ withShareTicket: false, menus: ['shareAppMessage'] });
    this.load();
  },
  onPullDownRefresh() { (this.slug ? this.load() : Promise.resolve()).then(() => wx.stopPullDownRefresh()); },
  load() {
    return app.api.get('/public/forms/' + this.slug)
      .then((form) => {
        const fields = form.fields.map((f) => Object.assign({}, f, { options: f.options || [] }));
        this.setData({ form, fields, error: '', sharePath: this.sharePath() });
        if (wx.setNavigationBarTitle) wx.setNavigationBarTitle({ title: form.title });
        if (this.data.customer) this.remember(form);
      })
      .catch((e) => this.setData({ error: e.status === 404 ? '表单不存在或已停用' : e.message }));
  },
  // The customer home lists the forms this customer opened, the latest first.
  remember(form) {
    const recent = app.api.storage.get(RECENT_FORMS_KEY);
    const others = (Array.isArray(recent) ? recent : []).filter((f) => f && f.slug && f.slug !== this.slug);
    app.api.storage.set(RECENT_FORMS_KEY, [{ slug: this.slug, title: form.title }].concat(others).slice(0, RECENT_FORMS_MAX));
  },
  // The share card carries the form and the sharing rep (a customer who forwards it keeps the rep
  // who shared it first).
  sharePath() {
    if (!this.slug) return '/pages/form/form';
    const user = app.api.user() || {};
    const ref = this.data.staff ? user.id : this.referrer;
    return '/pages/form/form?slug=' + encodeURIComponent(this.slug) + (ref ? '&ref=' + ref : '');
  },
  onShareAppMessage() {
    return { title: (this.data.form && this.data.form.title) || '在线登记', path: this.sharePath() };
  },
  onInput(e) {
    const key = e.currentTarget.dataset.key;
    this.setData({ ['answers.' + key]: e.detail.value, ['fieldErrors.' + key]: '' });
  },
  onNumber(e) {
    const key = e.currentTarget.dataset.key;
    const text = e.detail.value;
    this.setData({ ['answers.' + key]: text === '' ? undefined : Number(text), ['fieldErrors.' + key]: '' });
  },
  onPick(e) {
    const field = this.data.fields[e.currentTarget.dataset.index];
    const option = field.options[Number(e.detail.value)];
    this.setData({ ['answers.' + field.key]: option.value, ['labels.' + field.key]: option.label, ['fieldErrors.' + field.key]: '' });
  },
  onChecks(e) {
    const field = this.data.fields[e.currentTarget.dataset.index];
    const chosen = e.detail.value;
    const labels = field.options.filter((o) => chosen.indexOf(o.value) >= 0).map((o) => o.label).join('、');
    this.setData({ ['answers.' + field.key]: chosen, ['labels.' + field.key]: labels, ['fieldErrors.' + field.key]: '' });
  },
  onDate(e) {
    const key = e.currentTarget.dataset.key;
    this.setData({ ['answers.' + key]: e.detail.value, ['labels.' + key]: e.detail.value, ['fieldErrors.' + key]: '' });
  },
  onGetPhoneNumber(e) {
    if (e.detail.code) this.setData({ phoneCode: e.detail.code, phoneOk: true, error: '' });
    else this.setData({ error: '需要授权手机号才能提交，也可手动填写' });
  },
  body() {
    const answers = {};
    Object.keys(this.data.answers).forEach((k) => {
      const v = this.data.answers[k];
      if (v !== undefined && v !== null && v !== '' && !(Array.isArray(v) && !v.length)) answers[k] = v;
    });
    const phoneField = this.data.fields.find((f) => f.type === 'phone');
    if (phoneField && this.data.phoneCode) delete answers[phoneField.key];
    const body = { answers, source_channel: this.channel };
    if (this.data.phoneCode) body.phone_code = this.data.phoneCode;
    if (this.referrer) body.referrer_id = this.referrer;
    return body;
  },
  submit() {
    if (this.data.submitting) return;
    const body = this.body();
    const text = JSON.stringify(body);
    // The same answers after a network failure: the same key, so the server replays the first answer.
    const key = this.pending && this.pending.text === text ? this.pending.key : uuid4();
    this.pending = { text, key };
    this.setData({ submitting: true, error: '', fieldErrors: {} });
    app.api.post('/public/forms/' + this.slug + '/submissions', body, { idempotencyKey: key })
      .then((res) => { this.pending = null; this.setData({ done: res, phoneCode: '' }); })
      .catch((e) => {
        if (e.code !== 'network.error') this.pending = null;
        const fieldErrors = {};
        (e.details || []).forEach((d) => { if (d.field) fieldErrors[String(d.field).replace(/^answers\./, '')] = d.message || '请检查'; });
        const spent = Boolean(body.phone_code) && (e.code === 'submission.invalid_answers' || e.code === 'submission.phone_code_invalid');
        const patch = { fieldErrors, error: e.code === 'network.error' ? '网络不可用，答案已保留，联网后再点提交' : e.message };
        if (spent) {
          Object.assign(patch, { phoneCode: '', phoneOk: false });
          patch.error = (e.code === 'submission.phone_code_invalid' ? '' : e.message + '；') + '手机号授权已使用，请重新点“微信手机号一键填写”';
        }
        this.setData(patch);
      })
      .then(() => this.setData({ submitting: false }));
  },
  mine() { wx.navigateTo({ url: '/pages/my-submissions/my-submissions' }); }
});
