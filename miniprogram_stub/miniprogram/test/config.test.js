'use strict';
const test = require('node:test');
const assert = require('node:assert/strict');
const path = require('path');

function configFor(envVersion) {
  const file = path.join(__dirname, '..', 'config.js');
  delete require.cache[require.resolve(file)];
  global.wx = { getAccountInfoSync: () => ({ miniProgram: { envVersion } }) };
  try { return require(file); } finally { delete global.wx; }
}

test('the API base follows the build WeChat runs: develop, trial, release', () => {
  const dev = configFor('develop');
  assert.equal(dev.baseUrl, dev.bases.develop);
  assert.equal(configFor('trial').baseUrl, dev.bases.trial);
  assert.equal(configFor('release').baseUrl, dev.bases.release);
  assert.match(dev.bases.trial, /^https:\/\//);
  assert.match(dev.bases.release, /^https:\/\//);
  assert.equal(configFor(undefined).baseUrl, dev.bases.develop);
});
