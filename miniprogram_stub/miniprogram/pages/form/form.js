const app = getApp();
const config = require('../../config');

// The public form, rendered from GET /public/forms/{slug}; the phone comes from the phone-number
// button (a one-time phone_code the server exchanges with WeChat), never typed by hand if possible.
Page({
  data: { form: null, answers: {}, phoneCode: '', phoneOk: false, error: '', done: null, submitting: false },
  onLoad(query) {
    this.slug = query.slug || config.formSlug;
    app.api.get('/public/forms/' + this.slug)
      .then((form) => this.setData({ form }))
      .catch((e) => this.setData({ error: e.message }));
  },
  onInput(e) {
    this.setData({ ['answers.' + e.currentTarget.dataset.key]: e.detail.value });
  },
  onPick(e) {
    const field = this.data.form.fields[e.currentTarget.dataset.index];
    this.setData({ ['answers.' + field.key]: field.options[e.detail.value].value });
  },
  onGetPhoneNumber(e) {
    if (e.detail.code) this.setData({ phoneCode: e.detail.code, phoneOk: true, error: '' });
    else this.setData({ error: '需要授权手机号才能提交，也可手动填写' });
  },
  submit() {
    if (this.data.submitting) return;
    this.setData({ submitting: true, error: '' });
    const body = { answers: this.data.answers, source_channel: 'miniprogram' };
    if (this.data.phoneCode) body.phone_code = this.data.phoneCode;
    // A create: api.js adds the Idempotency-Key and keeps it for every retry.
    app.api.post('/public/forms/' + this.slug + '/submissions', body)
      .then((res) => this.setData({ done: res, phoneCode: '' }))
      .catch((e) => this.setData({ error: e.message + (e.details ? ' ' + e.details.map((d) => d.field).join(',') : '') }))
      .then(() => this.setData({ submitting: false }));
  }
});
