// Tasks: a rep creates one for a lead and completes it; the list filters overdue ones; a manager
// gives a task to the rep, whose notification opens it; the manager reassigns a lead.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const backend = require('../backend');
const { makeWx } = require('../wx');
const sim = require('../page');

let be;
test.before(async () => { be = await backend.start(); });
test.after(async () => { if (be) await be.stop(); });

const bound = new Set();
// A phone on which `who` logged in with WeChat (the bind code the first time only, as in life).
async function staffPhone(who, name) {
  const phone = makeWx(be, { phone: name, openid: be[who].openid });
  await sim.launch(phone).api.loginWithWechat(bound.has(who) ? undefined : be[who].bind_code);
  bound.add(who);
  return phone;
}

test('a rep creates a task for a lead, sees it in the list and completes it', async () => {
  const repApi = await be.staff('rep');
  const lead = await repApi.post('/leads', { name: '孙总', company: '孙记餐饮', phone: '13600001111' });
  const late = await repApi.post('/tasks', { title: '寄样品', due_at: new Date(Date.now() - 2 * 3600e3).toISOString() });
  const phone = await staffPhone('rep', 't-rep');

  const edit = await sim.loadPage('task-edit/task-edit', { lead_id: lead.id }, { wx: phone });
  await edit.waitForData((d) => d.leadName === '孙总', 10000);
  assert.equal(edit.data().title, '跟进 孙总');
  await edit.input('.task-title', '给孙总报价');
  const tomorrow = new Date(Date.now() + 86400e3 + 8 * 3600e3).toISOString().slice(0, 10);
  await edit.change('picker', tomorrow);
  await edit.tap('.save');
  await edit.waitFor(() => phone.last('redirectTo'), 10000, 'the new task opens');
  const detail = await sim.follow(phone);
  await detail.waitForText('给孙总报价', 10000);
  assert.match(detail.text(), /明天 10:00/);
  assert.match(detail.text(), /孙总/);
  const taskId = detail.instance.taskId;
  const stored = await repApi.get('/tasks/' + taskId);
  assert.equal(stored.lead_id, lead.id);
  assert.equal(stored.due_at.slice(0, 10) <= tomorrow, true);
  assert.equal(new Date(stored.due_at).getTime(), Date.parse(tomorrow + 'T10:00:00+08:00'));

  const list = await sim.loadPage('tasks/tasks', {}, { wx: phone });
  await list.waitFor(() => list.text().includes('给孙总报价') && list.text().includes('寄样品'), 10000, 'both open tasks');
  assert.match(list.text(), /已逾期 · /);
  await list.tap('text=已逾期');
  await list.waitFor(() => list.text().includes('寄样品') && !list.text().includes('给孙总报价'), 10000, 'only the overdue task');
  await list.tap('text=待完成');
  await list.waitForText('给孙总报价', 10000);

  await detail.tap('.complete');
  await detail.waitForText('已完成', 10000);
  assert.equal((await repApi.get('/tasks/' + taskId)).status, 'done');
  assert.equal((await repApi.get('/tasks/' + late.id)).status, 'open');
});

test('a manager gives the rep a task; the rep\'s notification opens it; the manager reassigns a lead', async () => {
  const mgrPhone = await staffPhone('manager', 't-mgr');
  const edit = await sim.loadPage('task-edit/task-edit', {}, { wx: mgrPhone });
  await edit.waitForData((d) => d.people.length >= 3, 10000);
  const index = edit.data().people.findIndex((p) => p.name === '张销售');
  await edit.input('.task-title', '月底前回访老客户');
  await edit.change('.person-picker', index);
  await edit.tap('.save');
  await edit.waitFor(() => mgrPhone.last('redirectTo'), 10000, 'the task is created');
  const taskId = mgrPhone.last('redirectTo').url.split('id=')[1];
  const repApi = await be.staff('rep');
  assert.equal((await repApi.get('/tasks/' + taskId)).assignee_id, be.rep.id);

  const repPhone = await staffPhone('rep', 't-rep-2');
  const inbox = await sim.loadPage('notifications/notifications', {}, { wx: repPhone });
  await inbox.waitForText('月底前回访老客户', 10000);
  await inbox.tap('text=月底前回访老客户');
  await inbox.waitFor(() => repPhone.last('navigateTo'), 5000, 'the notification opens the task');
  assert.equal(repPhone.last('navigateTo').url, '/pages/task/task?id=' + taskId);
  const task = await sim.follow(repPhone);
  await task.waitForText('月底前回访老客户', 10000);
  const unread = (await repApi.get('/notifications', { unread: 'true' })).items.filter((n) => n.data.task_id === taskId);
  assert.equal(unread.length, 0);

  // Reassign one of the rep's leads to the second rep.
  const lead = await repApi.post('/leads', { name: '钱总', phone: '13600002222' });
  const reassign = await sim.loadPage('reassign/reassign', { id: lead.id }, { wx: mgrPhone });
  await reassign.waitForData((d) => d.people.length >= 1, 10000);
  const to = reassign.data().people.findIndex((p) => p.id === be.rep2.id);
  assert.ok(to >= 0);
  assert.ok(reassign.data().people.every((p) => p.id !== be.rep.id)); // not to the current owner
  await reassign.change('picker', to);
  await reassign.input('.reason', '张销售休假');
  await reassign.tap('text=确认分配');
  await reassign.waitFor(() => mgrPhone.last('navigateBack'), 10000, 'done');
  const manager = await be.staff('manager');
  assert.equal((await manager.get('/leads/' + lead.id)).owner_id, be.rep2.id);
});
