const app = getApp();
const session = require('../../utils/session');
const format = require('../../utils/format');
const { uuid4 } = require('../../utils/request');

const KINDS = [
  { value: 'call', label: '电话' }, { value: 'visit', label: '拜访（需签到）' }, { value: 'wechat', label: '微信' },
  { value: 'meeting', label: '会议' }, { value: 'note', label: '备注' }
];

// A follow-up carries its own id (uuid), so a retry or an offline replay never logs it twice.
// A visit needs a check-in: wx.getLocation, after WeChat's privacy authorisation (the <privacy>
// pop-up). Saved offline it waits in the queue; opened with ?resend=<id> it edits one the server
// refused (the "not sent" list).
Page({
  data: { kinds: KINDS, kindIndex: 0, content: '', location: null, locationText: '', nextDate: '', nextTime: '10:00', error: '', saving: false, locating: false },
  onLoad(q) {
    this.leadId = q.id;
    this.followupId = uuid4();
    this.resendId = q.resend ? decodeURIComponent(q.resend) : null;
    const entry = this.resendId ? app.api.peekNotSent(this.resendId) : null;
    if (entry && entry.data) {
      const d = entry.data;
      this.leadId = (entry.path.match(/^\/leads\/([^/]+)\/followups$/) || [])[1] || this.leadId;
      this.followupId = d.id || this.followupId;
      this.setData({
        kindIndex: Math.max(0, KINDS.findIndex((k) => k.value === d.kind)), content: format.text(d.content),
        location: d.location || null, locationText: format.location(d.location),
        nextDate: d.next_followup_at ? format.dateValue(d.next_followup_at) : '', nextTime: d.next_followup_at ? format.time(d.next_followup_at) : '10:00',
        error: entry.error ? '上次未能提交：' + format.text(entry.error.message) : ''
      });
    }
  },
  onShow() { session.guard(wx, app.api.user(), 'staff'); },
  onKind(e) { this.setData({ kindIndex: Number(e.detail.value), location: null, locationText: '' }); },
  onContent(e) { this.setData({ content: e.detail.value }); },
  onDate(e) { this.setData({ nextDate: e.detail.value }); },
  onTime(e) { this.setData({ nextTime: e.detail.value }); },
  checkIn() {
    this.setData({ locating: true, error: '' });
    wx.getLocation({
      type: 'gcj02',
      success: (loc) => {
        const location = { lat: loc.latitude, lng: loc.longitude, accuracy_m: loc.accuracy };
        this.setData({ location, locationText: format.location(location), locating: false });
      },
      fail: (err) => this.setData({ locating: false, error: /privacy/.test((err && err.errMsg) || '') ? '需要同意隐私保护指引才能签到' : '签到需要位置权限，请在设置中允许' })
    });
  },
  save() {
    if (this.data.saving) return;
    const kind = KINDS[this.data.kindIndex].value;
    if (kind === 'visit' && !this.data.location) { this.setData({ error: '拜访请先签到' }); return; }
    if (!String(this.data.content).trim()) { this.setData({ error: '请填写跟进内容' }); return; }
    const body = { id: this.followupId, kind, content: String(this.data.content).trim() };
    if (this.data.location) body.location = this.data.location;
    if (this.data.nextDate) body.next_followup_at = format.isoAt(this.data.nextDate, this.data.nextTime);
    const lead = app.api.localLead(this.leadId);
    const label = '跟进 · ' + format.text(lead && lead.name, '线索') + ' · ' + KINDS[this.data.kindIndex].label.replace(/（.*）/, '');
    this.setData({ saving: true, error: '' });
    app.api.post('/leads/' + this.leadId + '/followups', body, { retry: true, queueable: true, kind: 'followup', label })
      .then((res) => {
        if (this.resendId) app.api.discard(this.resendId);
        this.setData({ saving: false });
        wx.showToast({ title: res && res.queued ? '已离线保存，联网后自动提交' : '已保存', icon: res && res.queued ? 'none' : 'success' });
        wx.navigateBack();
      })
      .catch((e) => this.setData({ saving: false, error: format.errorText(e) }));
  }
});
