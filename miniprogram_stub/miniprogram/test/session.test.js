'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const session = require('../utils/session');

function recorder() {
  const calls = [];
  const wx = {};
  ['navigateTo', 'switchTab', 'reLaunch'].forEach((api) => { wx[api] = (o) => calls.push([api, o.url]); });
  return { wx, calls };
}

test('a link opens a tab page with switchTab and every other page with navigateTo', () => {
  const { wx, calls } = recorder();
  session.open(wx, '/pages/pool/pool');
  session.open(wx, 'pages/leads/leads?from=notification'); // switchTab takes no query: dropped
  session.open(wx, '/pages/approvals/approvals'); // reached from 我的, not a tab (WeChat allows 5)
  session.open(wx, '/pages/contract/contract?id=c1');
  assert.deepEqual(calls, [
    ['switchTab', '/pages/pool/pool'],
    ['switchTab', '/pages/leads/leads'],
    ['navigateTo', '/pages/approvals/approvals'],
    ['navigateTo', '/pages/contract/contract?id=c1']
  ]);
});

test('the staff tabs are the tab bar of app.json, at most five', () => {
  const app = JSON.parse(fs.readFileSync(path.join(__dirname, '..', 'app.json'), 'utf8'));
  assert.deepEqual(session.STAFF_TABS.map((t) => t.pagePath), app.tabBar.list.map((t) => t.pagePath));
  assert.ok(app.tabBar.list.length <= 5);
  assert.equal(session.isTab('/pages/approvals/approvals'), false);
  assert.equal(session.isTab('/pages/me/me'), true);
});
