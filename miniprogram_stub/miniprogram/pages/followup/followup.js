const app = getApp();
const { uuid4 } = require('../../utils/request');

const KINDS = [
  { value: 'call', label: '电话' }, { value: 'visit', label: '拜访（需签到）' }, { value: 'wechat', label: '微信' },
  { value: 'meeting', label: '会议' }, { value: 'note', label: '备注' }
];

// A follow-up carries its own id (uuid), so a retry or an offline replay never logs it twice.
Page({
  data: { kinds: KINDS, kindIndex: 0, content: '', location: null, nextDate: '', nextTime: '10:00', error: '', saving: false },
  onLoad(q) { this.leadId = q.id; this.followupId = uuid4(); },
  onKind(e) { this.setData({ kindIndex: Number(e.detail.value), location: null }); },
  onContent(e) { this.setData({ content: e.detail.value }); },
  onDate(e) { this.setData({ nextDate: e.detail.value }); },
  onTime(e) { this.setData({ nextTime: e.detail.value }); },
  checkIn() {
    wx.getLocation({
      type: 'gcj02',
      success: (loc) => this.setData({ location: { lat: loc.latitude, lng: loc.longitude, accuracy_m: loc.accuracy } }),
      fail: () => this.setData({ error: '签到需要位置权限' })
    });
  },
  save() {
    const kind = KINDS[this.data.kindIndex].value;
    if (kind === 'visit' && !this.data.location) { this.setData({ error: '拜访请先签到' }); return; }
    const body = { id: this.followupId, kind, content: this.data.content };
    if (this.data.location) body.location = this.data.location;
    if (this.data.nextDate) body.next_followup_at = this.data.nextDate + 'T' + this.data.nextTime + ':00+08:00';
    this.setData({ saving: true, error: '' });
    app.api.post('/leads/' + this.leadId + '/followups', body, { retry: true, queueable: true })
      .then((res) => {
        if (res && res.queued) wx.showToast({ title: '已离线保存，联网后自动提交', icon: 'none' });
        wx.navigateBack();
      })
      .catch((e) => this.setData({ error: e.message }))
      .then(() => this.setData({ saving: false }));
  }
});
