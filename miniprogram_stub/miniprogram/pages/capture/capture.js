const app = getApp();
const session = require('../../utils/session');
const format = require('../../utils/format');
const { uuid4 } = require('../../utils/request');

const LEVELS = [{ value: '', label: '未定' }, { value: 'A', label: 'A' }, { value: 'B', label: 'B' }, { value: 'C', label: 'C' }];

// Capture a lead met in the field. It carries its own id (uuid) and its POST an Idempotency-Key, so
// it can be saved with no network: it waits in the queue and is sent when the network returns,
// never twice. Opened with ?resend=<id> it edits a capture the server refused (the "not sent" list).
Page({
  data: { form: { name: '', phone: '', company: '', city: '', tags: '', notes: '' }, levels: LEVELS, levelIndex: 0, nextDate: '', nextTime: '10:00', error: '', saving: false, resending: false },
  onLoad(q) {
    this.leadId = uuid4();
    this.resendId = q && q.resend ? decodeURIComponent(q.resend) : null;
    const entry = this.resendId ? app.api.peekNotSent(this.resendId) : null;
    if (entry && entry.data) {
      const d = entry.data;
      this.leadId = d.id || this.leadId;
      this.setData({
        resending: true,
        error: entry.error ? '上次未能提交：' + format.text(entry.error.message) : '',
        form: { name: format.text(d.name), phone: format.text(d.phone), company: format.text(d.company), city: format.text(d.city), tags: (d.tags || []).join(' '), notes: format.text(d.notes) },
        levelIndex: Math.max(0, LEVELS.findIndex((x) => x.value === (d.level || ''))),
        nextDate: d.next_followup_at ? format.dateValue(d.next_followup_at) : '',
        nextTime: d.next_followup_at ? format.time(d.next_followup_at) : '10:00'
      });
    }
  },
  onShow() { session.guard(wx, app.api.user(), 'staff'); },
  onField(e) { this.setData({ ['form.' + e.currentTarget.dataset.field]: e.detail.value }); },
  onLevel(e) { this.setData({ levelIndex: Number(e.detail.value) }); },
  onDate(e) { this.setData({ nextDate: e.detail.value }); },
  onTime(e) { this.setData({ nextTime: e.detail.value }); },
  body() {
    const f = this.data.form;
    const body = { id: this.leadId, name: String(f.name).trim() };
    const put = (k, v) => { if (String(v || '').trim()) body[k] = String(v).trim(); };
    put('phone', String(f.phone || '').replace(/[\s-]/g, ''));
    put('company', f.company);
    put('city', f.city);
    put('notes', f.notes);
    const tags = String(f.tags || '').split(/[\s,，、]+/).filter(Boolean);
    if (tags.length) body.tags = tags;
    if (LEVELS[this.data.levelIndex].value) body.level = LEVELS[this.data.levelIndex].value;
    if (this.data.nextDate) body.next_followup_at = format.isoAt(this.data.nextDate, this.data.nextTime);
    return body;
  },
  save() {
    if (this.data.saving) return;
    const body = this.body();
    if (!body.name) { this.setData({ error: '请填写姓名' }); return; }
    if (body.phone && !/^1\d{10}$/.test(body.phone)) { this.setData({ error: '手机号应为 11 位数字' }); return; }
    this.setData({ saving: true, error: '' });
    app.api.post('/leads', body, { retry: true, queueable: true, kind: 'capture', label: '新线索 · ' + body.name })
      .then((res) => {
        if (this.resendId) app.api.discard(this.resendId);
        this.setData({ saving: false });
        if (res && res.queued) {
          wx.showToast({ title: '已离线保存，联网后自动提交', icon: 'none' });
          wx.navigateBack();
        } else {
          wx.showToast({ title: '已创建', icon: 'success' });
          wx.redirectTo({ url: '/pages/lead/lead?id=' + res.id });
        }
      })
      .catch((e) => this.setData({ saving: false, error: format.errorText(e) }));
  }
});
