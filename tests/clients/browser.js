// Drives /demo and /dashboard in headless Chromium with playwright-core, against a
// running Switchyard dev server. Run by tests/browser.rs:
//   node browser.js <scenario> <base-url> <api-key> <screenshot-dir>
// scenario: json | rtc (two /demo tabs meet, chat, open a data channel, one closes)
//           dashboard (log in, see the two peers, kick one)
// Env: CHROMIUM (the executable), IGNORE_CERT=1 (a self-signed wss:// server).
// Every wait is bounded; a failure names the step and exits 1.
'use strict';
const path = require('path');
const { chromium } = require('playwright-core');

const [scenario, base, apiKey, shots] = process.argv.slice(2);
const WAIT = 10000;
let step = 'start';
const t0 = Date.now();

function say(text) {
  step = text;
  console.log(`[${((Date.now() - t0) / 1000).toFixed(1)} s] ${text}`);
}

async function metric(name) {
  const response = await fetch(`${base}/metrics`);
  const text = await response.text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  if (!line) throw new Error(`/metrics has no ${name}`);
  return Number(line.split(' ')[1]);
}

async function rosterCount(page, n, who) {
  await page.waitForFunction(
    (want) => document.querySelectorAll('#roster li').length === want,
    n,
    { timeout: WAIT },
  ).catch(async () => {
    const seen = await page.$$eval('#roster li', (lis) => lis.map((li) => li.dataset.peer));
    throw new Error(`${who}'s roster never had ${n} entries; it shows ${JSON.stringify(seen)}`);
  });
}

async function textIn(page, selector, text, who) {
  await page.waitForFunction(
    ([sel, want]) => (document.querySelector(sel)?.textContent || '').includes(want),
    [selector, text],
    { timeout: WAIT },
  ).catch(async () => {
    const seen = await page.$eval(selector, (el) => el.textContent).catch(() => '<missing>');
    throw new Error(`${who}: ${selector} never showed "${text}"; it shows "${seen}"`);
  });
}

async function me(page) {
  await page.waitForSelector('#roster li.self', { timeout: WAIT });
  return page.$eval('#roster li.self', (li) => li.dataset.peer);
}

async function twoTabs(context, url) {
  say(`open two tabs of ${url}`);
  const a = await context.newPage();
  const b = await context.newPage();
  for (const [page, who] of [[a, 'tab A'], [b, 'tab B']]) {
    page.on('pageerror', (e) => console.log(`${who} page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') console.log(`${who} console: ${m.text()}`); });
    await page.goto(url);
  }
  say('both rosters show both tabs');
  await rosterCount(a, 2, 'tab A');
  await rosterCount(b, 2, 'tab B');
  return [a, b, await me(a), await me(b)];
}

async function demo(context, dialect) {
  const url = `${base}/demo${dialect === 'rtc' ? '?dialect=rtc' : ''}`;
  const [a, b, idA, idB] = await twoTabs(context, url);
  if (idA === idB) throw new Error(`both tabs got the id ${idA}`);
  await textIn(a, '#roster', idB, 'tab A');
  await textIn(b, '#roster', idA, 'tab B');

  say('a chat line from A reaches B (publish)');
  const line = `hello from A over ${dialect}`;
  await a.fill('#chat-input', line);
  await a.click('#chat-form button');
  await textIn(b, '#chat', line, 'tab B');

  say('the data channel opens on both sides');
  await textIn(a, '#p2p-status', 'data channel open', 'tab A');
  await textIn(b, '#p2p-status', 'data channel open', 'tab B');

  say('a message over the data channel, not through the server');
  const before = await metric('switchyard_deliveries_total');
  const messagesBefore = await metric('switchyard_messages_total');
  const direct = `peer to peer from B (${dialect})`;
  await b.fill('#p2p-input', direct);
  await b.click('#p2p-form button');
  await textIn(a, '#p2p', direct, 'tab A');
  const after = await metric('switchyard_deliveries_total');
  const messagesAfter = await metric('switchyard_messages_total');
  if (after !== before || messagesAfter !== messagesBefore) {
    throw new Error(`the data channel message went through the server: deliveries ${before} -> ${after}, messages ${messagesBefore} -> ${messagesAfter}`);
  }
  console.log(`  deliveries stayed at ${after}, messages at ${messagesAfter}`);
  await a.screenshot({ path: path.join(shots, `demo-${dialect}.png`), fullPage: true });

  say('B closes; A\'s roster drops it');
  await b.close();
  await rosterCount(a, 1, 'tab A');
  await textIn(a, '#chat', `${idB} left`, 'tab A');
  await a.close();
}

async function dashboard(context) {
  const [a, b, , idB] = await twoTabs(context, `${base}/demo`);
  say('log in to the dashboard');
  const d = await context.newPage();
  d.on('pageerror', (e) => console.log(`dashboard page error: ${e.message}`));
  await d.goto(`${base}/dashboard`);
  await d.fill('#key', apiKey);
  await d.click('#login button[type=submit]');
  await textIn(d, '#status', 'live', 'dashboard');
  say('the dashboard sees both peers');
  await d.waitForFunction(() => document.querySelectorAll('#peers li[data-peer]').length === 2, null, { timeout: WAIT })
    .catch(() => { throw new Error('the dashboard never listed two peers in channel demo'); });
  await textIn(d, '#connections', '2', 'dashboard');
  await textIn(d, '#by-dialect', 'json', 'dashboard');
  await textIn(d, '#channels', 'demo', 'dashboard');
  say(`the dashboard shows ${idB}'s subscriptions`);
  await d.click(`#peers li[data-peer="${idB}"] button[title=subscriptions]`);
  await textIn(d, '#peer-detail', '"channels":["demo"]', 'dashboard');
  // A chat line, so that the charts have something to show.
  await a.fill('#chat-input', 'hello, dashboard');
  await a.click('#chat-form button');
  await textIn(b, '#chat', 'hello, dashboard', 'tab B');
  await d.waitForTimeout(2200);
  await d.screenshot({ path: path.join(shots, 'dashboard.png'), fullPage: true });
  say(`kick ${idB} from the dashboard`);
  await d.click(`#peers li[data-peer="${idB}"] .kick`);
  await textIn(b, '#status', 'disconnected by the server: 4020', 'the kicked tab');
  await textIn(d, '#peer-detail', `kicked ${idB}`, 'dashboard');
  await rosterCount(a, 1, 'tab A');
  await textIn(d, '#closes', '4020', 'dashboard');
}

(async () => {
  const args = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'];
  if (process.env.IGNORE_CERT) args.push('--ignore-certificate-errors');
  say('launch chromium');
  const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium', args, timeout: WAIT * 2 });
  try {
    const context = await browser.newContext({ viewport: { width: 1200, height: 720 }, ignoreHTTPSErrors: !!process.env.IGNORE_CERT });
    if (scenario === 'dashboard') await dashboard(context);
    else await demo(context, scenario);
    say('passed');
  } finally {
    await browser.close();
  }
})().catch((e) => {
  console.error(`FAILED at step "${step}": ${e.message}`);
  process.exit(1);
});
