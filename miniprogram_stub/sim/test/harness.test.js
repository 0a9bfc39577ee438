// The harness itself: a staff member binds WeChat on the login page and sees the leads page.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const backend = require('../backend');
const { makeWx } = require('../wx');
const sim = require('../page');

let be;
test.before(async () => { be = await backend.start(); });
test.after(async () => { if (be) await be.stop(); });

test('the login page binds the rep over HTTP and the leads page renders the server\'s leads', async () => {
  const phone = makeWx(be, { phone: 'h1', openid: be.rep.openid });
  sim.launch(phone);
  const rep = await be.staff('rep');
  await rep.post('/leads', { name: '赵总', company: '赵氏贸易', phone: '13800138001' });
  const login = await sim.loadPage('login/login', {}, { wx: phone });
  await login.tap('text=我是员工');
  await login.input('.bind-input', be.rep.bind_code);
  await login.tap('text=微信一键登录');
  await login.waitFor(() => phone.last('switchTab') || phone.last('reLaunch'), 15000, 'the rep lands on a tab');
  const leads = await sim.follow(phone);
  await leads.waitForText('赵总', 15000);
  assert.match(leads.text(), /赵氏贸易/);
});

test('a manager scans the bind code the console shows; a QR code that is not one is refused', async () => {
  const phone = makeWx(be, { phone: 'h2', openid: be.manager.openid });
  sim.launch(phone);
  const login = await sim.loadPage('login/login', {}, { wx: phone });
  await login.tap('text=我是员工');
  phone.pointCameraAt('https://example.com/promo');
  await login.tap('.scan');
  await login.waitForText('这不是员工绑定码', 10000);
  assert.equal(login.data().bindCode, '');
  await login.tap('.scan'); // nothing in front of the camera: cancelled, nothing said
  phone.pointCameraAt(' ' + be.manager.bind_code.toLowerCase() + '\n');
  await login.tap('.scan');
  await login.waitFor(() => login.data().bindCode === be.manager.bind_code, 10000, 'the scanned code fills the field');
  assert.equal(login.data().error, '');
  await login.tap('text=微信一键登录');
  await login.waitFor(() => phone.last('switchTab') || phone.last('reLaunch'), 15000, 'the manager lands on their home');
  const me = await be.staff('manager');
  assert.equal((await me.get('/me')).wechat_bound, true);
});
