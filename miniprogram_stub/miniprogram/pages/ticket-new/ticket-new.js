const app = getApp();
const config = require('../../config');
const session = require('../../utils/session');
const format = require('../../utils/format');
const view = require('../../lib/view');
const { uuid4 } = require('../../utils/request');

const CATEGORIES_KEY = 'mpcrm.ticketCategories'; // the last /tickets/categories answer, for offline use
// The subscribe messages a customer is asked for when they open a ticket: its updates (a reply, resolved)
// and the satisfaction survey afterwards (templates.js; WeChat takes at most three ids).
const SUBSCRIBE_KINDS = ['ticket_customer_update', 'survey_request'];

function builtInCategories() {
  return Object.keys(format.TICKET_CATEGORIES).map((code) => ({ code, label: format.TICKET_CATEGORIES[code] }));
}

// 联系售后: the customer picks a category, writes a title and what went wrong, and adds up to 9
// photos (wx.chooseMedia). The photos are uploaded first (POST /uploads: that needs the network,
// and the page says so); then the ticket is created with their ids. The create carries one
// Idempotency-Key for this draft, so without a network it waits in the queue and is sent once when
// the network returns. Opened with ?resend=<id> it edits a ticket the server refused (我的 → 未发送).
Page({
  data: {
    categories: [], categoryIndex: -1, title: '', description: '', photos: [], max: view.MAX_PHOTOS,
    online: true, saving: false, step: '', error: '', resending: false
  },
  onLoad(q) {
    this.key = uuid4();
    this.resendId = q && q.resend ? decodeURIComponent(q.resend) : null;
    const entry = this.resendId ? app.api.peekNotSent(this.resendId) : null;
    if (entry && entry.data) {
      const d = entry.data;
      this.pendingCategory = d.category;
      this.setData({
        resending: true, title: format.text(d.title), description: format.text(d.description),
        photos: (d.attachments || []).map((id, i) => ({ key: 'sent-' + i, id, path: '', state: 'done' })),
        error: entry.error ? '上次未能提交：' + format.text(entry.error.message) : ''
      });
    }
  },
  onShow() {
    if (!session.guard(wx, app.api.user(), 'customer')) return;
    this.setData({ online: app.api.isOnline() });
    if (!this.unwatch) this.unwatch = app.api.onChange((what, s) => { if (what === 'network') this.setData({ online: s.online }); });
    if (!this.data.categories.length) this.loadCategories();
  },
  onHide() { if (this.unwatch) { this.unwatch(); this.unwatch = null; } },
  onUnload() { this.onHide(); },
  loadCategories() {
    const show = (items) => {
      const want = this.pendingCategory || (this.data.categories[this.data.categoryIndex] || {}).code;
      this.setData({ categories: items, categoryIndex: items.findIndex((c) => c.code === want) });
    };
    return app.api.get('/tickets/categories')
      .then((r) => { const items = r.items.map((c) => ({ code: c.code, label: c.label })); app.api.storage.set(CATEGORIES_KEY, items); show(items); })
      .catch(() => { const cached = app.api.storage.get(CATEGORIES_KEY); show(Array.isArray(cached) && cached.length ? cached : builtInCategories()); });
  },
  onCategory(e) { this.setData({ categoryIndex: Number(e.detail.value), error: '' }); },
  onTitle(e) { this.setData({ title: e.detail.value }); },
  onDescription(e) { this.setData({ description: e.detail.value }); },
  addPhotos() {
    const room = this.data.max - this.data.photos.length;
    if (room <= 0) { this.setData({ error: '最多上传 ' + this.data.max + ' 张照片' }); return; }
    wx.chooseMedia({
      count: room, mediaType: ['image'], sourceType: ['album', 'camera'], sizeType: ['compressed'],
      success: (res) => {
        const added = (res.tempFiles || []).slice(0, room).map((f, i) => ({ key: Date.now() + '-' + i, id: null, path: f.tempFilePath, state: 'waiting' }));
        this.setData({ photos: this.data.photos.concat(added), error: '' });
      }
    });
  },
  removePhoto(e) {
    const index = Number(e.currentTarget.dataset.index);
    this.setData({ photos: this.data.photos.filter((p, i) => i !== index) });
  },
  // Every photo not yet on the server, one after another; resolves the upload ids in order.
  uploadPhotos() {
    const photos = this.data.photos;
    return photos.reduce((chain, photo, i) => chain.then((ids) => {
      if (photo.id) return ids.concat([photo.id]);
      this.setData({ ['photos[' + i + '].state']: 'uploading', step: '正在上传第 ' + (i + 1) + '/' + photos.length + ' 张照片' });
      return app.api.upload(photo.path).then((up) => {
        this.setData({ ['photos[' + i + '].id']: up.id, ['photos[' + i + '].state']: 'done' });
        return ids.concat([up.id]);
      }, (err) => {
        this.setData({ ['photos[' + i + '].state']: 'failed' });
        throw err;
      });
    }), Promise.resolve([]));
  },
  // The subscribe-message request must come from the tap itself (WeChat refuses it later).
  subscribe() {
    const ids = SUBSCRIBE_KINDS.map((k) => config.templates[k]).filter(Boolean);
    if (!ids.length || !wx.requestSubscribeMessage) return Promise.resolve();
    return new Promise((resolve) => {
      wx.requestSubscribeMessage({
        tmplIds: ids,
        success: (res) => {
          const accepted = ids.filter((id) => res[id] === 'accept');
          Promise.all(accepted.map((id) => app.api.post('/me/subscriptions', { template_id: id, accepted: true }, { noKey: true, retry: false }).catch(() => null)))
            .then(() => resolve());
        },
        fail: () => resolve()
      });
    });
  },
  submit() {
    if (this.data.saving) return;
    const category = this.data.categories[this.data.categoryIndex];
    const draft = { category: category && category.code, title: this.data.title, description: this.data.description, photos: this.data.photos };
    const problem = view.ticketDraftError(draft);
    if (problem) { this.setData({ error: problem }); return; }
    const needsUpload = this.data.photos.some((p) => !p.id);
    if (needsUpload && !app.api.isOnline()) {
      this.setData({ error: '照片需要联网上传：请联网后再提交，或删除照片后离线保存' });
      return;
    }
    this.setData({ saving: true, error: '', step: '' });
    const subscribed = this.subscribe();
    subscribed
      .then(() => this.uploadPhotos())
      .then((attachments) => {
        this.setData({ step: '正在提交工单' });
        const body = { category: draft.category, title: draft.title.trim(), description: draft.description.trim() };
        if (attachments.length) body.attachments = attachments;
        return app.api.post('/tickets', body, { idempotencyKey: this.key, retry: true, queueable: true, kind: 'ticket', label: '售后工单 · ' + body.title });
      })
      .then((res) => {
        if (this.resendId) { app.api.discard(this.resendId); this.resendId = null; }
        this.setData({ saving: false, step: '' });
        if (res && res.queued) {
          wx.showToast({ title: '已离线保存，联网后自动提交', icon: 'none' });
          wx.navigateBack();
        } else {
          wx.showToast({ title: '已提交', icon: 'success' });
          wx.redirectTo({ url: '/pages/ticket/ticket?id=' + res.id });
        }
      })
      .catch((e) => {
        const text = e && e.offline ? '照片需要联网上传：请联网后再提交，或删除照片后离线保存' : format.errorText(e);
        this.setData({ saving: false, step: '', error: text });
      });
  }
});
