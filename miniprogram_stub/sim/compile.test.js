// Every WXML and WXSS file of the mini-program compiles with WeChat's official compilers (wcc,
// wcsc from miniprogram-compiler, the ones miniprogram-simulate uses): a broken tag, an unclosed
// mustache or a bad style rule fails here, before DevTools.
'use strict';
require('./page'); // the DOM globals the compiled code expects
const test = require('node:test');
const assert = require('node:assert/strict');
const fs = require('fs');
const path = require('path');
const compiler = require('miniprogram-compiler');

const ROOT = path.resolve(__dirname, '..', 'miniprogram');

function files(ext, dir, out) {
  const base = dir || ROOT;
  (out = out || []);
  fs.readdirSync(base, { withFileTypes: true }).forEach((d) => {
    if (d.name === 'node_modules' || d.name === 'test' || d.name.startsWith('.')) return;
    const p = path.join(base, d.name);
    if (d.isDirectory()) files(ext, p, out);
    else if (p.endsWith(ext)) out.push(path.relative(ROOT, p).split(path.sep).join('/'));
  });
  return out;
}

function compileWxml(root, list) {
  return new Function(compiler.wxmlToJs(root, { wxmlList: list, wxsList: files('.wxs') }))(); // eslint-disable-line no-new-func
}

test('every WXML file compiles with wcc and renders a template', () => {
  const list = files('.wxml');
  assert.ok(list.length >= 9, 'found ' + list.length + ' WXML files');
  const gwx = compileWxml(ROOT, list);
  list.forEach((f) => assert.equal(typeof gwx(f), 'function', f + ' has no compiled template'));
});

test('every WXSS file compiles with wcsc', () => {
  const list = files('.wxss');
  assert.ok(list.length >= 9);
  const css = new Function(compiler.wxssToJs(ROOT, { wxssList: list }))(); // eslint-disable-line no-new-func
  list.forEach((f) => assert.notEqual(css(f), undefined, f + ' has no compiled style'));
});

test('a broken tag fails the compile (the check can fail)', () => {
  const tmp = fs.mkdtempSync(path.join(require('os').tmpdir(), 'mpcrm-wcc-'));
  fs.writeFileSync(path.join(tmp, 'broken.wxml'), '<view class="a"><text>{{x}}</view>');
  try {
    assert.throws(() => compileWxml(tmp, ['broken.wxml']), /broken\.wxml|编译/);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});
