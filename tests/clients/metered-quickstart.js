#!/usr/bin/env node
// A client of the Metered-style JSON wire, written the way the public "5-minute
// quickstart" tells a developer to: `ws` + `jsonwebtoken`, an HS256 JWT with the key id
// in the `kid` header, `/v1?token=…`, then welcome → subscribe → ack → publish.
//
//   node metered-quickstart.js --url ws://127.0.0.1:PORT --kid KID --secret SECRET
//
// Exit 0 when every check passed; 1 with the failed check; 2 on the global timeout.

'use strict';

const crypto = require('node:crypto');
const WebSocket = require('ws');
const jwt = require('jsonwebtoken');

const STEP_MS = 4000;
const GLOBAL_MS = 15000;

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) {
    if (!argv[i].startsWith('--')) throw new Error(`unexpected argument ${argv[i]}`);
    out[argv[i].slice(2)] = argv[i + 1];
  }
  for (const k of ['url', 'kid', 'secret']) if (!out[k]) throw new Error(`missing --${k}`);
  return out;
}

// Step 2 of the quickstart: mint a JWT server-side.
function mint(opts, claims, secret = opts.secret) {
  return jwt.sign(
    {
      permissions: ['publish', 'subscribe', 'presence', 'send'],
      exp: Math.floor(Date.now() / 1000) + 3600,
      ...claims,
    },
    secret,
    { algorithm: 'HS256', header: { alg: 'HS256', kid: opts.kid } },
  );
}

// Step 3: one connection; every frame is kept so checks can look back.
class Peer {
  constructor(label, url, token) {
    this.label = label;
    this.frames = [];
    this.waiters = [];
    this.closed = null;
    this.ws = new WebSocket(`${url}/v1?token=${encodeURIComponent(token)}`);
    this.ws.on('message', (raw) => {
      let msg;
      try {
        msg = JSON.parse(raw.toString());
      } catch (e) {
        msg = { type: '<not json>', raw: raw.toString() };
      }
      this.frames.push(msg);
      this.notify();
    });
    this.ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.notify();
    });
    this.ws.on('error', (e) => {
      this.error = e;
      this.notify();
    });
  }

  notify() {
    for (const w of [...this.waiters]) w();
  }

  send(msg) {
    this.ws.send(JSON.stringify(msg));
  }

  // Waits until `probe()` returns something truthy; fails after `ms` with `what`.
  until(what, probe, ms = STEP_MS) {
    return new Promise((resolve, reject) => {
      const attempt = () => {
        let value;
        try {
          value = probe();
        } catch (e) {
          done();
          reject(e);
          return true;
        }
        if (value) {
          done();
          resolve(value);
          return true;
        }
        return false;
      };
      const done = () => {
        clearTimeout(timer);
        const i = this.waiters.indexOf(attempt);
        if (i >= 0) this.waiters.splice(i, 1);
      };
      const timer = setTimeout(() => {
        done();
        reject(new Error(`${this.label}: no ${what} within ${ms} ms; frames: ${JSON.stringify(this.frames)}; close: ${JSON.stringify(this.closed)}`));
      }, ms);
      this.waiters.push(attempt);
      attempt();
    });
  }

  // The first frame (at or after index `from`) matching `pred`.
  frame(what, pred, from = 0) {
    return this.until(what, () => this.frames.slice(from).find(pred));
  }

  closeEvent(what) {
    return this.until(what, () => this.closed);
  }
}

function check(cond, message) {
  if (!cond) throw new Error(message);
  console.log(`ok - ${message}`);
}

const sameJson = (a, b) => JSON.stringify(a) === JSON.stringify(b);

async function main(opts) {
  const tag = crypto.randomUUID().slice(0, 8);
  const channel = `room-${tag}`;
  const alice = `alice-${tag}`;
  const bob = `bob-${tag}`;
  console.log(`# JSON quickstart client against ${opts.url}/v1, channel ${channel}`);
  const peers = [];
  try {
    // Alice: metadata with ICE servers, which only her own welcome may show.
    const ice = [{ urls: 'stun:stun.example.invalid:3478' }];
    const aliceExp = Math.floor(Date.now() / 1000) + 3600;
    const a = new Peer('alice', opts.url, mint(opts, {
      sub: alice, channels: ['room-*'], exp: aliceExp, metadata: { name: 'Alice', iceServers: ice },
    }));
    peers.push(a);
    const welcome = await a.frame('welcome', () => true);
    check(welcome.type === 'welcome', `the first frame is welcome (got ${welcome.type})`);
    check(welcome.peerId === alice, 'welcome.peerId is the token sub');
    check(welcome.expiresAt === aliceExp, 'welcome.expiresAt is the token exp');
    check(Math.abs(welcome.serverTime - Date.now() / 1000) < 30, 'welcome.serverTime is unix seconds, now');
    check(Number.isInteger(welcome.maxMessageSize) && welcome.maxMessageSize > 0,
      `welcome.maxMessageSize is a positive integer (${welcome.maxMessageSize})`);
    check(sameJson(welcome.iceServers, ice), "welcome.iceServers comes from the token's metadata.iceServers");

    a.send({ type: 'subscribe', channel, requestId: 'sub-1' });
    const ackAt = a.frames.length;
    const ack = await a.frame('ack sub-1', (m) => m.type === 'ack' || m.type === 'error', 1);
    check(ack.type === 'ack' && ack.requestId === 'sub-1', `subscribe is acked with its requestId (${JSON.stringify(ack)})`);
    const snap = await a.frame('presence snapshot', (m) => m.type === 'presence', ackAt);
    check(snap.channel === channel && snap.snapshot === true && Array.isArray(snap.joined) && snap.joined.length === 0,
      `after the ack, a presence snapshot, empty for the first member (${JSON.stringify(snap)})`);
    check(a.frames.indexOf(snap) > a.frames.indexOf(ack), 'the snapshot comes after the ack');

    // Bob joins with sender metadata on.
    const b = new Peer('bob', opts.url, mint(opts, { sub: bob, channels: [channel], metadata: { name: 'Bob' } }));
    peers.push(b);
    const bw = await b.frame('welcome', () => true);
    check(bw.type === 'welcome' && bw.peerId === bob && bw.iceServers === null,
      'bob is welcomed; iceServers null without metadata.iceServers');
    b.send({ type: 'subscribe', channel, requestId: 'sub-1', includeSenderMetadata: true });
    await b.frame('ack sub-1', (m) => m.type === 'ack' && m.requestId === 'sub-1');
    const bsnap = await b.frame('presence snapshot', (m) => m.type === 'presence');
    const seenAlice = (bsnap.joined || []).find((j) => j.peerId === alice);
    check(bsnap.snapshot === true && bsnap.joined.length === 1 && seenAlice,
      `bob's snapshot lists alice, not himself (${JSON.stringify(bsnap)})`);
    check(seenAlice.metadata && seenAlice.metadata.name === 'Alice' && !('iceServers' in seenAlice.metadata),
      "alice's presence metadata is her token metadata without iceServers");
    const joined = await a.frame('presence delta: bob joined',
      (m) => m.type === 'presence' && !m.snapshot && (m.joined || []).some((j) => j.peerId === bob));
    check(joined.channel === channel && joined.joined.find((j) => j.peerId === bob).metadata.name === 'Bob',
      'alice gets a presence delta: bob joined, with his metadata');

    // Publish: the other gets `message` with `from`; the publisher never gets its own.
    const data = { hello: 'world', from: 'alice', n: [1, 2.5, 'three', null, true] };
    const before = a.frames.length;
    a.send({ type: 'publish', channel, data, requestId: 'pub-1' });
    const pubAck = await a.frame('ack pub-1', (m) => m.requestId === 'pub-1', before);
    check(pubAck.type === 'ack', 'publish is acked');
    const msg = await b.frame("alice's message", (m) => m.type === 'message');
    check(msg.channel === channel && msg.from === alice && sameJson(msg.data, data),
      `bob gets {type:"message", channel, from:"${alice}", data} with the data intact`);
    check(msg.fromMetadata && msg.fromMetadata.name === 'Alice',
      'bob subscribed with includeSenderMetadata, so the message carries fromMetadata');
    // Deliveries are queued before the ack: an echo would already be here.
    check(!a.frames.some((m) => m.type === 'message'), 'alice did not get her own message back');

    b.send({ type: 'publish', channel, data: 'plain string' });
    const m2 = await a.frame("bob's message", (m) => m.type === 'message');
    check(m2.from === bob && m2.data === 'plain string' && !('fromMetadata' in m2),
      'alice gets bob\'s publish (no requestId, no ack needed), without fromMetadata');
    check(!b.frames.some((m) => m.type === 'ack' && m.requestId === undefined), 'a publish without requestId gets no ack');

    // Direct messages.
    b.send({ type: 'send', to: alice, data: { nonce: 'abc' }, requestId: 'send-1' });
    const direct = await a.frame('direct from bob', (m) => m.type === 'direct');
    check(direct.from === bob && sameJson(direct.data, { nonce: 'abc' }),
      'send → the target gets {type:"direct", from, data}');
    await b.frame('ack send-1', (m) => m.type === 'ack' && m.requestId === 'send-1');
    b.send({ type: 'send', to: `nobody-${tag}`, data: 1, requestId: 'send-2' });
    const nf = await b.frame('error send-2', (m) => m.requestId === 'send-2');
    check(nf.type === 'error' && nf.code === 'peer_not_found', `send to an absent peer: error peer_not_found (${JSON.stringify(nf)})`);

    // Grants.
    b.send({ type: 'subscribe', channel: `elsewhere-${tag}`, requestId: 'sub-2' });
    const na = await b.frame('error sub-2', (m) => m.requestId === 'sub-2');
    check(na.type === 'error' && na.code === 'channel_not_authorized',
      `subscribe outside the token's channels: error channel_not_authorized (${na.code})`);

    // Bob goes away without a word: alice sees him leave.
    b.ws.terminate();
    const left = await a.frame('presence delta: bob left',
      (m) => m.type === 'presence' && (m.left || []).some((l) => l.peerId === bob));
    check(left.channel === channel, 'bob vanished (socket destroyed): alice gets presence left');

    a.send({ type: 'unsubscribe', channel, requestId: 'unsub-1' });
    await a.frame('ack unsub-1', (m) => m.type === 'ack' && m.requestId === 'unsub-1');
    check(true, 'unsubscribe is acked');

    // Bad and expired tokens: closed before any welcome.
    const bad = new Peer('bad-signature', opts.url, mint(opts, { sub: 'mallory', channels: [channel] }, 'not-the-secret'));
    peers.push(bad);
    const badClose = await bad.closeEvent('close');
    check(badClose.code === 4001 && bad.frames.length === 0,
      `a token with a bad signature: close 4001 before any frame (${JSON.stringify(badClose)}, ${bad.frames.length} frames)`);
    const junk = new Peer('junk', opts.url, 'not.a.jwt');
    peers.push(junk);
    const junkClose = await junk.closeEvent('close');
    check(junkClose.code === 4001 && junk.frames.length === 0, 'a malformed token: close 4001 before any frame');
    const old = new Peer('expired', opts.url, mint(opts, {
      sub: 'late', channels: [channel], exp: Math.floor(Date.now() / 1000) - 3600,
    }));
    peers.push(old);
    const oldClose = await old.closeEvent('close');
    check(oldClose.code === 4002 && old.frames.length === 0,
      `an expired token: close 4002 before any frame (${JSON.stringify(oldClose)})`);

    console.log('# JSON quickstart client: all checks passed');
  } finally {
    for (const p of peers) p.ws.terminate();
  }
}

if (require.main === module) {
  const timer = setTimeout(() => {
    console.error(`FAIL: global timeout of ${GLOBAL_MS} ms`);
    process.exit(2);
  }, GLOBAL_MS);
  let opts;
  try {
    opts = parseArgs(process.argv.slice(2));
  } catch (e) {
    console.error(`FAIL: ${e.message}`);
    process.exit(1);
  }
  main(opts).then(
    () => {
      clearTimeout(timer);
      process.exit(0);
    },
    (e) => {
      console.error(`FAIL: ${e.message}`);
      process.exit(1);
    },
  );
}
