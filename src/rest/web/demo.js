// The demo page: join a room, show its roster, chat through the server, and open a
// WebRTC data channel to every other tab, signalled through the server.

import * as json from './json.js';
import * as rtc from './rtc.js';
import { Mesh } from './peer.js';

const $ = (id) => document.getElementById(id);
const dialect = new URLSearchParams(location.search).get('dialect') === 'rtc' ? rtc : json;
$(dialect === rtc ? 'mode-rtc' : 'mode-json').classList.add('current');
$('name').value = `tab-${Math.floor(Math.random() * 9000 + 1000)}`;

let signalling = null;
let me = null;
const roster = new Map();
const mesh = new Mesh({
  signal: (to, data) => signalling && signalling.signal(to, data),
  opened: (peer) => { setP2p(`data channel open with ${peer}`, 'ok'); log('p2p', null, `data channel open with ${peer}`); },
  message: (peer, text) => log('p2p', peer, text),
  closed: (peer) => log('p2p', null, `data channel with ${peer} closed`),
});

function setStatus(text, kind) {
  $('status').textContent = text;
  $('status').className = `status ${kind || ''}`;
}

function setP2p(text, kind) {
  $('p2p-status').textContent = text;
  $('p2p-status').className = `status ${kind || ''}`;
}

function log(list, from, text) {
  const li = document.createElement('li');
  if (from === null) {
    li.className = 'system';
    li.textContent = text;
  } else {
    const who = document.createElement('span');
    who.className = 'from';
    who.textContent = from;
    li.append(who, document.createTextNode(text));
  }
  $(list).append(li);
  $(list).scrollTop = $(list).scrollHeight;
}

function drawRoster() {
  const ul = $('roster');
  ul.replaceChildren();
  const entries = [[me, { you: true }], ...[...roster].sort(([a], [b]) => a.localeCompare(b))];
  for (const [peer, metadata] of entries) {
    if (peer === null) continue;
    const li = document.createElement('li');
    li.dataset.peer = peer;
    if (peer === me) li.className = 'self';
    const id = document.createElement('span');
    id.className = 'peer';
    id.textContent = peer;
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = peer === me ? '' : JSON.stringify(metadata || {});
    li.append(id, meta);
    ul.append(li);
  }
}

function join() {
  if (signalling) signalling.close();
  mesh.dropAll();
  roster.clear();
  me = null;
  drawRoster();
  setStatus('connecting…');
  const room = $('room').value.trim() || 'demo';
  signalling = new dialect.Signalling({
    room,
    name: $('name').value.trim(),
    token: $('token').value.trim(),
    on: {
      welcome: (id) => {
        me = id;
        $('me').textContent = `you are ${id} in ${room}`;
        setStatus(`connected (${dialect.DIALECT})`, 'ok');
        drawRoster();
      },
      snapshot: () => roster.clear(),
      joined: (peer, metadata) => {
        const known = roster.has(peer);
        roster.set(peer, metadata);
        drawRoster();
        if (!known) {
          log('chat', null, `${peer} joined`);
          mesh.meet(me, peer);
        }
      },
      left: (peer) => {
        if (!roster.delete(peer)) return;
        mesh.drop(peer);
        drawRoster();
        log('chat', null, `${peer} left`);
      },
      chat: (from, text) => log('chat', from, text),
      signal: (from, data) => mesh.handle(from, data),
      error: (text) => log('chat', null, `server: ${text}`),
      closed: (code, reason) => {
        signalling = null;
        mesh.dropAll();
        roster.clear();
        drawRoster();
        setStatus(`disconnected by the server: ${code}${reason ? ` ${reason}` : ''}`, 'bad');
        setP2p('no data channel', '');
      },
    },
  });
}

$('connect').addEventListener('submit', (event) => { event.preventDefault(); join(); });
$('chat-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('chat-input').value;
  if (!text || !signalling) return;
  signalling.chat(text);
  log('chat', 'you', text);
  $('chat-input').value = '';
});
$('p2p-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const text = $('p2p-input').value;
  if (!text) return;
  const sent = mesh.send(text);
  log('p2p', 'you', sent ? text : `${text} (no open data channel)`);
  $('p2p-input').value = '';
});

join();
