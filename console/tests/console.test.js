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

test('an admin creates a team (field errors shown next to the fields), a user with a bind code, a form with a live preview and a rule previewed before it is saved', async () => {
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

  // Rule: "who would get this lead next and why" before it is saved (POST /allocation-rules/preview),
  // with the performance strategy and a city match; a lead from elsewhere is not matched. Then saved.
  await goTo(page, 'rules');
  await page.click('[data-test=new-rule]');
  await page.fill('#rule-name', '控制台规则-' + tag);
  await choose(page, '#rule-team', teamName);
  await choose(page, '#rule-strategy', '按业绩');
  await page.locator('#rule-floor').waitFor();
  // The unsaved rule is checked as on create: a bad city is named next to its field, a rule with
  // no members under the rule.
  await page.fill('#rule-city', '杭.州');
  await page.click('[data-test=run-preview]');
  await page.locator('.el-form-item', { has: page.locator('#rule-city') }).locator('.el-form-item__error').waitFor();
  await page.fill('#rule-city', '杭州');
  await page.click('[data-test=run-preview]');
  await page.locator('[data-test=rule-error]').waitFor();
  await choose(page, '#rule-members', '赵销售');
  await page.keyboard.press('Escape');
  await page.fill('#probe-city', '杭州');
  await page.click('[data-test=run-preview]');
  await page.locator('[data-test=preview-owner]').waitFor();
  assert.equal((await page.locator('[data-test=preview-owner]').textContent()).trim(), '赵销售');
  assert.ok((await page.locator('[data-test=preview-reason]').textContent()).trim().length > 0);
  assert.equal((await admin.get('/allocation-rules', { team_id: team.id })).items.length, 0, 'a preview saves nothing');
  await page.locator('.el-message').first().waitFor({ state: 'detached' });
  assert.deepEqual(await axe(page), []);
  await shot(page, 'admin-rule-preview');
  await page.fill('#probe-city', '上海');
  await page.click('[data-test=run-preview]');
  await page.locator('[data-test=preview-answer]', { hasText: '未命中' }).waitFor();
  assert.equal(await page.locator('[data-test=preview-owner]').count(), 0);
  await page.click('[data-test=save-rule]');
  await page.locator('.el-table', { hasText: '控制台规则-' + tag }).waitFor();
  const rule = (await admin.get('/allocation-rules', { team_id: team.id })).items[0];
  assert.deepEqual(rule.members, [user.id]);
  assert.equal(rule.strategy, 'performance');
  assert.deepEqual(rule.match.city, ['杭州']);
  assert.equal(rule.turn, 0, 'a preview spends no turn');
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

test('a manager approves a contract with a double click (one decision) and reads the funnel and revenue charts, which equal GET /reports/funnel and GET /reports/revenue', async () => {
  const rep = await be.staff('rep');
  const lead = await rep.post('/leads', { name: '控制台客户-' + tag, company: '测试公司', tags: ['展会'] });
  const start = today();
  const end = String(Number(start.slice(0, 4)) + 1) + start.slice(4);
  const contract = await rep.post('/contracts', { lead_id: lead.id, title: '年度服务合同-' + tag, amount_fen: 1280000, start_date: start, end_date: end, notes: '含培训两次' });
  await rep.post(`/contracts/${contract.id}/submit`, { version: contract.version });
  // A lead lost for its price: the reasons chart shows it.
  const lost = await rep.post('/leads', { name: '丢单客户-' + tag });
  await rep.post(`/leads/${lost.id}/stage`, { version: lost.version, to: 'lost', reason_code: 'price' });

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
    if ((await manager.get('/reports/funnel', { from: day, to: day })).conversions >= 1
      && (await manager.get('/reports/revenue', { from: day, to: day })).totals.signed_fen >= 1280000
      && (await manager.get('/reports/funnel', { from: day, to: day })).lost_reasons.some((r) => r.code === 'price' && r.count >= 1)) break;
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
  // The revenue chart (by rep) is GET /reports/revenue in yuan: the contract just approved is in it.
  await page.waitForFunction(() => window.__charts.revenue && window.__charts.cohorts && window.__charts.service && window.__charts.reasons);
  const revenue = await manager.get('/reports/revenue', Object.assign({}, query, { group_by: 'rep' }));
  const drawn = await page.evaluate(() => window.__charts.revenue);
  assert.deepEqual(drawn.xAxis.data, revenue.items.map((r) => r.name || r.key || '无'));
  assert.deepEqual(drawn.series[0].data, revenue.items.map((r) => r.signed_fen / 100));
  assert.deepEqual(drawn.series[1].data, revenue.items.map((r) => r.collected_fen / 100));
  assert.ok(revenue.totals.signed_fen >= 1280000, JSON.stringify(revenue.totals));
  assert.equal((await page.locator('[data-test=kpi-signed]').textContent()).trim().replace(/[¥,]/g, ''), (revenue.totals.signed_fen / 100).toFixed(2));
  const reasons = await page.evaluate(() => window.__charts.reasons);
  assert.deepEqual(reasons.series[0].data.map((d) => [d.code, d.value]), funnel.lost_reasons.filter((r) => r.count > 0).map((r) => [r.code, r.count]));
  assert.ok(reasons.series[0].data.some((d) => d.code === 'price' && d.name === '价格太高'));
  // Grouped by month: asked again with group_by=month, drawn again.
  const byMonth = page.waitForRequest((r) => r.url().includes('/api/v1/reports/revenue') && r.url().includes('group_by=month'));
  await choose(page, '#dash-group-by', '按月');
  await byMonth;
  const months = await manager.get('/reports/revenue', Object.assign({}, query, { group_by: 'month' }));
  assert.ok(months.items.some((r) => r.key === today().slice(0, 7)), JSON.stringify(months.items));
  await page.waitForFunction((labels) => JSON.stringify(window.__charts.revenue.xAxis.data) === labels, JSON.stringify(months.items.map((r) => r.name || r.key || '无')));
  const retention = await manager.get('/reports/retention', query);
  assert.equal((await page.locator('[data-test=kpi-renewal-rate]').textContent()).trim(), retention.renewal_rate == null ? '–' : (retention.renewal_rate * 100).toFixed(1) + '%');
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

test('in English (the browser language), a manager filters leads, opens a timeline and reassigns two leads at once (a dry run first, then the run)', async () => {
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
    // One POST /leads/assign: a dry run first (nothing moves), then the run.
    await p.click('[data-test=preview-assign]');
    await p.locator('[data-test=assign-preview]').getByText(be.rep2.name + ' × 2').waitFor();
    assert.equal((await p.locator('[data-test=assign-count]').textContent()).trim(), '2');
    const before = await be.staff('manager');
    for (const lead of leads) assert.equal((await before.get(`/leads/${lead.id}`)).owner_id, be.rep.id, 'a preview moves nothing');
    await shot(p, 'manager-bulk-assign-preview-en');
    await p.click('[data-test=reassign]');
    await p.getByText('Reassign: 2').waitFor();
    const manager = await be.staff('manager');
    for (const lead of leads) assert.equal((await manager.get(`/leads/${lead.id}`)).owner_id, be.rep2.id);
    await shot(p, 'manager-leads-en');
    assert.deepEqual(english.problems, []);
  } finally { await english.close(); }
});

test('the approval inbox: reject and return need a comment and are recorded; a 412 (someone else decided first) is said clearly', async () => {
  const rep = await be.staff('rep');
  const manager = await be.staff('manager');
  const lead = await rep.post('/leads', { name: '审批客户-' + tag });
  const start = today();
  const end = String(Number(start.slice(0, 4)) + 1) + start.slice(4);
  const admin = await be.staff('admin');
  const made = {};
  for (const name of ['驳回', '退回', '抢先']) {
    // 抢先 is submitted under two steps (the manager, then an admin), so after the manager's
    // decision elsewhere it is still pending with a new version: the late click is a 412.
    let team;
    if (name === '抢先') {
      team = await admin.get(`/teams/${be.team.id}/settings`);
      team = await admin.patch(`/teams/${be.team.id}/settings`, { version: team.version, approval: { tiers: [{ max_fen: null, steps: [{ type: 'manager' }, { type: 'admin' }] }] } });
    }
    const c = await rep.post('/contracts', { lead_id: lead.id, title: `${name}合同-${tag}`, amount_fen: 300000, start_date: start, end_date: end });
    await rep.post(`/contracts/${c.id}/submit`, { version: c.version });
    if (team) await admin.patch(`/teams/${be.team.id}/settings`, { version: team.version, approval: null });
    made[name] = c.id;
  }
  await goTo(page, 'approvals');
  const open = async (name) => {
    await page.locator('.el-table__row', { hasText: `${name}合同-${tag}` }).click();
    await page.locator('[data-test=contract]').getByText(`${name}合同-${tag}`).waitFor();
  };
  await open('驳回');
  await page.click('[data-test=reject]');
  await page.locator('.el-form-item', { has: page.locator('#approval-comment') }).getByText('驳回或退回需要填写意见').waitFor();
  assert.equal((await manager.get(`/contracts/${made['驳回']}`)).status, 'pending', 'nothing decided without a comment');
  await page.fill('#approval-comment', '金额不对');
  await page.click('[data-test=reject]');
  await page.locator('.el-table__row', { hasText: `驳回合同-${tag}` }).waitFor({ state: 'detached' });
  const rejected = await manager.get(`/contracts/${made['驳回']}`);
  assert.equal(rejected.status, 'rejected');
  assert.equal(rejected.steps[0].decisions[0].comment, '金额不对');

  await open('退回');
  await page.fill('#approval-comment', '补充付款计划');
  await page.click('[data-test=return]');
  await page.locator('.el-table__row', { hasText: `退回合同-${tag}` }).waitFor({ state: 'detached' });
  assert.equal((await manager.get(`/contracts/${made['退回']}`)).status, 'draft', 'returned to its owner as a draft');

  // Open on the screen, decided meanwhile by someone else: the late click is a 412, said as such.
  await open('抢先');
  const first = await manager.get(`/contracts/${made['抢先']}`);
  assert.equal(first.steps.length, 2);
  await manager.post(`/contracts/${first.id}/approve`, { version: first.version, comment: '电话里批了' });
  await page.fill('#approval-comment', '同意');
  const late = page.waitForResponse((r) => r.url().includes(`/contracts/${first.id}/approve`));
  await page.click('[data-test=approve]');
  assert.equal((await late).status(), 412);
  await page.locator('[data-test=stale]').getByText('这份合同已被他人处理或修改').waitFor();
  await page.locator('.el-table__row', { hasText: `抢先合同-${tag}` }).waitFor({ state: 'detached' });
  const decided = await manager.get(`/contracts/${made['抢先']}`);
  assert.equal(decided.steps[0].decisions.length, 1, 'one decision, the first one');
  assert.equal(decided.steps[0].decisions[0].comment, '电话里批了');
  assert.equal(decided.status, 'pending', 'waiting for the admin step');
  await shot(page, 'manager-approval-412');
  await page.click('text=退出');
  await page.waitForSelector('#login-username');
});

test('an admin edits a form, exports leads, saves team settings (a field error shown, nothing saved), resets a group and picks a team on the dashboard', async () => {
  await login(page, be, be.admin);
  const admin = await be.staff('admin');

  // Form editing: the saved form opens in the designer; a change is a PATCH with its version.
  await goTo(page, 'forms');
  const slug = 'c' + tag;
  const form = (await admin.get('/forms', { limit: 100 })).items.find((f) => f.slug === slug);
  // The saved form's mini-program code comes from GET /forms/{id}/qrcode (WeChat's getUnlimited; the
  // fake WeChat draws a PNG naming the scene), fetched with the session's token, with a download.
  const codeAnswer = page.waitForResponse((r) => new URL(r.url()).pathname === `/api/v1/forms/${form.id}/qrcode`);
  await page.click(`[data-test=edit-${slug}]`);
  const answered = await codeAnswer;
  assert.equal(answered.status(), 200);
  assert.equal(answered.headers()['content-type'], 'image/png');
  await page.locator('[data-test=form-code]').waitFor();
  assert.ok(await page.locator('[data-test=form-code]').evaluate((img) => img.complete && img.naturalWidth > 0), 'the code is an image');
  assert.match(await page.locator('[data-test=form-code]').getAttribute('src'), /^blob:/);
  const [code] = await Promise.all([page.waitForEvent('download'), page.click('[data-test=download-code]')]);
  assert.equal(code.suggestedFilename(), `form-${slug}.png`);
  await shot(page, 'admin-form-code');
  assert.equal(await page.inputValue('#form-title'), '控制台表单');
  await page.fill('#form-title', '控制台表单（秋季）');
  await page.locator('[data-test=form-preview]').getByText('控制台表单（秋季）').waitFor();
  await page.click('[data-test=save-form]');
  await page.locator('.el-table', { hasText: '控制台表单（秋季）' }).waitFor();
  const edited = await admin.get(`/forms/${form.id}`);
  assert.equal(edited.title, '控制台表单（秋季）');
  assert.equal(edited.version, form.version + 1);

  // Export: the CSV holds the leads made in these tests.
  await goTo(page, 'imports');
  const download = page.waitForEvent('download');
  await page.click('[data-test=export-csv]');
  const saved = path.join(RESULTS, 'export-' + tag + '.csv');
  await (await download).saveAs(saved);
  const csv = fs.readFileSync(saved, 'utf8');
  assert.match(csv, new RegExp('控制台客户-' + tag));
  assert.match(csv, new RegExp('审批客户-' + tag));

  // Team settings: a group saved; an out-of-order threshold named next to its field, nothing saved; a reset.
  await goTo(page, 'settings');
  await choose(page, '#settings-team', be.team.name);
  await page.locator('.el-tabs__item', { hasText: '流失判定' }).click();
  await page.fill('#set-churn-days', '75');
  await page.click('[data-test=save-churn]');
  await page.locator('.el-tabs__item', { hasText: '流失判定 *' }).waitFor();
  let stored = await admin.get(`/teams/${be.team.id}/settings`);
  assert.equal(stored.settings.churn.days, 75);
  assert.deepEqual(stored.customized_fields.churn, ['days']);
  await page.locator('.el-tabs__item', { hasText: 'RFM 阈值' }).click();
  await page.fill('#set-rfm-recency_days', '180, 30');
  await page.fill('#set-rfm-window_days', '400');
  await page.click('[data-test=save-rfm]');
  const error = page.locator('[data-field="rfm.recency_days"] .el-form-item__error');
  await error.waitFor();
  assert.ok((await error.textContent()).trim().length > 0);
  stored = await admin.get(`/teams/${be.team.id}/settings`);
  assert.deepEqual(stored.settings.rfm.recency_days, [30, 180], 'nothing saved');
  assert.notEqual(stored.settings.rfm.window_days, 400, 'not even the good field beside it');
  assert.ok(!stored.customized.includes('rfm'));
  await shot(page, 'admin-team-settings-error');
  await page.locator('.el-tabs__item', { hasText: '流失判定' }).click();
  await page.click('[data-test=reset-churn]');
  await page.locator('.el-tabs__item', { hasText: /^流失判定$/ }).waitFor();
  stored = await admin.get(`/teams/${be.team.id}/settings`);
  assert.ok(!stored.customized.includes('churn'));
  assert.equal(await page.inputValue('#set-churn-days'), String(stored.settings.churn.days));
  await page.locator('.el-message').first().waitFor({ state: 'detached' });
  assert.deepEqual(await axe(page), []);

  // The team picker: the dashboard asks for that team, and the revenue chart is its answer.
  await goTo(page, 'dashboard');
  await page.waitForFunction(() => window.__charts && window.__charts.revenue);
  const asked = page.waitForRequest((r) => r.url().includes('/api/v1/reports/revenue') && r.url().includes('team_id=' + be.team.id));
  await choose(page, '#dash-team', be.team.name);
  const query = Object.fromEntries(new URL((await asked).url()).searchParams);
  const revenue = await admin.get('/reports/revenue', query);
  await page.waitForFunction((want) => JSON.stringify(window.__charts.revenue.series[0].data) === want, JSON.stringify(revenue.items.map((r) => r.signed_fen / 100)));
  assert.equal(revenue.team_id, be.team.id);
  assert.deepEqual(await axe(page), []);
  assert.deepEqual(browser.problems, []);
});

test('an admin deactivates a rep who still holds work: the hand-over dialog, its preview, progress to done, the rep inactive', async () => {
  const admin = await be.staff('admin');
  const username = 'leaving-rep-' + tag;
  const leaving = await admin.post('/users', { username, password: 'leaving-pass-123', name: '离职销售', role: 'rep', team_id: be.team.id });
  const rep = await be.staff({ username, password: 'leaving-pass-123' });
  const leads = [];
  for (const name of ['交接甲', '交接乙']) leads.push(await rep.post('/leads', { name: name + '-' + tag }));

  await goTo(page, 'users');
  await page.click(`[data-test=deactivate-${username}]`);
  await page.locator('.el-message-box__btns button', { hasText: '停用' }).click();
  // The plain deactivation is refused (409 user.has_open_work): the hand-over opens instead.
  await page.locator('[data-test=handover]').waitFor();
  assert.equal((await admin.get(`/users/${leaving.id}`)).active, true);
  await choose(page, '#handover-user', be.rep2.name);
  await page.click('[data-test=handover-preview-run]');
  await page.locator('[data-test=handover-preview]').waitFor();
  assert.equal((await page.locator('[data-test=count-leads]').textContent()).trim(), '2');
  assert.equal((await page.locator('[data-test=handover-target]').textContent()).trim(), be.rep2.name);
  assert.deepEqual(await axe(page), []);
  await page.click('[data-test=handover-start]');
  await page.locator('[data-test=handover-progress][data-status=done]').waitFor({ timeout: 30000 });
  await shot(page, 'admin-handover-done');
  const user = await admin.get(`/users/${leaving.id}`);
  assert.equal(user.active, false, 'deactivated once everything was handed over');
  for (const lead of leads) assert.equal((await admin.get(`/leads/${lead.id}`)).owner_id, be.rep2.id);
  await page.click('.el-dialog__footer button:has-text("关闭")');
  await page.locator(`[data-test=active-${username}]`, { hasText: '否' }).waitFor();
  // The service flag is edited on the same page.
  await page.click(`[data-test=service-${be.rep2.username}]`);
  for (let i = 0; i < 20 && !(await admin.get(`/users/${be.rep2.id}`)).service; i += 1) await new Promise((r) => setTimeout(r, 100));
  assert.equal((await admin.get(`/users/${be.rep2.id}`)).service, true);
  assert.deepEqual(browser.problems, []);
});
