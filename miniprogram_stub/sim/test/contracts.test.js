// A rep drafts a contract from a lead with a payment plan and submits it; the manager decides it
// from the approval inbox (whole contract shown), records a payment, opens the team dashboard
// (charts drawn by uCharts from GET /reports/*); the rep is told and opens the contract from the
// notification, then renews it.
'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const backend = require('../backend');
const { makeWx } = require('../wx');
const sim = require('../page');
const format = require('../../miniprogram/utils/format');

let be;
test.before(async () => { be = await backend.start(); });
test.after(async () => { if (be) await be.stop(); });

// A phone on which `who` (rep, manager…) has logged in with WeChat (bind code once).
async function staffPhone(who, name) {
  const phone = makeWx(be, { phone: name, openid: be[who].openid });
  const app = sim.launch(phone);
  await app.api.loginWithWechat(be[who].bind_code);
  return phone;
}

// A 2d canvas that records what uCharts draws on it (the simulator has no pixels).
function recordingCanvas(drawn) {
  const calls = [];
  const ctx = new Proxy({ calls }, {
    get(target, key) {
      if (key in target) return target[key];
      if (key === 'measureText') return (text) => ({ width: String(text).length * 7 });
      return (...args) => { calls.push([key, ...args]); };
    },
    set(target, key, value) { target[key] = value; return true; }
  });
  return { width: 0, height: 0, getContext: () => ctx, ctx, drawn };
}

function withCanvases(phone) {
  const canvases = {};
  phone.createSelectorQuery = () => {
    const q = {
      in() { return q; },
      select(sel) {
        return {
          fields() {
            return {
              exec(cb) {
                const id = sel.replace(/^#/, '');
                canvases[id] = canvases[id] || recordingCanvas();
                setTimeout(() => cb([{ node: canvases[id], width: 340, height: 250 }]), 0);
              }
            };
          }
        };
      }
    };
    return q;
  };
  return canvases;
}

function texts(canvas) { return canvas.ctx.calls.filter((c) => c[0] === 'fillText').map((c) => String(c[1])); }

test('a contract goes from draft to approved, is paid and renewed, and the manager reads the dashboard', async () => {
  const repApi = await be.staff('rep');
  const managerApi = await be.staff('manager');
  const lead = await repApi.post('/leads', { name: '周总', company: '周氏物流', phone: '13900001111' });

  // The rep drafts the contract from the lead: ¥12,000 in 3 instalments.
  const repPhone = await staffPhone('rep', 'c-rep');
  const edit = await sim.loadPage('contract-edit/contract-edit', { lead_id: lead.id }, { wx: repPhone });
  await edit.waitForData((d) => d.title === '周氏物流 服务合同', 10000);
  await edit.input('.c-amount', '12000');
  await edit.change('.count-picker', 2);
  await edit.waitForText('第 3 期');
  assert.match(edit.text(), /合计 ¥12,000\.00/);
  await edit.input('.c-notes', '含上门培训两次');
  await edit.tap('text=保存草稿');
  await edit.waitFor(() => repPhone.last('redirectTo'), 10000, 'the draft opens');
  const draft = await sim.follow(repPhone);
  await draft.waitForText('草稿', 10000);
  assert.match(draft.text(), /¥12,000\.00/);
  assert.match(draft.text(), /含上门培训两次/);
  const contractId = draft.instance.contractId;
  let stored = await repApi.get('/contracts/' + contractId);
  assert.equal(stored.status, 'draft');
  assert.deepEqual(stored.payment_plan.map((p) => p.amount_fen), [400000, 400000, 400000]);
  assert.equal(stored.notes, '含上门培训两次');

  await draft.tap('text=提交审批');
  await draft.waitForText('审批中', 10000);
  assert.match(draft.text(), /第 1\/1 步/);
  stored = await repApi.get('/contracts/' + contractId);
  assert.equal(stored.status, 'pending');

  // The manager's inbox shows the whole contract, and the step as people count it.
  const mgrPhone = await staffPhone('manager', 'c-mgr');
  const inbox = await sim.loadPage('approvals/approvals', {}, { wx: mgrPhone });
  await inbox.waitForText('周氏物流 服务合同', 10000);
  const shown = inbox.text();
  assert.match(shown, /第 1\/1 步/);
  assert.doesNotMatch(shown, /第 0\//);
  assert.match(shown, /¥12,000\.00/);
  assert.match(shown, /第 3 期/);
  assert.match(shown, /含上门培训两次/);
  assert.match(shown, /张销售/); // the submitter
  assert.doesNotMatch(shown, /null|undefined/);
  await inbox.tap('text=同意');
  await inbox.waitForText('没有待审批的合同', 10000);
  stored = await managerApi.get('/contracts/' + contractId);
  assert.equal(stored.status, 'active');
  assert.equal((await managerApi.get('/leads/' + lead.id)).stage, 'customer');

  // The rep hears about it and the notification opens the contract.
  const inboxOfRep = await sim.loadPage('notifications/notifications', {}, { wx: repPhone });
  await inboxOfRep.waitForText('周氏物流 服务合同', 10000);
  await inboxOfRep.tap('text=周氏物流 服务合同');
  await inboxOfRep.waitFor(() => repPhone.last('navigateTo'), 5000, 'the notification opens its contract');
  assert.equal(repPhone.last('navigateTo').url, '/pages/contract/contract?id=' + contractId);

  // The manager records ¥4,000 received.
  const pay = await sim.loadPage('payment/payment', { contract_id: contractId }, { wx: mgrPhone });
  await pay.waitForData((d) => d.amount === '12000', 10000);
  await pay.input('.p-amount', '4000');
  await pay.input('.p-ref', 'TX-0001');
  await pay.tap('.pay-save');
  await pay.waitForText('已登记 ¥4,000.00', 10000);
  assert.match(pay.text(), /待收 ¥8,000\.00/);
  stored = await managerApi.get('/contracts/' + contractId);
  assert.equal(stored.paid_fen, 400000);
  assert.equal(stored.payments.length, 1);
  assert.equal(stored.payments[0].reference, 'TX-0001');

  // The contract page lists the payment and the approval history; the rep renews it.
  const page = await sim.follow(repPhone);
  await page.waitForText('已收款', 10000);
  assert.match(page.text(), /已收 ¥4,000\.00/);
  assert.match(page.text(), /李经理 同意/);
  await page.tap('text=续约');
  await page.waitFor(() => repPhone.last('navigateTo').url.indexOf('contract-edit') >= 0, 10000, 'the renewal draft opens');
  const renewal = await sim.follow(repPhone);
  await renewal.waitForData((d) => d.title === '周氏物流 服务合同' && d.plan.length === 3, 10000);
  const renewed = await repApi.get('/contracts/' + contractId);
  assert.equal(renewed.renewed_by, renewal.instance.contractId);

  // The team dashboard: every chart is drawn from the reports' own figures.
  await be.runJob('fold_stats');
  const canvases = withCanvases(mgrPhone);
  const board = await sim.loadPage('dashboard/dashboard', {}, { wx: mgrPhone });
  await board.waitForData((d) => d.charts.funnel, 15000);
  await board.waitFor(() => canvases.rfm && texts(canvases.funnel).length, 5000, 'the charts are drawn');
  const range = { from: board.data().from, to: board.data().to };
  const funnel = await managerApi.get('/reports/funnel', range);
  const entered = {};
  funnel.stages.forEach((s) => { entered[s.stage] = s.entered; });
  assert.deepEqual(board.data().charts.funnel.series[0].data,
    ['new', 'contacted', 'qualified', 'customer'].map((s) => ({ name: format.stage(s), value: entered[s] || 0 })));
  assert.ok(entered.customer >= 1, JSON.stringify(funnel.stages));
  assert.ok(texts(canvases.funnel).some((t) => t.indexOf(format.stage('customer')) >= 0), texts(canvases.funnel).join(','));
  const reps = await managerApi.get('/reports/reps', range);
  const me = reps.items.find((r) => r.name === '张销售');
  const i = board.data().charts.reps.categories.indexOf('张销售');
  assert.ok(i >= 0);
  assert.equal(board.data().charts.reps.series[2].data[i], me.conversions);
  const lifecycle = await managerApi.get('/reports/lifecycle', range);
  assert.deepEqual(board.data().charts.lifecycle.series[0].data,
    [lifecycle.new_customers, lifecycle.into_at_risk, lifecycle.saved, lifecycle.churned, lifecycle.won_back]);
  const rfm = await managerApi.get('/reports/rfm');
  assert.deepEqual(board.data().charts.rfm.series.map((s) => s.data), ['A', 'B', 'C'].map((k) => rfm.counts[k] || 0));
  assert.match(board.text(), new RegExp('成交 ' + funnel.conversions));
});
