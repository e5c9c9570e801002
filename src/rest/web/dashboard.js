// The dashboard: polls /v1/stats every second with the API key in an Authorization
// header (the key lives in this module's memory only: gone on reload), shows a
// channel's presence from /v1/presence and kicks a peer with POST /v1/disconnect.

import { Chart } from './chart.js';

const $ = (id) => document.getElementById(id);
const POLL_MS = 1000;
let key = null;
let timer = null;
let last = null;
let firstCloses = null;
const charts = { messages: new Chart($('messages-chart')), deliveries: new Chart($('deliveries-chart')) };

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { ...(options.headers || {}), Authorization: `Bearer ${key}` },
    cache: 'no-store',
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(body.message || response.statusText);
    error.status = response.status;
    error.code = body.code;
    throw error;
  }
  return body;
}

function setStatus(text, kind) {
  $('status').textContent = text;
  $('status').className = `status ${kind || ''}`;
}

function cell(text, numeric) {
  const td = document.createElement('td');
  td.textContent = String(text);
  if (numeric) td.className = 'n';
  return td;
}

function rows(tbody, entries) {
  $(tbody).replaceChildren(...entries.map((values) => {
    const tr = document.createElement('tr');
    tr.append(...values.map((v, i) => cell(v, i > 0 && typeof v === 'number')));
    return tr;
  }));
}

async function poll() {
  try {
    const s = await api('/v1/stats');
    const now = performance.now();
    $('connections').textContent = s.connections;
    rows('by-transport', Object.entries(s.connectionsByTransport).map(([t, n]) => [`transport ${t}`, n]));
    rows('by-dialect', Object.entries(s.connectionsByDialect).map(([d, n]) => [`dialect ${d}`, n]));
    $('channel-count').textContent = `${s.channels} non-empty, ${s.memberships} memberships, ${s.patternSubscriptions} wildcard`;
    if (last) {
      const seconds = Math.max(0.001, (now - last.at) / 1000);
      const rate = (field) => Math.max(0, s[field] - last.stats[field]) / seconds;
      charts.messages.push(rate('messages'));
      charts.deliveries.push(rate('deliveries'));
      $('message-rate').textContent = `${rate('messages').toFixed(1)}/s (${s.messages} in all)`;
      $('delivery-rate').textContent = `${rate('deliveries').toFixed(1)}/s (${s.deliveries} in all)`;
    }
    last = { at: now, stats: s };
    if (!firstCloses) firstCloses = new Map(s.closesByCode.map((c) => [c.code, c.count]));
    rows('closes', s.closesByCode.map((c) => [c.code, c.name, c.count - (firstCloses.get(c.code) || 0), c.count]));
    setStatus(`live, polling every ${POLL_MS / 1000} s`, 'ok');
  } catch (e) {
    if (e.status === 401 || e.status === 403) {
      logout(`refused: ${e.message}`);
      return;
    }
    setStatus(`poll failed: ${e.message}`, 'bad');
  }
}

async function channels() {
  try {
    const body = await api('/v1/channels');
    rows('channels', body.channels.map((c) => [c.channel, c.members]));
    $('channels-note').textContent = '';
  } catch (e) {
    $('channels-note').textContent = `channels: ${e.message}`;
  }
}

async function presence() {
  const channel = $('channel').value.trim();
  if (!channel) return;
  try {
    const body = await api(`/v1/presence?channel=${encodeURIComponent(channel)}`);
    $('peers').replaceChildren(...body.peers.map(({ peerId, metadata }) => {
      const li = document.createElement('li');
      li.dataset.peer = peerId;
      const id = document.createElement('button');
      id.type = 'button';
      id.className = 'small';
      id.textContent = peerId;
      id.title = 'subscriptions';
      id.addEventListener('click', () => peer(peerId));
      const meta = document.createElement('span');
      meta.className = 'meta';
      meta.textContent = JSON.stringify(metadata);
      const kick = document.createElement('button');
      kick.type = 'button';
      kick.className = 'small danger kick';
      kick.textContent = 'Kick';
      kick.addEventListener('click', () => disconnect(peerId));
      li.append(id, meta, kick);
      return li;
    }));
    if (body.peers.length === 0) $('peers').replaceChildren(Object.assign(document.createElement('li'), { textContent: 'nobody' }));
  } catch (e) {
    $('peer-detail').textContent = `presence: ${e.message}`;
  }
}

async function peer(id) {
  try {
    const body = await api(`/v1/peers/${encodeURIComponent(id)}`);
    $('peer-detail').textContent = `${id}: ${JSON.stringify(body)}`;
  } catch (e) {
    $('peer-detail').textContent = `${id}'s subscriptions: ${e.message}`;
  }
}

async function disconnect(id) {
  try {
    const body = await api('/v1/disconnect', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ peerId: id }),
    });
    $('peer-detail').textContent = `kicked ${id} (${body.disconnected ?? 0} connection(s))`;
  } catch (e) {
    $('peer-detail').textContent = `kick ${id}: ${e.message}`;
  }
  presence();
}

function tick() {
  poll();
  presence();
}

function login(value) {
  key = value;
  last = null;
  firstCloses = null;
  $('key').value = '';
  $('panels').classList.remove('hidden');
  $('logout').classList.remove('hidden');
  tick();
  channels();
  timer = setInterval(tick, POLL_MS);
}

function logout(why) {
  key = null;
  clearInterval(timer);
  $('panels').classList.add('hidden');
  $('logout').classList.add('hidden');
  setStatus(why || 'not logged in', why ? 'bad' : '');
}

$('login').addEventListener('submit', (event) => {
  event.preventDefault();
  const value = $('key').value.trim();
  if (value) login(value);
});
$('logout').addEventListener('click', () => logout());
$('presence-form').addEventListener('submit', (event) => { event.preventDefault(); presence(); });
