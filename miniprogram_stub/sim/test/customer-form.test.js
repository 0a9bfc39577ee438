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

// A form whose slug fits a QR code with a referrer: wxacode scenes hold 32 characters, the rep id
// takes 24 and the "~" one, so at most 7 are left for the slug.
let qrMade = null;
function qrForm() {
  if (!qrMade) qrMade = be.staff('admin').then((admin) => admin.post('/forms', {
    slug: 'q' + be.tag, title: '门店预约登记', team_id: be.team.id,
    fields: [
      { key: 'name', label: '姓名', type: 'text', required: true, maps_to: 'name' },
      { key: 'mobile', label: '手机号', type: 'phone', required: true }
    ]
  }));
  return qrMade;
}

test('a QR code\'s scene carries the form and the rep; a referrer that is not staff is not sent', async () => {
  const qr = await qrForm();
  const scene = qr.slug + '~' + be.rep2.id;
  assert.ok(scene.length <= 32, scene);
  const phone = makeWx(be, { phone: 'f-qr', openid: 'o-sim-qr-' + be.tag });
  sim.launch(phone);
  const form = await sim.loadPage('form/form', { scene: encodeURIComponent(scene) }, { wx: phone });
  await form.waitForText(qr.title, 10000);
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

test('a QR code whose scene cannot be read says so and asks for nothing', async () => {
  const phone = makeWx(be, { phone: 'f-bad-qr', openid: 'o-sim-bad-qr-' + be.tag });
  sim.launch(phone);
  for (const scene of ['~' + be.rep.id, be.form.slug + '~' + be.rep.id.slice(0, 10), 'a~b~c', 'EXPO!', '%E4%B8']) {
    const asked = phone.requests.length;
    const form = await sim.loadPage('form/form', { scene }, { wx: phone });
    await form.waitForText('二维码无法识别', 3000);
    assert.ok(!form.has('.submit'), scene);
    assert.deepEqual(phone.requests.slice(asked).map((r) => r.url), [], scene);
    form.close();
  }
});

test('the phone button asks for privacy authorisation first; the customer home lists the forms opened', async () => {
  const qr = await qrForm();
  const phone = makeWx(be, { phone: 'f-privacy', openid: 'o-sim-privacy-' + be.tag });
  await sim.launch(phone).api.loginWithWechat();
  const form = await sim.loadPage('form/form', { slug: qr.slug }, { wx: phone });
  await form.waitForText(qr.title, 10000);
  const agreed = phone.askPrivacy('getPhoneNumber'); // what WeChat does when the phone button is tapped first
  await form.waitForText('同意并继续', 3000);
  await form.trigger('text=同意并继续', 'agreeprivacyauthorization', {});
  await agreed;
  assert.ok(!form.text().includes('同意并继续'));
  await form.trigger('.phone-button', 'getphonenumber', { code: await be.phoneCode('13700006666'), errMsg: 'getPhoneNumber:ok' });
  await form.input('.in-name', '褚女士');
  await form.tap('.submit');
  await form.waitForText('提交成功', 10000);

  const home = await sim.loadPage('home/home', {}, { wx: phone });
  await home.waitForText(qr.title);
  assert.match(home.text(), /在线登记/); // the mini-program's own form stays listed
  await home.tap('text=' + qr.title);
  assert.equal(phone.last('navigateTo').url, '/pages/form/form?slug=' + qr.slug);
});

test('no network: the answers and the key are kept, and trying again submits once without a new phone code', async () => {
  const phone = makeWx(be, { phone: 'f-offline', openid: 'o-sim-offline-' + be.tag });
  await sim.launch(phone).api.loginWithWechat();
  const form = await sim.loadPage('form/form', { slug: be.form.slug }, { wx: phone });
  await form.waitForText(be.form.title, 10000);
  await form.input('.in-name', '冯女士');
  await form.trigger('.phone-button', 'getphonenumber', { code: await be.phoneCode('13700005555'), errMsg: 'getPhoneNumber:ok' });
  await form.waitForText('已授权手机号');

  // Known offline: nothing is sent and the page says so at once.
  phone.setOffline(true);
  const started = Date.now();
  await form.tap('.submit');
  await form.waitForText('网络不可用', 3000);
  assert.ok(Date.now() - started < 3000, 'took ' + (Date.now() - started) + ' ms');
  assert.equal(form.data().answers.name, '冯女士');
  assert.equal(form.data().phoneOk, true);

  // Online again: the submission reaches the server, but the answer and the network are lost (a lift).
  phone.setOffline(false);
  phone.loseAnswers(1, { match: /^POST .*\/submissions$/, thenOffline: true });
  await form.tap('.submit');
  await form.waitFor(() => phone.requests.some((r) => r.lost) && !form.data().submitting, 10000, 'the lost answer');
  assert.match(form.text(), /网络不可用/);
  assert.doesNotMatch(form.text(), /提交成功/);

  // Tried again: the same key, so the server answers with the first submission; the code is not asked again.
  phone.setOffline(false);
  await form.tap('.submit');
  await form.waitForText('提交成功', 10000);
  const posts = phone.requests.filter((r) => r.method === 'POST' && /submissions$/.test(r.url));
  assert.equal(posts.length, 2);
  assert.equal(posts[1].header['Idempotency-Key'], posts[0].header['Idempotency-Key']);
  assert.deepEqual(posts[1].data, posts[0].data);
  assert.equal(posts[1].statusCode, 201);
  const leads = (await (await be.staff('manager')).get('/leads', { q: '冯女士' })).items;
  assert.equal(leads.length, 1);
  assert.equal(leads[0].phone, '137****5555');
});
