// Where the mini-program talks to. In WeChat DevTools point baseUrl at your server
// (tick "不校验合法域名" for a local http:// server); in production it must be an https domain
// listed in the mini-program console (request 合法域名).
const catalogue = require('./templates');

function templateIds(all) {
  const ids = {};
  Object.keys(all).forEach((kind) => { ids[kind] = all[kind].template_id; });
  return ids;
}

module.exports = {
  baseUrl: 'http://127.0.0.1:8000',
  apiPrefix: '/api/v1',
  formSlug: 'expo',
  // Subscribe-message template ids by notification kind, from templates.js (the one place they
  // are written; the server's defaults and the fake WeChat read the same file).
  templates: templateIds(catalogue),
  timeoutMs: 15000,
  maxRetries: 5
};
