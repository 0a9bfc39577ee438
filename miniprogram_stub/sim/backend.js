// The real backend for one simulator test file: `python -m miniprogram_stub.sim_backend` (embedded
// DB, the API server, the fake WeChat, scheduler off; seeded admin, team, manager, two reps, a
// form). start() resolves the JSON it prints (base URLs, people with usernames, passwords, bind
// codes and openids, the form) plus helpers; stop() ends it.
//
// MPCRM_SIM_PYTHON picks the interpreter (default: the repo's .venv/bin/python, else python3);
// MPCRM_SIM_ROOT the checkout whose backend runs (default: this repository).
'use strict';

const { spawn } = require('child_process');
const fs = require('fs');
const http = require('http');
const path = require('path');

const REPO = path.resolve(__dirname, '..', '..');

function pythonPath(root) {
  if (process.env.MPCRM_SIM_PYTHON) return process.env.MPCRM_SIM_PYTHON;
  for (const dir of [root, REPO]) {
    const venv = path.join(dir, '.venv', 'bin', 'python');
    if (fs.existsSync(venv)) return venv;
  }
  return 'python3';
}

// One JSON request over HTTP: resolves {status, data, header}.
function httpJson(method, url, body, headers) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const payload = body === undefined || body === null ? null : Buffer.from(JSON.stringify(body));
    const req = http.request({
      hostname: u.hostname, port: u.port, path: u.pathname + u.search, method, agent: false,
      headers: Object.assign({ Accept: 'application/json' }, payload ? { 'Content-Type': 'application/json', 'Content-Length': payload.length } : {}, headers || {})
    }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let data = text;
        try { data = text ? JSON.parse(text) : null; } catch (e) { /* not JSON */ }
        resolve({ status: res.statusCode, data, header: res.headers });
      });
    });
    req.on('error', reject);
    if (payload) req.write(payload);
    req.end();
  });
}

// A staff member's own API session (password login), to check what the server stored.
async function staffClient(info, who) {
  const person = typeof who === 'string' ? (who === 'admin' ? info.admin : info[who]) : who;
  const login = await httpJson('POST', info.api_base + '/auth/password-login', { username: person.username, password: person.password });
  if (login.status !== 200) throw new Error('password login of ' + person.username + ' answered ' + login.status + ' ' + JSON.stringify(login.data));
  const auth = { Authorization: 'Bearer ' + login.data.access_token };
  const call = async (method, p, body, extra) => {
    const res = await httpJson(method, info.api_base + p, body, Object.assign({}, auth, extra || {}));
    if (res.status >= 400) throw Object.assign(new Error(method + ' ' + p + ' → ' + res.status + ' ' + JSON.stringify(res.data)), res);
    return res.data;
  };
  return {
    user: login.data.user,
    get: (p, query) => call('GET', p + (query ? '?' + new URLSearchParams(query).toString() : '')),
    post: (p, body, extra) => call('POST', p, body, Object.assign({ 'Idempotency-Key': require('crypto').randomUUID() }, extra || {})),
    patch: (p, body) => call('PATCH', p, body),
    raw: (method, p, body, extra) => httpJson(method, info.api_base + p, body, Object.assign({}, auth, extra || {}))
  };
}

function start(options) {
  const opts = options || {};
  const root = opts.root || process.env.MPCRM_SIM_ROOT || REPO;
  const python = pythonPath(root);
  const timeoutMs = opts.timeoutMs || 120000;
  const child = spawn(python, ['-m', 'miniprogram_stub.sim_backend'], {
    cwd: root,
    env: Object.assign({}, process.env, { PYTHONPATH: root, PYTHONUNBUFFERED: '1' }),
    stdio: ['pipe', 'pipe', 'pipe']
  });
  let stderr = '';
  child.stderr.on('data', (c) => { stderr = (stderr + c.toString()).slice(-4000); });
  return new Promise((resolve, reject) => {
    let out = '';
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error('the sim backend did not start within ' + timeoutMs + ' ms\n' + out + stderr)); }, timeoutMs);
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error('the sim backend exited with ' + code + ' before it was ready:\n' + out + '\n' + stderr)); });
    child.stdout.on('data', (c) => {
      out += c.toString();
      const line = out.split('\n').find((l) => l.startsWith('SIM_BACKEND ') || l.startsWith('SIM_BACKEND_FAILED'));
      if (!line || !out.includes('\n', out.indexOf(line))) return;
      clearTimeout(timer);
      if (line.startsWith('SIM_BACKEND_FAILED')) { reject(new Error(line + '\n' + stderr)); return; }
      child.removeAllListeners('exit');
      const info = JSON.parse(line.slice('SIM_BACKEND '.length));
      const exited = new Promise((r) => child.on('exit', r));
      const controlUrl = info.control;
      Object.assign(info, {
        process: child,
        // Stop the backend (it also stops when this process ends: its stdin closes).
        stop: async () => {
          if (child.exitCode === null) { child.stdin.end(); child.kill('SIGTERM'); }
          const killer = setTimeout(() => child.kill('SIGKILL'), 20000);
          await exited;
          clearTimeout(killer);
        },
        http: httpJson,
        staff: (who) => staffClient(info, who),
        // Test-only controls of the sim backend (see miniprogram_stub/sim_backend.py).
        controlUrl,
        control: async (p, body) => {
          const res = await httpJson('POST', controlUrl + p, body || {});
          if (res.status !== 200) throw new Error('control ' + p + ': ' + JSON.stringify(res.data));
          return res.data;
        },
        expiredToken: async (accessToken) => (await httpJson('POST', controlUrl + '/expired-token', { access_token: accessToken })).data.access_token,
        runJob: (name, now) => info.control('/run-job', { name, now }),
        // The fake WeChat's own helpers (docs/wechat-stub.md).
        phoneCode: async (phone) => (await httpJson('POST', info.wechat_base + '/__stub__/phone-codes', { phone })).data.code,
        wechatMessages: async () => (await httpJson('GET', info.wechat_base + '/__stub__/messages')).data.messages
      });
      resolve(info);
    });
  });
}

module.exports = { start, httpJson, REPO };
