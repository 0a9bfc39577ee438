// Each role lands on its own home with only the tabs and entries it can use.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const backend = require('../backend');
const { makeWx } = require('../wx');
const sim = require('../page');
const { login } = require('../kit');

let be;
test.before(async () => { be = await backend.start(); });
test.after(async () => { if (be) await be.stop(); });

test('a customer logs in and lands on the customer home, never on a staff page', async () => {
  const phone = makeWx(be, { phone: 'customer', openid: be.customer.openid });
  const home = await login(phone, null);
  assert.equal(home.route, 'pages/home/home');
  await home.waitForText('我的提交');
  assert.match(home.text(), /你好/);
  assert.match(home.text(), /在线登记/);
  assert.ok(!/没有权限/.test(home.text()));
  await home.tap('text=我的提交');
  assert.equal(phone.last('navigateTo').url, '/pages/my-submissions/my-submissions');

  const before = phone.all('reLaunch').length;
  await sim.loadPage('leads/leads', {}, { wx: phone });
  assert.equal(phone.all('reLaunch').length, before + 1);
  assert.equal(phone.last('reLaunch').url, '/pages/home/home');
  assert.ok(!phone.requests.some((r) => /\/api\/v1\/leads/.test(r.url)), 'a customer\'s phone asked for staff leads');
});

test('a manager has the workbench (approvals, team reports); a rep does not', async () => {
  const phone = makeWx(be, { phone: 'manager', openid: be.manager.openid });
  await login(phone, be.manager);
  const me = await sim.loadPage('me/me', {}, { wx: phone });
  await me.waitForText('工作台');
  assert.match(me.text(), /李经理/);
  assert.match(me.text(), /经理/);
  assert.equal(me.tabBar.data().selected, 4);
  await me.tap('text=审批');
  assert.equal(phone.last('navigateTo').url, '/pages/approvals/approvals');
  await me.tap('text=团队报表');
  assert.equal(phone.last('navigateTo').url, '/pages/dashboard/dashboard');

  const repPhone = makeWx(be, { phone: 'rep', openid: be.rep.openid });
  await login(repPhone, be.rep);
  const repMe = await sim.loadPage('me/me', {}, { wx: repPhone });
  await repMe.waitForText('退出登录');
  assert.ok(!repMe.text().includes('工作台'));
  assert.ok(!repMe.tabBar.data().items.some((t) => t.text === '审批'));
});

test('opening the mini-program again goes straight to the home of whoever is logged in', async () => {
  const phone = makeWx(be, { phone: 'rep-again', openid: be.rep.openid });
  await login(phone, be.rep);
  sim.launch(phone); // a cold start later
  const seen = phone.calls.length;
  await sim.loadPage('login/login', {}, { wx: phone });
  const nav = phone.calls.slice(seen).find((c) => c.api === 'switchTab');
  assert.equal(nav && nav.args.url, '/pages/leads/leads');
});

test('every tab page highlights its own tab; staff pages send a customer home and ask nothing', async () => {
  const phone = makeWx(be, { phone: 'tabs-rep', openid: be.rep.openid });
  await login(phone, be.rep);
  const tasks = await sim.loadPage('tasks/tasks', {}, { wx: phone });
  assert.deepEqual(tasks.tabBar.data().items.map((t) => t.text), ['线索', '公海', '待办', '消息', '我的']);
  assert.equal(tasks.tabBar.data().selected, 2);
  const inbox = await sim.loadPage('notifications/notifications', {}, { wx: phone });
  assert.equal(inbox.tabBar.data().selected, 3);
  phone.setOffline(true);
  const pool = await sim.loadPage('pool/pool', {}, { wx: phone });
  assert.equal(pool.tabBar.data().selected, 1);
  await pool.waitForText('离线时看不到公海', 3000);
  phone.setOffline(false);

  const customer = makeWx(be, { phone: 'tabs-customer', openid: be.customer.openid });
  await login(customer, null);
  const asked = customer.requests.length;
  for (const route of ['tasks/tasks', 'notifications/notifications', 'task/task?id=x', 'task-edit/task-edit', 'contracts/contracts',
    'contract/contract?id=x', 'contract-edit/contract-edit?lead_id=x', 'payment/payment?contract_id=x', 'approvals/approvals',
    'dashboard/dashboard', 'reassign/reassign?id=x']) {
    const before = customer.all('reLaunch').length;
    await sim.loadPage(route, {}, { wx: customer });
    assert.equal(customer.all('reLaunch').length, before + 1, route + ' did not send the customer home');
    assert.equal(customer.last('reLaunch').url, '/pages/home/home');
  }
  assert.deepEqual(customer.requests.slice(asked).map((r) => r.url), [], 'a customer\'s phone asked for staff data');
});

test('a rep who opens the approval inbox or the dashboard is taken to their leads, with nothing asked', async () => {
  const phone = makeWx(be, { phone: 'no-manager', openid: be.rep2.openid });
  await login(phone, be.rep2);
  const asked = phone.requests.length;
  for (const route of ['approvals/approvals', 'dashboard/dashboard', 'reassign/reassign?id=x']) {
    const before = phone.all('switchTab').length;
    await sim.loadPage(route, {}, { wx: phone });
    assert.equal(phone.all('switchTab').length, before + 1, route);
    assert.equal(phone.last('switchTab').url, '/pages/leads/leads');
  }
  assert.equal(phone.requests.slice(asked).filter((r) => /\/approvals|\/reports\/|\/users|\/leads\//.test(r.url)).length, 0);
});
