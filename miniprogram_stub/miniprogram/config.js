// Where the mini-program talks to, by the build WeChat runs (wx.getAccountInfoSync().miniProgram
// .envVersion): develop (DevTools and the developer's phone), trial (体验版), release (正式版).
// trial and release must be https domains listed in the mini-program console (开发管理 → 开发设置 →
// 服务器域名 → request 合法域名); develop may be a local http:// server with "不校验合法域名" ticked.
// Set the two https bases below before uploading a trial or release build.
const catalogue = require('./templates');

const BASES = {
  develop: 'http://127.0.0.1:8000',
  trial: 'https://trial-api.mpcrm.example.com',
  release: 'https://api.mpcrm.example.com'
};

function envVersion() {
  try {
    const info = wx.getAccountInfoSync();
    return (info && info.miniProgram && info.miniProgram.envVersion) || 'develop';
  } catch (e) {
    return 'develop';
  }
}

function templateIds(all) {
  const ids = {};
  Object.keys(all).forEach((kind) => { ids[kind] = all[kind].template_id; });
  return ids;
}

const env = envVersion();

module.exports = {
  envVersion: env,
  bases: BASES,
  baseUrl: BASES[env] || BASES.develop,
  apiPrefix: '/api/v1',
  formSlug: 'expo',
  // Subscribe-message template ids by notification kind, from templates.js (the one place they
  // are written; the server's defaults and the fake WeChat read the same file).
  templates: templateIds(catalogue),
  timeoutMs: 15000,
  maxRetries: 5
};
