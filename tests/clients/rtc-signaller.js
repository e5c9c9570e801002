#!/usr/bin/env node
// The real rtc.io client (rtc-signaller 6.3.0 over rtc-switchboard-messenger 2.0.4)
// against a running Switchyard server's rtc-signaller endpoint.
//
//   node rtc-signaller.js --url ws://127.0.0.1:PORT --kid KID --secret SECRET --auth MODE
//                         [--scenario main|reload|mixed|expired-announce-token]
//
// MODE says how the peers authenticate:
//   none      the server allows anonymous peers; ids are the client's own cuids. Alice
//             still puts a (valid) token in her announce data: it must never travel.
//   announce  every peer announces with a `token` attribute (in-band auth); the client
//             repeats it in every announce and autoreply, so the server must strip it.
//   query     every peer connects to `<url>/?token=JWT`; the messenger appends the
//             endpoint, so the server sees `/?token=JWT/`.
//
// Scenario `main` (the default) is below in runParent; `reload` (runReload) is a page
// reload that keeps its peer id; `mixed` (runMixed) puts a JSON peer in the room;
// `expired-announce-token` (runExpiredAnnounceToken) announces an expired token.
//
// Alice, Carol and Dave live in this process. Bob lives in a child process (forked with
// an IPC channel), so that SIGKILL can take him away without a `/leave`.
// Exit 0 when every check passed; 1 with the failed check; 2 on the global timeout.

'use strict';

// rtc-core/detect reads the global `navigator` at load time and wants a browser's user
// agent: Node 20 has no `navigator` (a ReferenceError), Node 21+ has one whose agent
// detect-browser cannot parse. The client runs as if in Chrome, as it would in a page.
Object.defineProperty(globalThis, 'navigator', {
  value: {
    userAgent:
      'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
  },
  configurable: true,
  writable: true,
});

const { fork } = require('node:child_process');
const crypto = require('node:crypto');
const jwt = require('jsonwebtoken');
const rtcSignaller = require('rtc-signaller');
const switchboardMessenger = require('rtc-switchboard-messenger');

const STEP_MS = 4000;
const GLOBAL_MS = 15000;
const LEAVE_MS = 3000;

function parseArgs(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 1) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const key = a.slice(2);
    if (key === 'child') {
      out.child = true;
      continue;
    }
    out[key] = argv[i + 1];
    i += 1;
  }
  return out;
}

function mintToken(sub, room, opts) {
  return jwt.sign(
    {
      sub,
      channels: [room],
      permissions: ['publish', 'subscribe', 'presence', 'send'],
      exp: Math.floor(Date.now() / 1000) + 600,
    },
    opts.secret,
    { algorithm: 'HS256', header: { alg: 'HS256', kid: opts.kid } },
  );
}

// What one peer needs to connect: the messenger URL, the signaller options, and the
// announce data (with a token in `announce` mode).
function peerPlan(name, nick, room, opts, fixedId) {
  const id = fixedId || (opts.auth === 'none' ? undefined : `${name}-${crypto.randomUUID().slice(0, 8)}`);
  const token = id ? mintToken(id, room, opts) : undefined;
  const url = opts.auth === 'query' ? `${opts.url}/?token=${token}` : opts.url;
  const announce = { room, nick };
  if (opts.auth === 'announce') announce.token = token;
  return { name, id, url, announce };
}

// A peer object from the client's peer table, or whatever stands in its place, in a
// form that survives JSON (for Bob's reports over IPC).
function plain(value) {
  if (value && typeof value === 'object' && 'roleIdx' in value && 'data' in value) {
    return { peerId: value.id, peerData: value.data };
  }
  return value;
}

// Starts a real signaller and records everything it emits.
function startPeer(plan, report) {
  const signaller = rtcSignaller(switchboardMessenger(plan.url), plan.id ? { id: plan.id } : {});
  signaller.feed((event) => report({ name: event.name, args: event.args.map(plain) }));
  return signaller;
}

// The sender id of a raw frame as the client sees it (inside `/to`, the wrapped
// frame's part 2), or undefined for server frames such as `/roominfo|{…}`.
function senderOf(raw) {
  const parts = raw.split('|');
  const sender = parts[0] === '/to' ? parts[3] : parts[1];
  return sender && !sender.startsWith('{') ? sender : undefined;
}

// ---------------------------------------------------------------------------------
// Child: Bob.

function runChild() {
  const plan = JSON.parse(process.env.SY_CHILD_PLAN);
  const bob = startPeer(plan, (event) => process.send({ event }));
  process.send({ id: bob.id });
  process.on('message', (cmd) => {
    if (cmd.to) bob.to(cmd.to).send(cmd.command, cmd.payload);
    else bob.send(cmd.command, cmd.payload);
  });
  // Never outlive the parent.
  process.on('disconnect', () => process.exit(3));
  bob.announce(plan.announce);
}

// ---------------------------------------------------------------------------------
// Parent: the checks.

class Recorder {
  constructor(label) {
    this.label = label;
    this.events = [];
    this.waiters = [];
    this.id = undefined;
  }

  push(event) {
    this.events.push(event);
    for (const w of [...this.waiters]) {
      if (w.pred(event)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(event);
      }
    }
  }

  find(pred) {
    return this.events.find(pred);
  }

  count(pred) {
    return this.events.filter(pred).length;
  }

  // The first recorded event matching `pred`, now or within `ms`.
  wait(what, pred, ms = STEP_MS) {
    const seen = this.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = { pred, resolve: (e) => { clearTimeout(timer); resolve(e); } };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        const names = this.events.map((e) => e.name).filter((n) => n !== 'rawdata');
        reject(new Error(`${this.label}: no ${what} within ${ms} ms (events so far: ${names.join(', ') || 'none'})`));
      }, ms);
      this.waiters.push(waiter);
    });
  }
}

const is = (name, pred = () => true) => (e) => e.name === name && pred(e.args);

function check(cond, message) {
  if (!cond) throw new Error(message);
  console.log(`ok - ${message}`);
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function validate(opts) {
  for (const k of ['url', 'kid', 'secret']) {
    if (!opts[k]) throw new Error(`missing --${k}`);
  }
  opts.auth = opts.auth || 'none';
  if (!['none', 'announce', 'query'].includes(opts.auth)) throw new Error(`bad --auth ${opts.auth}`);
  opts.scenario = opts.scenario || 'main';
  if (!['main', 'reload', 'mixed', 'expired-announce-token'].includes(opts.scenario)) throw new Error(`bad --scenario ${opts.scenario}`);
}

async function runParent(opts) {
  const room = `room-${crypto.randomUUID().slice(0, 8)}`;
  console.log(`# rtc-signaller 6.3.0 against ${opts.url}, auth=${opts.auth}, room ${room}`);

  const recorders = {};
  const peers = {};
  const children = [];
  const cleanup = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const p of Object.values(peers)) p.leave();
  };

  const frames = []; // [label, raw] of every frame any client accepted
  function record(label) {
    const rec = (recorders[label] = new Recorder(label));
    return (event) => {
      if (event.name === 'rawdata') frames.push([label, event.args[0]]);
      rec.push(event);
    };
  }

  try {
    // Alice first, with a token in her announce data in every mode.
    const alicePlan = peerPlan('alice', 'Alice', room, opts);
    peers.alice = startPeer(alicePlan, record('alice'));
    recorders.alice.id = peers.alice.id;
    if (!('token' in alicePlan.announce)) alicePlan.announce.token = mintToken(peers.alice.id, room, opts);
    peers.alice.announce(alicePlan.announce);
    const aliceInfo = await recorders.alice.wait('/roominfo', is('message.roominfo'));
    check(aliceInfo.args[0] && aliceInfo.args[0].memberCount === 1,
      `alice gets /roominfo as message:roominfo, memberCount 1 (got ${JSON.stringify(aliceInfo.args[0])})`);

    // Bob in a child process.
    const bobPlan = peerPlan('bob', 'Bob', room, opts);
    const child = fork(__filename, ['--child'], {
      env: { ...process.env, SY_CHILD_PLAN: JSON.stringify(bobPlan) },
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    children.push(child);
    const pushBob = record('bob');
    child.on('message', (m) => {
      if (m.event) pushBob(m.event);
    });
    const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
    const bobId = await new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('bob (child) never reported its id')), STEP_MS);
      child.once('message', (m) => { clearTimeout(t); resolve(m.id); });
    });
    recorders.bob.id = bobId;

    const aliceSeesBob = await recorders.alice.wait('peer:announce for bob',
      is('peer.announce', ([data]) => data.id === bobId));
    check(aliceSeesBob.args[0].nick === 'Bob',
      `alice gets peer:announce for bob with nick Bob (room ${aliceSeesBob.args[0].room})`);
    const bobSeesAlice = await recorders.bob.wait('peer:announce for alice (autoreply)',
      is('peer.announce', ([data]) => data.id === peers.alice.id));
    check(bobSeesAlice.args[0].nick === 'Alice',
      'bob gets peer:announce for alice (her /to autoreply) with nick Alice');
    check(!('token' in bobSeesAlice.args[0]),
      "alice's autoreply /to|bob|/announce|… reaches bob without her token attribute");
    const bobInfo = await recorders.bob.wait('/roominfo', is('message.roominfo'));
    check(bobInfo.args[0].memberCount === 2, `bob's /roominfo counts 2 (got ${bobInfo.args[0].memberCount})`);

    // Carol joins: both autoreply to her.
    const carolPlan = peerPlan('carol', 'Carol', room, opts);
    peers.carol = startPeer(carolPlan, record('carol'));
    recorders.carol.id = peers.carol.id;
    peers.carol.announce(carolPlan.announce);
    for (const [who, id, nick] of [['alice', peers.alice.id, 'Alice'], ['bob', bobId, 'Bob']]) {
      const seen = await recorders.carol.wait(`peer:announce for ${who}`,
        is('peer.announce', ([data]) => data.id === id));
      check(seen.args[0].nick === nick, `carol gets peer:announce for ${who} (autoreply) with nick ${nick}`);
    }
    await recorders.alice.wait('peer:announce for carol', is('peer.announce', ([d]) => d.id === peers.carol.id));
    await recorders.bob.wait('peer:announce for carol', is('peer.announce', ([d]) => d.id === peers.carol.id));
    check(true, 'alice and bob get peer:announce for carol');

    // A direct message: only its target gets it.
    peers.alice.to(bobId).send('/hello', { n: 1, text: 'hi bob' });
    const hello = await recorders.bob.wait('message:hello from alice', is('message.hello'));
    check(hello.args[0].n === 1 && hello.args[1].peerId === peers.alice.id,
      "bob gets alice's signaller.to(bob).send('/hello', …) as message:hello, sender resolved to alice");
    // Then a broadcast from the same sender: per-sender order means carol would have
    // got the /hello before it, had it been misrouted to her.
    peers.alice.send('/shout', 'everyone', { n: 2 });
    for (const who of ['bob', 'carol']) {
      const shout = await recorders[who].wait('message:shout', is('message.shout'));
      check(shout.args[0] === 'everyone' && shout.args[1].n === 2 && shout.args[2].peerId === peers.alice.id,
        `${who} gets alice's broadcast /shout|alice|everyone|{"n":2} as message:shout`);
    }
    check(!recorders.carol.find(is('message.hello')), 'carol never saw the /hello addressed to bob');

    // And back, from the child.
    child.send({ to: peers.alice.id, command: '/hello', payload: { n: 3 } });
    const back = await recorders.alice.wait('message:hello from bob', is('message.hello'));
    check(back.args[0].n === 3 && back.args[1].peerId === bobId, "alice gets bob's direct /hello");
    peers.alice.send('/shout', 'again', { n: 4 });
    await recorders.carol.wait('the second shout', is('message.shout', ([t]) => t === 'again'));
    check(recorders.carol.count(is('message.hello')) === 0, "carol never saw bob's /hello to alice either");

    // A `/to` for nobody: Switchyard answers with its /error frame; the client must
    // shrug it off and keep working.
    peers.alice.to('nobody-here').send('/hello', { n: 5 });
    const err = await recorders.alice.wait('/error for a /to nobody', is('message.error'));
    check(err.args[0] && err.args[0].code === 'peer_not_found',
      `alice gets /error|{"code":"peer_not_found",…} as message:error (got ${JSON.stringify(err.args[0])})`);
    check(!recorders.alice.find(is('disconnected')), 'alice is still connected after the /error');

    // Bob is killed: no /leave from him, so the server must make one.
    const killedAt = Date.now();
    child.kill('SIGKILL');
    const { signal } = await exited;
    check(signal === 'SIGKILL', 'bob (child process) was SIGKILLed');
    for (const who of ['alice', 'carol']) {
      const leave = await recorders[who].wait(`message:leave for bob (synthetic) within ${LEAVE_MS} ms`,
        is('message.leave', ([data]) => data && data.id === bobId), LEAVE_MS);
      check(leave.args[1].peerId === bobId,
        `${who} gets the synthetic /leave|${bobId}|{"id":…} as message:leave ${Date.now() - killedAt} ms after the kill`);
    }

    // A newcomer sees the room without bob.
    const davePlan = peerPlan('dave', 'Dave', room, opts);
    peers.dave = startPeer(davePlan, record('dave'));
    recorders.dave.id = peers.dave.id;
    peers.dave.announce(davePlan.announce);
    const daveInfo = await recorders.dave.wait('/roominfo', is('message.roominfo'));
    check(daveInfo.args[0].memberCount === 3,
      `dave's /roominfo counts 3 (alice, carol, dave): bob is gone (got ${daveInfo.args[0].memberCount})`);
    await recorders.dave.wait('peer:announce for carol', is('peer.announce', ([d]) => d.id === peers.carol.id));

    // The server closes alice (a frame over max_frame_bytes: 1009); the client
    // reconnects 50 ms later by itself and re-announces. The others see a synthetic
    // /leave, then her announce as an update (the v6 client never forgets a peer).
    peers.alice.send('/big', 'x'.repeat(70 * 1024));
    await recorders.alice.wait('disconnected after the oversize frame', is('disconnected'));
    await recorders.carol.wait('message:leave for alice', is('message.leave', ([d]) => d && d.id === peers.alice.id));
    const update = await recorders.carol.wait('peer:update for alice after her reconnect',
      is('peer.update', ([d]) => d.id === peers.alice.id));
    check(update.args[0].nick === 'Alice' && !('token' in update.args[0]),
      'after the server closed alice (1009), the client reconnected and re-announced: carol gets a leave, then peer:update');
    const info2 = await recorders.alice.wait('/roominfo after the reconnect',
      (e) => e.name === 'message.roominfo' && recorders.alice.events.indexOf(e) > recorders.alice.events.findIndex(is('disconnected')));
    check(info2.args[0].memberCount === 3, `alice's second /roominfo counts 3 (got ${info2.args[0].memberCount})`);
    check(!recorders.carol.find(is('message.big')), 'the oversize frame reached nobody');

    // Graceful leave: carol's /leave travels once, and no synthetic one follows.
    peers.carol.leave();
    delete peers.carol;
    await recorders.dave.wait('message:leave for carol', is('message.leave', ([d]) => d && d.id === recorders.carol.id));
    await recorders.carol.wait('carol disconnected', is('disconnected'));
    await sleep(500); // quiet window: a second leave would come from her socket's close
    for (const who of ['alice', 'dave']) {
      const n = recorders[who].count(is('message.leave', ([d]) => d && d.id === recorders.carol.id));
      check(n === 1, `${who} got carol's graceful /leave exactly once (got ${n})`);
    }

    // A bad token in the URL: the server closes 4001 right after the upgrade. The v6
    // client cannot see the code; it reports `error` and, since it never got
    // `connected`, does not reconnect by itself (no storm).
    if (opts.auth === 'query') {
      const evePlan = peerPlan('eve', 'Eve', room, opts);
      evePlan.url = `${opts.url}/?token=not.a.jwt`;
      peers.eve = startPeer(evePlan, record('eve'));
      peers.eve.announce(evePlan.announce);
      const e = await recorders.eve.wait('error event for a bad token', is('error'));
      check(String(e.args[0] && e.args[0].message).includes('Unable to connect'),
        `a bad URL token: the client emits error (${e.args[0] && e.args[0].message})`);
      await sleep(300); // quiet window: a reconnect would show as `connected`
      check(!recorders.eve.find(is('connected')), 'a bad URL token: the client never got connected');
      check(!recorders.alice.find(is('peer.announce', ([d]) => d.id === evePlan.id)), 'nobody saw eve');
      peers.eve.leave();
      delete peers.eve;
    }

    // Across everything: no token ever reached a client, and no client was sent its
    // own frame back.
    const leaked = frames.filter(([, raw]) => raw.includes('"token"'));
    check(leaked.length === 0, `no frame carried a token attribute (${frames.length} frames checked)${leaked.length ? `: ${JSON.stringify(leaked[0])}` : ''}`);
    const echoed = frames.filter(([label, raw]) => senderOf(raw) === recorders[label].id);
    check(echoed.length === 0, `no client got its own frame back${echoed.length ? `: ${JSON.stringify(echoed[0])}` : ''}`);

    console.log('# rtc-signaller: all checks passed');
  } finally {
    cleanup();
  }
}


// A page reload that keeps its id (an app that passes `opts.id = sub`, as it must
// when it authenticates with a JWT): the old signaller leaves, a new one with an
// empty peer table announces the same id. The members already there know the id, so
// the v6 client treats the announce as an update and sends no autoreply; unless the
// server tells the newcomer who is in the room, it never learns about them.
async function runReload(opts) {
  const room = `room-${crypto.randomUUID().slice(0, 8)}`;
  console.log(`# rtc-signaller 6.3.0 reload with the same id against ${opts.url}, auth=${opts.auth}, room ${room}`);
  const peers = [];
  const rec = {};
  const start = (plan) => {
    rec[plan.name] = new Recorder(plan.name);
    const p = startPeer(plan, (e) => rec[plan.name].push(e));
    peers.push(p);
    p.announce(plan.announce);
    return p;
  };
  try {
    const suffix = crypto.randomUUID().slice(0, 8);
    const alice = start(peerPlan('alice', 'Alice', room, opts, `alice-${suffix}`));
    await rec.alice.wait('/roominfo', is('message.roominfo'));
    const bobId = `bob-${suffix}`;
    const bob = start(peerPlan('bob', 'Bob', room, opts, bobId));
    await rec.bob.wait('peer:announce for alice', is('peer.announce', ([d]) => d.id === alice.id));
    check(true, 'bob, first load, learns about alice');
    bob.leave();
    await rec.alice.wait('message:leave for bob', is('message.leave', ([d]) => d && d.id === bobId));
    check(true, "bob's page unloads: alice gets his /leave");

    start(peerPlan('bob2', 'Bob', room, opts, bobId));
    const info = await rec.bob2.wait('/roominfo', is('message.roominfo'));
    check(info.args[0].memberCount === 2, `reloaded bob's /roominfo counts 2 (got ${info.args[0].memberCount})`);
    await rec.alice.wait('peer:update for bob', is('peer.update', ([d]) => d.id === bobId));
    check(true, 'alice sees the reloaded bob as peer:update (her client never forgot him), so she sends no autoreply');
    await rec.bob2.wait('peer:announce for alice after the reload', is('peer.announce', ([d]) => d.id === alice.id), 2000);
    check(true, 'reloaded bob learns about alice');
    console.log('# rtc-signaller reload: all checks passed');
  } finally {
    for (const p of peers) p.leave();
  }
}

// The real client and a JSON peer (`ws`, the Metered wire) in one room: what the v6
// client makes of the frames the server writes for JSON peers (`/announce`,
// `/message`, `/to|…|/message`, `|` escaped as \u007c), and what the JSON peer gets.
async function runMixed(opts) {
  const WebSocket = require('ws');
  const room = `room-${crypto.randomUUID().slice(0, 8)}`;
  console.log(`# rtc-signaller 6.3.0 with a JSON peer against ${opts.url}, auth=${opts.auth}, room ${room}`);
  const alicePlan = peerPlan('alice', 'Alice', room, opts);
  const aliceRec = new Recorder('alice');
  const alice = startPeer(alicePlan, (e) => aliceRec.push(e));
  const jsonRec = new Recorder('json');
  let ws;
  try {
    alice.announce(alicePlan.announce);
    await aliceRec.wait('/roominfo', is('message.roominfo'));

    const jsonId = opts.auth === 'none' ? undefined : `json-${crypto.randomUUID().slice(0, 8)}`;
    const query = jsonId
      ? `?token=${jwt.sign(
        { sub: jsonId, channels: [room], permissions: ['publish', 'subscribe', 'presence', 'send'],
          exp: Math.floor(Date.now() / 1000) + 600, metadata: { nick: 'Jason' } },
        opts.secret, { algorithm: 'HS256', header: { alg: 'HS256', kid: opts.kid } })}`
      : '';
    ws = new WebSocket(`${opts.url}/v1${query}`);
    ws.on('message', (raw) => jsonRec.push({ name: 'frame', args: [JSON.parse(raw.toString())] }));
    const frame = (what, pred) => jsonRec.wait(what, (e) => pred(e.args[0])).then((e) => e.args[0]);
    const send = (m) => ws.send(JSON.stringify(m));
    const welcome = await frame('welcome', (m) => m.type === 'welcome');
    const me = welcome.peerId;
    send({ type: 'subscribe', channel: room, requestId: 'sub' });
    const snap = await frame('presence snapshot', (m) => m.type === 'presence');
    const a = (snap.joined || []).find((j) => j.peerId === alice.id);
    check(a && a.metadata.nick === 'Alice' && !('token' in a.metadata),
      `the JSON peer's snapshot lists alice with her announce data as metadata (${JSON.stringify(a && a.metadata)})`);

    const ann = await aliceRec.wait('peer:announce for the JSON peer', is('peer.announce', ([d]) => d.id === me));
    check(ann.args[0].room === room && (!jsonId || ann.args[0].nick === 'Jason'),
      `alice gets the server-made /announce for the JSON peer as peer:announce (${JSON.stringify(ann.args[0])})`);
    const reply = await frame("alice's autoreply", (m) => m.type === 'direct' && m.data && m.data.command === 'announce');
    check(reply.from === alice.id && reply.data.args[0].nick === 'Alice' && !('token' in reply.data.args[0]),
      'the JSON peer gets alice\'s autoreply as direct {command:"announce", args:[…]} without a token');

    alice.send('/chat', 'hi', { n: 1 });
    const chat = await frame("alice's /chat", (m) => m.type === 'message');
    check(chat.from === alice.id && chat.channel === room && chat.data.command === 'chat'
      && JSON.stringify(chat.data.args) === JSON.stringify(['hi', { n: 1 }]),
    `alice's /chat|alice|hi|{"n":1} reaches the JSON peer as message ${JSON.stringify(chat.data)}`);

    alice.to(me).send('/hello', { n: 2 });
    const hello = await frame("alice's /to", (m) => m.type === 'direct' && m.data && m.data.command === 'hello');
    check(hello.from === alice.id && hello.data.args[0].n === 2, 'alice\'s /to reaches the JSON peer as direct');

    send({ type: 'publish', channel: room, data: { x: 'a|b' } });
    send({ type: 'publish', channel: room, data: 'plain|text' });
    send({ type: 'send', to: alice.id, data: 'psst' });
    const m1 = await aliceRec.wait('message:message (object)', is('message.message', ([d]) => d && d.x !== undefined));
    check(m1.args[0].x === 'a|b' && m1.args[1].peerId === me,
      'a JSON publish reaches alice as message:message, `|` intact, sender resolved to the JSON peer');
    const m2 = await aliceRec.wait('message:message (string)', is('message.message', ([d]) => d === 'plain|text'));
    check(m2.args[1].peerId === me, 'a JSON string with `|` reaches alice intact');
    await aliceRec.wait('message:message (direct)', is('message.message', ([d]) => d === 'psst'));
    check(true, 'a JSON send reaches alice as message:message through /to');

    ws.terminate();
    const left = await aliceRec.wait('message:leave for the JSON peer', is('message.leave', ([d]) => d && d.id === me));
    check(left.args[1].peerId === me, 'the JSON peer vanishes: alice gets message:leave');
    console.log('# rtc-signaller with a JSON peer: all checks passed');
  } finally {
    alice.leave();
    if (ws) ws.terminate();
  }
}

// An announce carrying an expired token. The spec says a bad in-band token closes
// 4001/4002 like one at connect; but the v6 client reconnects 50 ms after any close
// that follows `connected` and re-announces the same token, so a close here makes a
// reconnect loop (~6 connections a second, forever), the very storm the spec avoids
// for bad frames. Wanted: the client is told (an /error, or one close) and the
// connections stay few. Where anonymous peers are also allowed, the token must not be
// ignored either (a JSON `auth` there gets already_authenticated).
async function runExpiredAnnounceToken(opts) {
  const room = `room-${crypto.randomUUID().slice(0, 8)}`;
  console.log(`# rtc-signaller 6.3.0 announcing an expired token against ${opts.url}, room ${room}`);
  const id = `zed-${crypto.randomUUID().slice(0, 8)}`;
  const token = jwt.sign(
    { sub: id, channels: [room], permissions: ['subscribe'], exp: Math.floor(Date.now() / 1000) - 3600 },
    opts.secret,
    { algorithm: 'HS256', header: { alg: 'HS256', kid: opts.kid } },
  );
  const rec = new Recorder('zed');
  const zed = startPeer({ id, url: opts.url }, (e) => rec.push(e));
  try {
    zed.announce({ room, token });
    const what = await rec.wait('an error, a close or a /roominfo',
      (e) => ['message.error', 'disconnected', 'message.roominfo'].includes(e.name));
    check(what.name !== 'message.roominfo',
      `an expired announce token is refused (got ${what.name} ${JSON.stringify(what.args[0]) || ''})`);
    await sleep(2000); // count the connections the client makes meanwhile
    const n = rec.count(is('connected'));
    check(n <= 2, `the refused client connected ${n} time(s) in 2 s (at most 2 wanted: no reconnect loop)`);
    console.log('# rtc-signaller expired announce token: all checks passed');
  } finally {
    zed.leave();
  }
}

if (require.main === module) {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.child) {
    runChild();
  } else {
    const timer = setTimeout(() => {
      console.error(`FAIL: global timeout of ${GLOBAL_MS} ms`);
      process.exit(2);
    }, GLOBAL_MS);
    Promise.resolve()
      .then(() => validate(opts))
      .then(() => ({ main: runParent, reload: runReload, mixed: runMixed, 'expired-announce-token': runExpiredAnnounceToken })[opts.scenario](opts))
      .then(
      () => {
        clearTimeout(timer);
        // Let the leaves flush, then go (the clients' timers would keep us alive).
        setTimeout(() => process.exit(0), 100);
      },
      (e) => {
        console.error(`FAIL: ${e.message}`);
        process.exit(1);
      },
    );
  }
}
