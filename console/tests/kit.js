// The browser tests' kit: the real backend (miniprogram_stub/sim_backend.py through the simulator's
// backend.js: embedded DB, `python -m server run` serving console/dist, fake WeChat, seeded team),
// Debian's Chromium driven by playwright-core, axe-core, screenshots under console/test-results/.
import { createRequire } from 'node:module';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const require = createRequire(import.meta.url);
const HERE = path.dirname(fileURLToPath(import.meta.url));
export const CONSOLE = path.resolve(HERE, '..');
export const REPO = path.resolve(CONSOLE, '..');
export const RESULTS = path.join(CONSOLE, 'test-results');
const backend = require(path.join(REPO, 'miniprogram_stub', 'sim', 'backend.js'));

export const CHROMIUM = process.env.MPCRM_CHROMIUM || '/usr/bin/chromium';
const FLAGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'];

export async function startBackend() {
  if (!fs.existsSync(path.join(CONSOLE, 'dist', 'index.html'))) throw new Error('console/dist is missing: run `npm run build` (make test-console does)');
  return backend.start({ root: REPO });
}

// A fresh browser profile per call (a fresh --user-data-dir), in the language given.
export async function openBrowser(locale = 'zh-CN') {
  fs.mkdirSync(RESULTS, { recursive: true });
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'mpcrm-console-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: FLAGS, locale, viewport: { width: 1360, height: 900 }, acceptDownloads: true,
  });
  const page = context.pages()[0] || await context.newPage();
  page.setDefaultTimeout(15000);
  const problems = [];
  page.on('pageerror', (e) => problems.push('pageerror: ' + e.message));
  return {
    context, page, problems,
    close: async () => { await context.close(); fs.rmSync(profile, { recursive: true, force: true }); },
  };
}

// Log in as `person` (whoever was logged in before is logged out: their stored session is dropped).
export async function login(page, be, person) {
  await page.goto(be.base_url + '/console/');
  await page.evaluate(() => localStorage.removeItem('mpcrm.console.session'));
  await page.reload();
  await page.fill('#login-username', person.username);
  await page.fill('#login-password', person.password);
  await page.click('[data-test=login-submit]');
  await page.waitForSelector('nav .el-menu');
}

export async function goTo(page, name) {
  await page.click(`.el-menu-item[data-page=${name}]`);
  await page.waitForSelector(`.topbar h1`);
}

// Pick an option of an Element Plus select (opened by clicking the select holding `selector`).
export async function choose(page, selector, text) {
  await page.locator(selector).locator('xpath=ancestor::div[contains(concat(" ", @class, " "), " el-select ")][1]').locator('.el-select__wrapper').click();
  await page.locator('.el-select-dropdown__item:visible', { hasText: text }).first().click();
  await page.waitForFunction(() => !document.querySelector('.el-zoom-in-top-leave-active'), null, { timeout: 5000 }); // the list has closed
}

export async function shot(page, name) {
  const file = path.join(RESULTS, name + '.png');
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

// axe-core in the page: the serious and critical violations (each with its first nodes).
export async function axe(page) {
  // Nothing half-faded: a closing dropdown or toast in its transition has reduced opacity, which
  // axe reads as low contrast (Vue's transition classes are on it while it runs).
  await page.waitForFunction(() => !document.querySelector('[class*="-leave-active"], [class*="-enter-active"]'), null, { timeout: 5000 });
  await page.addScriptTag({ content: fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8') });
  const result = await page.evaluate(async () => window.axe.run(document, { resultTypes: ['violations'] }));
  return result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join(' | ')}`);
}

export function today() {
  return new Intl.DateTimeFormat('en-CA', { timeZone: 'Asia/Shanghai' }).format(new Date());
}
