// Shared steps of the simulator tests: logging in on the login page like a person would.
'use strict';
const sim = require('./page');

const bound = new Set();

// Open the mini-program and log in with WeChat (staff: the bind code the first time only).
// Resolves the page the person lands on.
async function login(phone, person, options) {
  const o = options || {};
  sim.launch(phone, o.launch);
  const seen = phone.calls.length;
  const page = await sim.loadPage('login/login', {}, { wx: phone });
  if (person && person.bind_code && !bound.has(person.id)) {
    await page.tap('text=我是员工');
    await page.input('input', person.bind_code);
  }
  if (person && person.id) bound.add(person.id);
  await page.tap('text=微信一键登录');
  await page.waitFor(() => phone.calls.slice(seen).some((c) => c.api === 'switchTab' || c.api === 'reLaunch'), 15000, 'landing after login');
  return sim.follow(phone);
}

module.exports = { login };
