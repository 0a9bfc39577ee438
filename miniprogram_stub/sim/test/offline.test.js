// The two data bugs: work saved offline reaches the server even when the access token expired
// meanwhile; logging out leaves nothing of one rep on the phone for the next.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const backend = require('../backend');
const { makeWx } = require('../wx');
const sim = require('../page');
const { login } = require('../kit');

const TOKENS_KEY = 'mpcrm.tokens';
let be;
test.before(async () => { be = await backend.start(); });
test.after(async () => { if (be) await be.stop(); });

const bind = (phone, person) => login(phone, person);

test('a follow-up saved offline is queued at once and reaches the server after the access token expired', async () => {
  const rep = await be.staff('rep');
  const lead = await rep.post('/leads', { name: '钱总', company: '钱氏物流', phone: '13800138011' });
  const phone = makeWx(be, { phone: 'offline-1', openid: be.rep.openid });
  await bind(phone, be.rep);

  phone.setOffline(true);
  const page = await sim.loadPage('followup/followup', { id: lead.id }, { wx: phone });
  await page.input('textarea', '电话沟通了报价，周五再联系');
  const started = Date.now();
  await page.tap('text=保存');
  await page.waitFor(() => phone.all('showToast').some((t) => /离线/.test(t.title)), 3000, 'the offline toast');
  assert.ok(Date.now() - started < 3000, 'saving offline took ' + (Date.now() - started) + ' ms');

  // A night in the pocket: the access token expired before the network came back.
  const tokens = phone.getStorageSync(TOKENS_KEY);
  phone.setStorageSync(TOKENS_KEY, Object.assign({}, tokens, { access: await be.expiredToken(tokens.access) }));
  phone.setOffline(false);

  const timeline = await page.waitFor(async () => {
    const t = await rep.get('/leads/' + lead.id + '/timeline', { limit: 50 });
    return t.items.some((e) => e.data && e.data.content === '电话沟通了报价，周五再联系') && t;
  }, 30000, 'the follow-up on the server'); // sized for a loaded machine, like the other replay waits
  assert.ok(timeline);
  const refreshed = phone.requests.filter((r) => r.url.endsWith('/auth/refresh'));
  assert.ok(refreshed.length >= 1, 'the replay refreshed the token');
});

test('logout clears the rep\'s data; the next rep on the same phone sees only their own leads', async () => {
  const first = await be.staff('rep');
  const second = await be.staff('rep2');
  await first.post('/leads', { name: '孙总', company: '孙氏五金', phone: '13800138021' });
  await second.post('/leads', { name: '周总', company: '周记餐饮', phone: '13800138022' });

  const phone = makeWx(be, { phone: 'shared', openid: be.rep.openid });
  const home = await bind(phone, be.rep);
  await home.waitForText('孙总', 15000);
  await home.waitFor(() => JSON.stringify(phone.storage()).includes('孙氏五金'), 8000, 'the rep\'s leads cached for offline');

  const me = await sim.loadPage('me/me', {}, { wx: phone });
  await me.waitForText(be.rep.name);
  await me.tap('text=退出登录');
  await me.waitFor(() => phone.last('reLaunch'), 8000, 'back to the login page');
  const left = JSON.stringify(phone.storage());
  assert.ok(!left.includes('孙氏五金') && !left.includes('孙总'), 'the first rep\'s leads stayed on the phone: ' + left.slice(0, 300));
  assert.equal(phone.getStorageSync(TOKENS_KEY), '');

  phone.useAccount(be.rep2.openid);
  const next = await bind(phone, be.rep2);
  await next.waitForText('周总', 15000);
  assert.ok(!next.text().includes('孙总'), 'the second rep sees the first rep\'s lead');
  await next.waitFor(() => JSON.stringify(phone.storage()).includes('周记餐饮'), 8000, 'the second rep\'s leads cached');
  assert.ok(!JSON.stringify(phone.storage()).includes('孙氏五金'));
});

test('leads captured offline are sent after the token expired; one the server refuses waits in "not sent" with its reason, is edited and sent', async () => {
  const rep = await be.staff('rep');
  await rep.post('/leads', { name: '郑总', company: '郑氏建材', phone: '13800138031' }); // a phone that already has a lead
  const phone = makeWx(be, { phone: 'offline-capture', openid: be.rep.openid });
  const home = await bind(phone, be.rep);
  await home.waitForText('郑总', 15000);

  phone.setOffline(true);
  await home.waitForText('离线', 1500); // the cached view, within a second
  const capture = async (name, company, mobile) => {
    const page = await sim.loadPage('capture/capture', {}, { wx: phone });
    await page.input('[data-field="name"]', name);
    await page.input('[data-field="phone"]', mobile);
    await page.input('[data-field="company"]', company);
    await page.tap('text=保存线索');
    await page.waitFor(() => phone.all('navigateBack').length > backs, 3000, 'the capture saved offline');
    backs = phone.all('navigateBack').length;
  };
  let backs = phone.all('navigateBack').length;
  await capture('冯总', '冯氏茶业', '13800138032');
  await capture('郑先生', '郑氏建材', '13800138031'); // the duplicate
  home.show();
  await home.waitForText('冯总');
  assert.match(home.text(), /待发送/);

  const tokens = phone.getStorageSync(TOKENS_KEY);
  phone.setStorageSync(TOKENS_KEY, Object.assign({}, tokens, { access: await be.expiredToken(tokens.access) }));
  phone.setOffline(false);

  const found = await home.waitFor(async () => (await rep.get('/leads', { q: '冯' })).items.find((l) => l.name === '冯总'), 15000, '冯总 on the server');
  assert.equal(found.company, '冯氏茶业');
  const me = await sim.loadPage('me/me', {}, { wx: phone });
  await me.waitForText('未发送（1）', 8000);
  assert.match(me.text(), /新线索 · 郑先生/);
  assert.match(me.text(), /该手机号的线索已存在/); // the server's own reason (lead.duplicate)

  await me.tap('text=修改');
  const edit = await sim.follow(phone);
  assert.equal(edit.data().form.name, '郑先生');
  assert.match(edit.text(), /上次未能提交/);
  await edit.input('[data-field="phone"]', '13800138033');
  await edit.tap('text=重新提交');
  await edit.waitFor(async () => (await rep.get('/leads', { q: '郑先生' })).items.length === 1, 30000, '郑先生 on the server');
  me.show();
  await me.waitFor(() => !me.text().includes('未发送'), 3000, 'the not-sent list empty');
  assert.deepEqual(phone.getStorageSync(phone.getStorageInfoSync().keys.find((k) => k.endsWith('.notSent'))), []);
});

test('logging out with unsent work asks first; cancelling keeps it', async () => {
  const rep = await be.staff('rep');
  const lead = await rep.post('/leads', { name: '陈总', company: '陈记', phone: '13800138041' });
  const phone = makeWx(be, { phone: 'offline-logout', openid: be.rep.openid });
  await bind(phone, be.rep);
  phone.setOffline(true);
  const fu = await sim.loadPage('followup/followup', { id: lead.id }, { wx: phone });
  await fu.input('textarea', '客户在外地，下周回电');
  await fu.tap('text=保存');
  await fu.waitFor(() => phone.all('navigateBack').length, 3000, 'saved offline');
  const me = await sim.loadPage('me/me', {}, { wx: phone });
  await me.waitForText('等待发送（1）');
  phone.answerModal({ confirm: false });
  await me.tap('text=退出登录');
  await me.waitFor(() => phone.last('showModal'), 5000, 'the question');
  assert.match(phone.last('showModal').content, /1 条记录还没有发送/);
  assert.ok(phone.getStorageSync(TOKENS_KEY).access, 'still logged in');
  assert.equal(phone.last('reLaunch'), null);
  phone.setOffline(false);
  await me.waitFor(async () => (await rep.get('/leads/' + lead.id + '/timeline', { limit: 20 })).items.some((e) => e.data && e.data.content === '客户在外地，下周回电'), 30000, 'sent when back online');
});
