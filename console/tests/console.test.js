// The web console in a real browser against the real backend: what an admin, a manager and an
// importer do, accessibility, field errors, the session expiring mid-edit.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { axe, choose, goTo, login, openBrowser, REPO, RESULTS, shot, startBackend, today } from './kit.js';

let be;
let browser;
let page;
const tag = Math.random().toString(36).slice(2, 7);

before(async () => {
  be = await startBackend();
  browser = await openBrowser('zh-CN');
  page = browser.page;
});
after(async () => {
  if (browser) await browser.close();
  if (be) await be.stop();
});

test('the console is served at /console with caching headers, no CDN, and its own paths fall back to the page', async () => {
  const index = await be.http('GET', be.base_url + '/console/');
  assert.equal(index.status, 200);
  assert.equal(index.header['cache-control'], 'no-cache');
  assert.doesNotMatch(index.data, /(src|href)\s*=\s*"(https?:)?\/\//, 'nothing from the internet');
  const asset = index.data.match(/src="(\/console\/assets\/[^"]+\.js)"/)[1];
  const js = await be.http('GET', be.base_url + asset);
  assert.equal(js.status, 200);
  assert.equal(js.header['cache-control'], 'public, max-age=31536000, immutable');
  const deep = await be.http('GET', be.base_url + '/console/leads?stage=new');
  assert.equal(deep.status, 200);
  assert.equal(deep.data, index.data);
  const missing = await be.http('GET', be.base_url + '/console/assets/nope-123.js');
  assert.equal(missing.status, 404);
});

test('login has no serious accessibility violations; a wrong password says so', async () => {
  await page.goto(be.base_url + '/console/');
  await page.waitForSelector('#login-username');
  assert.deepEqual(await axe(page), []);
  await shot(page, 'login');
  await page.fill('#login-username', be.admin.username);
  await page.fill('#login-password', 'wrong-password-1');
  await page.click('[data-test=login-submit]');
  await page.waitForSelector('[data-test=login-error]');
  assert.equal(await page.locator('nav').count(), 0);
});

test('an admin creates a team (field errors shown next to the fields), a user with a bind code, a form with a live preview and a rule with its preview', async () => {
  await login(page, be, be.admin);
  const admin = await be.staff('admin');

  // Team: a bad reclaim setting is refused next to its field and nothing is saved.
  await goTo(page, 'teams');
  assert.deepEqual(await axe(page), []);
  await page.click('[data-test=new-team]');
  const teamName = '控制台组-' + tag;
  await page.fill('#team-name', teamName);
  await page.fill('#team-nofollowup', '0');
  await page.click('[data-test=save-team]');
  const error = page.locator('.el-form-item', { has: page.locator('#team-nofollowup') }).locator('.el-form-item__error');
  await error.waitFor();
  assert.ok((await error.textContent()).trim().length > 0);
  assert.equal((await admin.get('/teams', { limit: 100 })).items.filter((x) => x.name === teamName).length, 0, 'nothing saved');
  await page.fill('#team-nofollowup', '5');
  await page.fill('#team-claim', '9');
  await page.click('[data-test=save-team]');
  await page.locator('.el-table', { hasText: teamName }).waitFor();
  const team = (await admin.get('/teams', { limit: 100 })).items.find((x) => x.name === teamName);
  assert.equal(team.reclaim.no_followup_days, 5);
  assert.equal(team.pool.claim_daily_limit, 9);
  await shot(page, 'admin-teams');

  // User, then a bind code shown as text and as a QR code.
  await goTo(page, 'users');
  await page.click('[data-test=new-user]');
  const username = 'console-rep-' + tag;
  await page.fill('#user-username', username);
  await page.fill('#user-name', '赵销售');
  await page.fill('#user-password', 'console-pass-123');
  await choose(page, '#user-team', teamName);
  await page.click('[data-test=save-user]');
  await page.locator('.el-table', { hasText: username }).waitFor();
  const user = (await admin.get('/users', { limit: 100, team_id: team.id })).items.find((u) => u.username === username);
  assert.equal(user.role, 'rep');
  await page.click(`[data-test=bind-${username}]`);
  const code = (await page.locator('[data-test=bind-code]').textContent()).trim();
  assert.match(code, /^\S{10}$/);
  assert.match(await page.locator('[data-test=bind-qr]').getAttribute('src'), /^data:image\/png;base64,/);
  await shot(page, 'admin-bind-code');
  await page.keyboard.press('Escape');

  // Form: the preview follows what is typed; a field without a key is refused on that field.
  await goTo(page, 'forms');
  await page.click('[data-test=new-form]');
  const slug = 'c' + tag;
  await page.fill('#form-slug', slug);
  await page.fill('#form-title', '控制台表单');
  await choose(page, '#form-team', teamName);
  await page.click('[data-test=add-field]');
  await page.fill('[aria-label="显示名 3"]', '预算');
  await page.locator('[data-test=form-preview]').getByText('预算').waitFor();
  assert.match(await page.inputValue('[data-test=share-link]'), new RegExp('slug=' + slug));
  await page.click('[data-test=save-form]');
  await page.locator('[data-test=field-error-2]').waitFor();
  assert.equal((await admin.get('/forms', { limit: 100 })).items.filter((f) => f.slug === slug).length, 0, 'nothing saved');
  await page.fill('[aria-label="字段键 3"]', 'budget');
  await page.click('[data-test=save-form]');
  await page.locator('.el-table', { hasText: slug }).waitFor();
  const form = (await admin.get('/forms', { limit: 100 })).items.find((f) => f.slug === slug);
  assert.deepEqual(form.fields.map((f) => f.key), ['name', 'mobile', 'budget']);
  await shot(page, 'admin-forms');

  // Rule: saved, then "who would get this lead next and why".
  await goTo(page, 'rules');
  await page.click('[data-test=new-rule]');
  await page.fill('#rule-name', '控制台规则-' + tag);
  await choose(page, '#rule-team', teamName);
  await choose(page, '#rule-members', '赵销售');
  await page.keyboard.press('Escape');
  await page.click('[data-test=save-rule]');
  await page.waitForFunction(() => !document.querySelector('[data-test=run-preview]').disabled);
  await page.click('[data-test=run-preview]');
  await page.locator('[data-test=preview-owner]').waitFor();
  assert.equal((await page.locator('[data-test=preview-owner]').textContent()).trim(), '赵销售');
  assert.ok((await page.locator('[data-test=preview-reason]').textContent()).trim().length > 0);
  const rule = (await admin.get('/allocation-rules', { team_id: team.id })).items[0];
  assert.deepEqual(rule.members, [user.id]);
  assert.equal(rule.turn, 0, 'a preview spends no turn');
  await shot(page, 'admin-rule-preview');
  await page.click('.el-dialog__footer button:has-text("关闭")');
});

test('an expired session mid-edit: refreshed quietly; when the refresh is gone too, back to login and the edit is kept', async () => {
  await goTo(page, 'teams');
  // The access token expired: the console refreshes it and the save goes through.
  const session = await page.evaluate(() => JSON.parse(localStorage.getItem('mpcrm.console.session')));
  const expired = await be.expiredToken(session.access);
  await page.evaluate((token) => { const s = JSON.parse(localStorage.getItem('mpcrm.console.session')); s.access = token; localStorage.setItem('mpcrm.console.session', JSON.stringify(s)); }, expired);
  await page.reload();
  await page.click('[data-test=new-team]');
  await page.fill('#team-name', '刷新组-' + tag);
  await page.click('[data-test=save-team]');
  await page.locator('.el-table', { hasText: '刷新组-' + tag }).waitFor();

  // Both tokens unusable: back to login; after logging in the typed name is still there.
  await page.click('[data-test=new-team]');
  await page.fill('#team-name', '草稿组-' + tag);
  await page.evaluate((token) => { const s = JSON.parse(localStorage.getItem('mpcrm.console.session')); s.access = token; s.refresh = 'spent-' + Date.now(); localStorage.setItem('mpcrm.console.session', JSON.stringify(s)); }, expired);
  await page.reload();
  await page.waitForSelector('#login-username');
  assert.match(page.url(), /\/console\/login\?next=teams/);
  await page.fill('#login-username', be.admin.username);
  await page.fill('#login-password', be.admin.password);
  await page.click('[data-test=login-submit]');
  await page.waitForSelector('#team-name');
  assert.equal(await page.inputValue('#team-name'), '草稿组-' + tag);
  await page.click('.el-dialog__footer button:has-text("取消")');
  await page.click('text=退出');
  await page.waitForSelector('#login-username');
});

test('a manager approves a contract with a double click (one decision) and reads the funnel chart, which equals GET /reports/funnel', async () => {
  const rep = await be.staff('rep');
  const lead = await rep.post('/leads', { name: '控制台客户-' + tag, company: '测试公司', tags: ['展会'] });
  const start = today();
  const end = String(Number(start.slice(0, 4)) + 1) + start.slice(4);
  const contract = await rep.post('/contracts', { lead_id: lead.id, title: '年度服务合同-' + tag, amount_fen: 1280000, start_date: start, end_date: end, notes: '含培训两次' });
  await rep.post(`/contracts/${contract.id}/submit`, { version: contract.version });

  await login(page, be, be.manager);
  await goTo(page, 'approvals');
  const card = page.locator('[data-test=contract]');
  await card.getByText('年度服务合同-' + tag).waitFor();
  assert.ok((await card.textContent()).includes('含培训两次'), 'the whole contract is shown');
  await page.fill('#approval-comment', '同意');
  await page.dblclick('[data-test=approve]');
  await page.getByText('没有待审批的合同').waitFor();
  const manager = await be.staff('manager');
  const decided = await manager.get(`/contracts/${contract.id}`);
  assert.equal(decided.status, 'active');
  assert.equal(decided.steps[0].decisions.length, 1, 'one decision');
  const events = (await manager.get(`/leads/${lead.id}/timeline`, { limit: 100 })).items.filter((e) => e.kind === 'contract_approved');
  assert.equal(events.length, 1);

  // Reports are folded from the lead events (the fold_stats job; the scheduler is off here): fold
  // until the approval has reached them, then open the dashboard.
  const day = today();
  let job;
  for (let i = 0; i < 40; i += 1) {
    job = await be.runJob('fold_stats');
    if ((await manager.get('/reports/funnel', { from: day, to: day })).conversions >= 1) break;
    await new Promise((r) => setTimeout(r, 250));
  }
  // The dashboard opened at login, before the fold: its charts were taken down when the page
  // changed; these are the ones drawn now.
  assert.equal(await page.evaluate(() => window.__charts && window.__charts.funnel), undefined);
  const asked = page.waitForRequest((r) => r.url().includes('/api/v1/reports/funnel'));
  await goTo(page, 'dashboard');
  const query = Object.fromEntries(new URL((await asked).url()).searchParams);
  await page.waitForFunction(() => window.__charts && window.__charts.funnel && window.__charts.rfm);
  const option = await page.evaluate(() => window.__charts.funnel);
  const funnel = await manager.get('/reports/funnel', query);
  assert.deepEqual(option.series[0].data.map((d) => [d.stage, d.value]), funnel.stages.map((s) => [s.stage, s.entered]));
  assert.equal(option.series[0].data[0].name, '新线索');
  assert.ok(funnel.created >= 1 && funnel.conversions >= 1, 'the chart has the new lead and its conversion: ' + JSON.stringify({ query, funnel, job }));
  assert.equal((await page.locator('[data-test=kpi-created]').textContent()).trim(), String(funnel.created));
  assert.deepEqual(await axe(page), []);
  await page.locator('.el-message').waitFor({ state: 'detached' });
  await shot(page, 'manager-dashboard');
  fs.copyFileSync(path.join(RESULTS, 'manager-dashboard.png'), path.join(REPO, 'docs', 'console-dashboard.png'));
});

test('an import shows its progress and its rejected rows, which download as CSV', async () => {
  await goTo(page, 'imports');
  const file = path.join(RESULTS, 'import-' + tag + '.csv');
  fs.writeFileSync(file, '姓名,手机,公司\n导入甲-' + tag + ',13900' + String(Date.now()).slice(-6) + ',甲公司\n,13800000000,没有姓名\n导入乙-' + tag + ',,乙公司\n');
  await page.setInputFiles('[data-test=import-file]', file);
  await page.click('[data-test=upload]');
  await page.locator('[data-test=import-counts][data-status=done]').waitFor({ timeout: 30000 });
  assert.equal(await page.locator('[data-test=import-progress]').getAttribute('aria-valuenow'), '100');
  assert.match(await page.locator('[data-test=import-counts]').textContent(), /总数 3 · 新增线索 2 · 合并 0 · 被拒绝的行 1/);
  assert.equal(await page.locator('[data-test=rejected] tbody tr').count(), 1);
  assert.match(await page.locator('[data-test=rejected] tbody tr').textContent(), /^\s*3/);
  const download = page.waitForEvent('download');
  await page.click('[data-test=download-rejected]');
  const saved = path.join(RESULTS, 'rejected-' + tag + '.csv');
  await (await download).saveAs(saved);
  assert.match(fs.readFileSync(saved, 'utf8'), /没有姓名|13800000000|3/);
  await shot(page, 'manager-import');
  assert.deepEqual(browser.problems, []);
});

test('in English (the browser language), a manager filters leads, opens a timeline and reassigns two leads at once', async () => {
  const rep = await be.staff('rep');
  const names = ['Reassign A ' + tag, 'Reassign B ' + tag];
  const leads = [];
  for (const name of names) leads.push(await rep.post('/leads', { name, tags: ['move-' + tag] }));
  const english = await openBrowser('en-US');
  try {
    const p = english.page;
    await p.goto(be.base_url + '/console/');
    assert.equal((await p.locator('[data-test=login-submit]').textContent()).trim(), 'Log in');
    await login(p, be, be.manager);
    await goTo(p, 'leads');
    await p.fill('[aria-label=Tag]', 'move-' + tag);
    await p.click('button:has-text("Search")');
    await p.waitForFunction(() => document.querySelectorAll('.el-table__body .el-table__row').length === 2);
    assert.match(await p.locator('.el-table__body').textContent(), new RegExp(names[1]));
    await p.locator('.el-table__row', { hasText: names[0] }).locator('td').nth(1).click();
    await p.locator('[data-test=timeline]').getByText('created').waitFor();
    for (const name of names) await p.locator('.el-table__row', { hasText: name }).locator('.el-checkbox').click();
    await choose(p, '[aria-label="Reassign to"]', be.rep2.name);
    await p.fill('[aria-label=Reason]', 'holiday cover');
    await p.click('[data-test=reassign]');
    await p.getByText('Reassign: 2').waitFor();
    const manager = await be.staff('manager');
    for (const lead of leads) assert.equal((await manager.get(`/leads/${lead.id}`)).owner_id, be.rep2.id);
    await shot(p, 'manager-leads-en');
    assert.deepEqual(english.problems, []);
  } finally { await english.close(); }
});
