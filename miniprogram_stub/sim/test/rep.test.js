// A rep's day in the mini-program, against the real backend: log in, find a lead by search and
// filters, reveal and call the phone, move the stage, edit, a visit with check-in (privacy
// authorisation first) and the next date, claim from the pool, release. Assertions read what the
// pages show and what the server stored.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const backend = require('../backend');
const { makeWx } = require('../wx');
const sim = require('../page');
const format = require('../../miniprogram/utils/format');
const { login } = require('../kit');

let be;
test.before(async () => { be = await backend.start(); });
test.after(async () => { if (be) await be.stop(); });

test('the rep\'s daily path', async () => {
  const rep = await be.staff('rep');
  const rep2 = await be.staff('rep2');
  const lead = await rep.post('/leads', { name: '吴总', company: '吴氏机械', phone: '13800138051', tags: ['展会'] });
  await rep.post('/leads', { name: '何总', company: '何记食品', phone: '13800138052', tags: ['转介绍'] });
  const pooled = await rep2.post('/leads', { name: '林总', company: '林氏纺织', phone: '13800138053' });
  await rep2.post('/leads/' + pooled.id + '/release', { reason: '客户不在本区域' });

  const phone = makeWx(be, { phone: 'rep-day', openid: be.rep.openid });
  const leads = await login(phone, be.rep);
  assert.equal(leads.route, 'pages/leads/leads');
  await leads.waitForText('吴总', 15000);
  // the rep's tabs, no approvals
  assert.deepEqual(leads.tabBar.data().items.map((t) => t.text), ['线索', '公海', '待办', '消息', '我的']);
  assert.equal(leads.tabBar.data().selected, 0);
  assert.match(leads.text(), /新线索/); // a stage in words
  assert.ok(!/null|undefined|\bnew\b/.test(leads.text()), leads.text());

  // search and filters
  await leads.input('.q', '吴');
  await leads.tap('text=搜索');
  await leads.waitFor(() => leads.text().includes('吴总') && !leads.text().includes('何总'), 8000, 'search by name');
  await leads.tap('text=重置');
  await leads.waitForText('何总');
  await leads.input('.tag', '转介绍');
  await leads.confirm('.tag', '转介绍');
  await leads.waitFor(() => leads.text().includes('何总') && !leads.text().includes('吴总'), 8000, 'filter by tag');
  await leads.tap('text=重置');
  await leads.waitForText('吴总');
  await leads.change('text=全部阶段', 2); // 已联系
  await leads.waitForText('暂无线索');
  await leads.tap('text=重置');
  await leads.waitForText('吴总');

  // the lead: reveal and call
  await leads.tap('text=吴总');
  const page = await sim.follow(phone);
  await page.waitForText('吴氏机械');
  assert.match(page.text(), /138\*\*\*\*8051/);
  assert.match(page.text(), /创建线索/);
  await page.tap('text=拨打');
  await page.waitFor(() => phone.last('makePhoneCall'), 5000, 'the call');
  assert.equal(phone.last('makePhoneCall').phoneNumber, '13800138051');
  assert.match(page.text(), /13800138051/);

  // stage: the allowed moves from the lifecycle
  assert.deepEqual(page.data().moves.map((m) => m.to), ['contacted', 'lost']);
  await page.tap('text=改为已联系');
  await page.waitForText('阶段：新线索 → 已联系', 8000);
  assert.equal((await rep.get('/leads/' + lead.id)).stage, 'contacted');
  assert.deepEqual(page.data().moves.map((m) => m.to), ['qualified', 'lost']);

  // edit
  await page.tap('text=编辑');
  await page.input('[data-field="city"]', '苏州');
  await page.tap('text=保存资料');
  await page.waitForText('城市：苏州', 8000);
  assert.equal((await rep.get('/leads/' + lead.id)).city, '苏州');

  // a visit: check in (privacy first), next follow-up tomorrow
  await page.tap('text=写跟进');
  const fu = await sim.follow(phone);
  await fu.change('text=方式：电话', 1);
  await fu.waitForText('拜访签到');
  await fu.tap('text=拜访签到（获取位置）');
  await fu.waitForText('同意并继续', 3000); // WeChat asked for privacy authorisation: our pop-up
  await fu.trigger('text=同意并继续', 'agreeprivacyauthorization', {}); // the open-type button's event
  await fu.waitForText('签到位置：31.2304, 121.4737', 5000);
  await fu.input('textarea', '上门演示，客户要报价');
  const tomorrow = format.dateValue(Date.now() + 86400000);
  await fu.change('text=下次跟进：不安排', tomorrow);
  await fu.waitForText('下次跟进：' + tomorrow);
  await fu.tap('text=保存');
  await fu.waitFor(() => phone.last('navigateBack'), 8000, 'saved');
  const stored = await rep.get('/leads/' + lead.id);
  assert.equal(format.dateValue(stored.next_followup_at), tomorrow);
  page.show();
  await page.waitForText('跟进 · 拜访', 8000);
  assert.match(page.text(), /下次跟进：明天 10:00/);
  assert.match(page.text(), /签到：/);

  // the pool: claim
  const pool = await sim.loadPage('pool/pool', {}, { wx: phone });
  await pool.waitForText('林总', 8000);
  assert.equal(pool.tabBar.data().selected, 1);
  await pool.tap('[data-id="' + pooled.id + '"]');
  await pool.waitFor(() => phone.all('showToast').some((t) => t.title === '已领取'), 8000, 'claimed');
  assert.equal((await rep.get('/leads/' + pooled.id)).owner_id, be.rep.id);

  // release it again with a reason
  const claimed = await sim.follow(phone);
  await claimed.waitForText('林氏纺织');
  phone.answerModal({ confirm: true, content: '客户暂无需求' });
  await claimed.tap('text=释放');
  await claimed.waitFor(() => phone.all('showToast').some((t) => t.title === '已释放到公海'), 8000, 'released');
  assert.ok((await rep.get('/pool', { limit: 100 })).items.some((l) => l.id === pooled.id), 'back in the pool');
});

test('the lead page leads on to a task, the contracts, a new contract; a manager also reassigns', async () => {
  const rep = await be.staff('rep');
  const lead = await rep.post('/leads', { name: '韩总', company: '韩氏电器', phone: '13800138061' });
  const phone = makeWx(be, { phone: 'rep-links', openid: be.rep.openid });
  await login(phone, be.rep);
  const page = await sim.loadPage('lead/lead', { id: lead.id }, { wx: phone });
  await page.waitForText('韩氏电器', 10000);
  const opens = async (label, url) => {
    await page.tap('text=' + label);
    assert.equal(phone.last('navigateTo').url, url, label);
  };
  await opens('新建待办', '/pages/task-edit/task-edit?lead_id=' + lead.id);
  await opens('合同', '/pages/contracts/contracts?lead_id=' + lead.id);
  await opens('起草合同', '/pages/contract-edit/contract-edit?lead_id=' + lead.id);
  await opens('写跟进', '/pages/followup/followup?id=' + lead.id);
  assert.ok(!page.text().includes('转给同事'));

  const mgr = makeWx(be, { phone: 'mgr-links', openid: be.manager.openid });
  await login(mgr, be.manager);
  const seen = await sim.loadPage('lead/lead', { id: lead.id }, { wx: mgr });
  await seen.waitForText('转给同事', 10000);
  await seen.tap('text=转给同事');
  assert.equal(mgr.last('navigateTo').url, '/pages/reassign/reassign?id=' + lead.id);
});
