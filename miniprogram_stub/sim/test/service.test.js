// After the sale (工单): a customer taps 联系售后, picks a category, describes the problem and adds
// a photo (uploaded through the real backend before the ticket is created); the ticket is
// dispatched by rule to the team's service rep, who opens it from the notification, writes an
// internal note (never on the customer's page) and a reply, and resolves it; the customer rates it
// (a low score: the lead is at risk) and a second answer is refused. Staff filter the list; the
// manager assigns; the dashboard's service charts equal GET /reports/service.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const os = require('os');
const path = require('path');
const backend = require('../backend');
const { makeWx } = require('../wx');
const sim = require('../page');

// A real 1×1 PNG: the server reads the type from the bytes.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==', 'base64');
const INTERNAL = '内部：先查保修记录再上门';
const PUBLIC = '您好，已安排师傅明天上门';

let be;
test.before(async () => { be = await backend.start(); });
test.after(async () => { if (be) await be.stop(); });

const bound = new Set(); // a bind code works once; after that WeChat login alone
async function staffPhone(who, name) {
  const phone = makeWx(be, { phone: name, openid: be[who].openid });
  await sim.launch(phone).api.loginWithWechat(bound.has(who) ? undefined : be[who].bind_code);
  bound.add(who);
  return phone;
}

// A recording 2d canvas (the simulator has no pixels), as in contracts.test.js.
function withCanvases(phone) {
  const canvases = {};
  const canvas = () => {
    const calls = [];
    const ctx = new Proxy({ calls }, {
      get(target, key) {
        if (key in target) return target[key];
        if (key === 'measureText') return (t) => ({ width: String(t).length * 7 });
        return (...args) => { calls.push([key, ...args]); };
      },
      set(target, key, value) { target[key] = value; return true; }
    });
    return { width: 0, height: 0, getContext: () => ctx, ctx };
  };
  phone.createSelectorQuery = () => {
    const q = {
      in() { return q; },
      select(sel) {
        return { fields() { return { exec(cb) { const id = sel.replace(/^#/, ''); canvases[id] = canvases[id] || canvas(); setTimeout(() => cb([{ node: canvases[id], width: 340, height: 250 }]), 0); } }; } };
      }
    };
    return q;
  };
  return canvases;
}

test('a customer\'s ticket with a photo reaches the service rep, is answered and resolved, and rated once', async () => {
  // The customer: logged in with WeChat, a lead of their own from the team's form.
  const phone = makeWx(be, { phone: 's-customer', openid: be.customer.openid });
  const app = sim.launch(phone);
  await app.api.loginWithWechat();
  const mobile = '137' + String(Date.now()).slice(-8);
  await app.api.post('/public/forms/' + be.form.slug + '/submissions', { answers: { name: '孙女士', company: '孙氏商贸', mobile } });
  const manager = await be.staff('manager');
  const lead = (await manager.get('/leads', { q: '孙女士' })).items[0];
  assert.ok(lead, 'the form made a lead');
  const owner = await be.staff('rep'); // the form's leads go to the rep, who has made them a customer
  for (const to of ['contacted', 'qualified', 'customer']) await owner.post('/leads/' + lead.id + '/stage', { to });

  // 联系售后 from the home page.
  const home = await sim.loadPage('home/home', {}, { wx: phone });
  await home.waitForText('联系售后', 10000);
  await home.tap('.contact-service');
  const form = await sim.follow(phone);
  await form.waitForData((d) => d.categories.length === 6, 10000);
  await form.change('.category-picker', form.data().categories.findIndex((c) => c.code === 'fault'));
  await form.waitForText('故障报修');
  await form.input('.t-title', '打印机无法开机');
  await form.input('.t-description', '昨天开始按电源键没有反应');
  const photo = path.join(os.tmpdir(), 'mpcrm-sim-' + be.tag + '.png');
  fs.writeFileSync(photo, PNG);
  phone.pickMedia([photo]);
  await form.tap('.add-photo');
  await form.waitForText('待上传');
  await form.tap('.submit');
  await form.waitFor(() => phone.last('redirectTo'), 15000, 'the ticket opens');
  // The photo went up first, through /uploads; then the ticket, with an Idempotency-Key.
  const upload = phone.requests.find((r) => r.method === 'UPLOAD');
  assert.equal(upload.statusCode, 201, JSON.stringify(upload.response));
  fs.rmSync(photo, { force: true });
  const create = phone.requests.find((r) => r.method === 'POST' && /\/tickets$/.test(r.url));
  assert.ok(phone.requests.indexOf(upload) < phone.requests.indexOf(create));
  assert.ok(create.header['Idempotency-Key']);
  assert.deepEqual(create.data.attachments, [upload.response.id]);
  assert.deepEqual(phone.last('requestSubscribeMessage').tmplIds, ['DEMO_TICKET_CUSTOMER_UPDATE', 'DEMO_SURVEY_REQUEST']);
  const mine = await sim.follow(phone);
  await mine.waitForText('打印机无法开机', 10000);
  assert.match(mine.text(), /已分派/);
  assert.match(mine.text(), /照片 1 张/);
  assert.doesNotMatch(mine.text(), /null|undefined|超时|时限/);
  const ticketId = mine.instance.ticketId;

  // Dispatched by the ticket rule to the service rep, with the reason; the photo is theirs to see.
  const service = await be.staff('service');
  let stored = await service.get('/tickets/' + ticketId);
  assert.equal(stored.assignee_id, be.service.id);
  assert.equal(stored.assignment.strategy, 'round_robin');
  assert.match(stored.assignment.reason, /售后工单/);
  assert.equal((await service.get('/uploads/' + upload.response.id + '/meta')).content_type, 'image/png');

  // The service rep is told and the notification opens the ticket.
  const svcPhone = await staffPhone('service', 's-service');
  const inbox = await sim.loadPage('notifications/notifications', {}, { wx: svcPhone });
  await inbox.waitForText('新工单：打印机无法开机', 15000);
  await inbox.tap('text=新工单：打印机无法开机');
  await inbox.waitFor(() => svcPhone.last('navigateTo'), 5000, 'it opens the ticket');
  assert.equal(svcPhone.last('navigateTo').url, '/pages/ticket/ticket?id=' + ticketId);
  const work = await sim.follow(svcPhone);
  await work.waitForText('解决时限', 10000);
  assert.match(work.text(), /处理人：我/);
  assert.match(work.text(), /分派原因：.*售后工单/);

  // An internal note, then a reply to the customer.
  await work.input('.reply-box', INTERNAL);
  await work.change('.internal-switch', true);
  await work.tap('.send');
  await work.waitForText(INTERNAL, 10000);
  assert.match(work.text(), /内部/);
  await work.input('.reply-box', PUBLIC);
  await work.tap('.send');
  await work.waitForText(PUBLIC, 10000);
  stored = await service.get('/tickets/' + ticketId);
  assert.deepEqual(stored.replies.map((r) => [r.body, r.internal]), [[INTERNAL, true], [PUBLIC, false]]);
  assert.equal(stored.status, 'in_progress');

  // The customer's page shows the reply and never the note (nor did any answer carry it).
  await mine.show();
  await mine.waitForText(PUBLIC, 10000);
  assert.match(mine.text(), /客服/);
  assert.match(mine.text(), /处理中/);
  assert.doesNotMatch(mine.text(), /内部/);
  assert.ok(!phone.requests.some((r) => JSON.stringify(r.response || '').indexOf(INTERNAL) >= 0), 'an internal reply reached the customer\'s phone');

  // Resolved, with a note for colleagues.
  svcPhone.answerModal({ confirm: true, content: '更换了电源适配器' });
  await work.tap('.resolve');
  await work.waitForText('处理结果：更换了电源适配器', 10000);
  assert.equal((await service.get('/tickets/' + ticketId)).status, 'resolved');

  // The customer rates it: one star, NPS 3. A second page opened before the answer is refused.
  await mine.show();
  await mine.waitForText('评价服务', 10000);
  assert.match(mine.text(), /重新打开/);
  await mine.tap('.rate');
  const survey = await sim.follow(phone);
  await survey.waitForText('请为本次服务打分', 15000);
  const surveyId = survey.instance.surveyId;
  const stale = await sim.loadPage('survey/survey', { id: surveyId }, { wx: phone });
  await stale.waitForText('提交评价', 10000);
  await survey.tap('.star-1');
  await survey.tap('.nps-3');
  await survey.input('.comment', '等了太久');
  await survey.tap('.submit');
  await survey.waitForText('已评价，感谢你的反馈', 10000);
  assert.match(survey.text(), /非常不满意/);
  await stale.tap('.star-5');
  await stale.tap('.nps-10');
  await stale.tap('.submit');
  await stale.waitForText('这次服务已经评价过了', 10000);
  await stale.waitForText('已评价，感谢你的反馈', 10000);
  const answered = await manager.get('/surveys/' + surveyId);
  assert.deepEqual([answered.csat, answered.nps, answered.comment], [1, 3, '等了太久']);

  // A low score: the account owner sees the customer at risk.
  await sim.waitFor(async () => (await manager.get('/leads/' + lead.id)).stage === 'at_risk', 10000, 'the lead is at risk');
});

test('staff filter the ticket list; a manager assigns to service staff; the lead lists its tickets; the dashboard equals /reports/service', async () => {
  const manager = await be.staff('manager');
  const service = await be.staff('service');
  const repApi = await be.staff('rep');
  const leadId = (await repApi.post('/leads', { name: '钱总', company: '钱氏物流', phone: '139' + String(Date.now()).slice(-8) })).id;
  // One ticket of the lead resolved already (dispatched by rule to the service rep).
  const done = await repApi.post('/tickets', { category: 'fault', title: '扫码枪失灵', description: '换了电池也不行', lead_id: leadId });
  const resolved = await service.post('/tickets/' + done.id + '/resolve', { version: (await service.get('/tickets/' + done.id)).version });
  assert.equal(resolved.status, 'resolved');

  // The service rep's list starts with what is theirs; the status filter is the server's.
  const svcPhone = await staffPhone('service', 's-service-2');
  const list = await sim.loadPage('tickets/tickets', {}, { wx: svcPhone });
  await list.waitForData((d) => d.items.length >= 1 || d.empty, 10000);
  assert.equal(list.data().mine, true);
  assert.deepEqual(list.data().items.map((t) => t.id), (await service.get('/tickets', { assignee_id: be.service.id })).items.map((t) => t.id));
  await list.change('.status-picker', list.data().statuses.findIndex((s) => s.value === 'open'));
  await list.waitForText('没有符合条件的工单', 10000);
  await list.change('.status-picker', list.data().statuses.findIndex((s) => s.value === 'resolved'));
  await list.waitForData((d) => !d.loading && d.items.length >= 1, 10000);
  assert.deepEqual(list.data().items.map((t) => t.id), (await service.get('/tickets', { status: 'resolved', assignee_id: be.service.id })).items.map((t) => t.id));
  await list.tap('.breached-chip');
  await list.waitForData((d) => !d.loading && d.breachedOnly, 10000);
  assert.deepEqual(list.data().items.map((t) => t.id), (await service.get('/tickets', { status: 'resolved', breached: 'true', assignee_id: be.service.id })).items.map((t) => t.id));
  const sent = svcPhone.requests.filter((r) => /\/tickets\?/.test(r.url)).pop();
  assert.match(sent.url, /status=resolved/);
  assert.match(sent.url, /breached=true/);

  // A new staff ticket for the lead, assigned by the manager to a service staff member.
  const opened = await manager.post('/tickets', { category: 'consult', title: '发票抬头怎么改', description: '客户来电询问', lead_id: leadId, priority: 'urgent' });
  const mgrPhone = await staffPhone('manager', 's-manager');
  const team = await sim.loadPage('tickets/tickets', {}, { wx: mgrPhone });
  await team.waitForText('发票抬头怎么改', 10000);
  assert.equal(team.data().mine, false); // a manager starts with the team's
  await team.change('.priority-picker', team.data().priorities.findIndex((p) => p.value === 'urgent'));
  await team.waitForData((d) => !d.loading && d.items.length >= 1 && d.items.every((t) => t.priority === 'urgent'), 10000);
  await team.tap('text=发票抬头怎么改');
  const detail = await sim.follow(mgrPhone);
  await detail.waitForText('指派给', 10000);
  assert.deepEqual(detail.data().people.map((p) => p.name), ['赵售后']); // service staff only
  await detail.change('.assign-picker', 0);
  await detail.waitFor(async () => (await manager.get('/tickets/' + opened.id)).assignment.strategy === 'manual', 10000, 'assigned');
  assert.equal((await manager.get('/tickets/' + opened.id)).assignee_id, be.service.id);
  await detail.waitForText('处理人：赵售后', 10000);

  // The lead page lists the lead's tickets.
  const leadPage = await sim.loadPage('lead/lead', { id: leadId }, { wx: mgrPhone });
  await leadPage.waitForText('工单', 10000);
  await leadPage.tap('.lead-tickets');
  assert.equal(mgrPhone.last('navigateTo').url, '/pages/tickets/tickets?lead_id=' + leadId);
  const ofLead = await sim.follow(mgrPhone);
  await ofLead.waitForData((d) => !d.loading && d.items.length >= 1, 10000);
  assert.deepEqual(ofLead.data().items.map((t) => t.id), (await manager.get('/tickets', { lead_id: leadId })).items.map((t) => t.id));

  // The dashboard's service charts are the report's figures.
  await be.runJob('fold_stats');
  const canvases = withCanvases(mgrPhone);
  const board = await sim.loadPage('dashboard/dashboard', {}, { wx: mgrPhone });
  await board.waitForData((d) => d.charts.serviceVolume, 15000);
  await board.waitFor(() => canvases.serviceNps && canvases.serviceNps.ctx.calls.length, 5000, 'the service charts are drawn');
  const report = await manager.get('/reports/service', { from: board.data().from, to: board.data().to });
  const t = report.totals;
  assert.deepEqual(board.data().charts.serviceVolume.series[0].data, [t.tickets_opened, t.tickets_resolved, t.tickets_reopened, t.resolved_breached]);
  assert.ok(t.tickets_opened >= 2 && t.tickets_resolved >= 1, JSON.stringify(t));
  const handler = report.handlers.find((h) => h.handler_id === be.service.id);
  assert.ok(handler, JSON.stringify(report.handlers));
  const i = board.data().charts.serviceCsat.categories.indexOf('赵售后');
  assert.equal(board.data().charts.serviceCsat.series[0].data[i], handler.csat_avg || 0);
  assert.equal(board.data().charts.serviceNps.series[0].data[i], handler.nps || 0);
  assert.match(board.text(), new RegExp('新工单'));
  assert.match(board.text(), new RegExp('解决 ' + handler.tickets_resolved + ' · 满意度'));
});
