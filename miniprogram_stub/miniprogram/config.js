// Where the mini-program talks to. In WeChat DevTools point baseUrl at your server
// (tick "不校验合法域名" for a local http:// server); in production it must be an https domain
// listed in the mini-program console (request 合法域名).
module.exports = {
  baseUrl: 'http://127.0.0.1:8000',
  apiPrefix: '/api/v1',
  formSlug: 'expo',
  // Subscribe-message template ids chosen in the mini-program console (MPCRM_WECHAT_TEMPLATES on the server).
  templates: {
    lead_assigned: 'DEMO_LEAD_ASSIGNED',
    task_reminder: 'DEMO_TASK_REMINDER',
    renewal_due: 'DEMO_RENEWAL_DUE'
  },
  timeoutMs: 15000,
  maxRetries: 5
};
