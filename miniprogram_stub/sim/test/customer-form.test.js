// A rep shares the form; a customer opens the share card, a first try fails (a required answer
// missing, the phone code already spent), the answers stay and only the phone is asked again; the
// second try is recorded with the rep as the lead's referrer, shows in "my submissions", and the
// rep's notification about the new lead opens that lead. A QR code's scene works the same way.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const backend = require('../backend');
const { makeWx } = require('../wx');
const sim = require('../page');

let be;
test.before(async () => { be = await backend.start(); });
test.after(async () => { if (be) await be.stop(); });

test('a customer submits the form from a rep\'s share card; the rep is the referrer', async () => {
  const repPhone = makeWx(be, { phone: 'f-rep', openid: be.rep.openid });
  await sim.launch(repPhone).api.loginWithWechat(be.rep.bind_code);
  const repForm = await sim.loadPage('form/form', { slug: be.form.slug }, { wx: repPhone });
  await repForm.waitForText('分享给客户', 10000);
  const card = repForm.share('button');
  assert.equal(card.path, '/pages/form/form?slug=' + be.form.slug + '&ref=' + be.rep.id);
  assert.equal(card.title, be.form.title);

  // The customer taps the card on their own phone and logs in with WeChat (no bind code).
  const phone = makeWx(be, { phone: 'f-customer', openid: be.customer.openid });
  const app = sim.launch(phone, { path: 'pages/form/form', query: { slug: be.form.slug, ref: be.rep.id }, scene: 1007 });
  const pair = await app.api.loginWithWechat();
  assert.equal(pair.user.role, 'customer');
  const form = await sim.loadPage(card.path, {}, { wx: phone });
  await form.waitForText(be.form.title, 10000);
  await form.input('.in-company', '吴氏茶业');
  await form.change('.in-need', 1);
  await form.waitForText('进销存'); // the select shows its label, not its value
  const firstCode = await be.phoneCode('13700002222');
  await form.trigger('.phone-button', 'getphonenumber', { code: firstCode, errMsg: 'getPhoneNumber:ok' });
  await form.waitForText('已授权手机号');
  await form.tap('.submit'); // the name is missing: the server spent the code, then refused the answers
  await form.waitForText('请重新点', 10000);
  assert.equal(form.data().phoneOk, false);
  assert.match(form.text(), /微信手机号一键填写/);
  assert.equal(form.data().answers.company, '吴氏茶业'); // nothing typed is lost
  assert.equal(form.data().answers.need, 'erp');
  assert.ok(form.data().fieldErrors.name);

  await form.input('.in-name', '吴女士');
  await form.trigger('.phone-button', 'getphonenumber', { code: await be.phoneCode('13700002222'), errMsg: 'getPhoneNumber:ok' });
  await form.tap('.submit');
  await form.waitForText('提交成功', 10000);

  // What the server stored: one lead, from the share card, referred by the rep, dealt to the rep.
  const manager = await be.staff('manager');
  const found = await manager.get('/leads', { q: '吴女士' });
  assert.equal(found.items.length, 1);
  const lead = found.items[0];
  assert.equal(lead.source.referrer_id, be.rep.id);
  assert.equal(lead.source.channel, 'share');
  assert.equal(lead.company, '吴氏茶业');

  // My submissions.
  await form.tap('text=查看我的提交');
  const mine = await sim.follow(phone);
  await mine.waitForText(be.form.title, 10000);
  assert.match(mine.text(), /已收到|处理中/);
  assert.doesNotMatch(mine.text(), /null|undefined|T\d\d:\d\d/);

  // The rep is told about the new lead, and the notification opens it.
  await sim.waitFor(async () => (await (await be.staff('rep')).get('/notifications')).items.some((n) => n.data.lead_id === lead.id), 15000, 'the rep is notified');
  const inbox = await sim.loadPage('notifications/notifications', {}, { wx: repPhone });
  await inbox.waitForText('新线索分配', 10000);
  await inbox.tap('text=新线索分配');
  await inbox.waitFor(() => repPhone.last('navigateTo'), 5000, 'it opens the lead');
  assert.equal(repPhone.last('navigateTo').url, '/pages/lead/lead?id=' + lead.id);
});

test('a QR code\'s scene carries the form and the rep; a referrer that is not staff is not sent', async () => {
  const phone = makeWx(be, { phone: 'f-qr', openid: 'o-sim-qr-' + be.tag });
  sim.launch(phone);
  const form = await sim.loadPage('form/form', { scene: encodeURIComponent(be.form.slug + '~' + be.rep2.id) }, { wx: phone });
  await form.waitForText(be.form.title, 10000);
  await form.input('.in-name', '郑先生');
  await form.input('.in-mobile', '13700003333');
  await form.tap('.submit');
  await form.waitForText('提交成功', 10000);
  const sent = phone.requests.find((r) => r.method === 'POST' && /submissions$/.test(r.url));
  assert.equal(sent.data.referrer_id, be.rep2.id);
  assert.equal(sent.data.source_channel, 'qrcode');
  const lead = (await (await be.staff('manager')).get('/leads', { q: '郑先生' })).items[0];
  assert.equal(lead.source.referrer_id, be.rep2.id);

  const other = await sim.loadPage('form/form', { slug: be.form.slug, ref: 'not-a-user' }, { wx: phone });
  await other.waitForText(be.form.title, 10000);
  await other.input('.in-name', '钱先生');
  await other.input('.in-mobile', '13700004444');
  await other.tap('.submit');
  await other.waitForText('提交成功', 10000);
  const last = phone.requests.filter((r) => r.method === 'POST' && /submissions$/.test(r.url)).pop();
  assert.equal(last.data.referrer_id, undefined);
});
