#!/usr/bin/env node
// The real rtc.io client (rtc-signaller 6.3.0 over rtc-switchboard-messenger 2.0.4),
// one peer on each of two cluster nodes, in one room:
//
//   NODE_PATH=tests/clients/node_modules node rtc-across-nodes.js --url-a ws://… --url-b ws://…
//
// Alice announces on node A, Bob on node B; they see each other and exchange `/to`
// messages. Then the script prints `kill-node-a` and the test kills node A with
// SIGKILL: Bob must get Alice's synthetic /leave (the cluster's presence TTL).
// Exit 0 when every check passed; 1 with the failed check; 2 on the global timeout.

'use strict';

// rtc-core/detect wants a browser's user agent (see tests/clients/rtc-signaller.js).
Object.defineProperty(globalThis, 'navigator', {
  value: {
    userAgent:
      'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36',
  },
  configurable: true,
  writable: true,
});

const crypto = require('node:crypto');
const rtcSignaller = require('rtc-signaller');
const switchboardMessenger = require('rtc-switchboard-messenger');

const STEP_MS = 4000;
const GLOBAL_MS = 15000;
const LEAVE_MS = 4000;

function args(argv) {
  const out = {};
  for (let i = 0; i < argv.length; i += 2) out[argv[i].replace(/^--/, '')] = argv[i + 1];
  if (!out['url-a'] || !out['url-b']) throw new Error('usage: --url-a URL --url-b URL');
  return out;
}

// Every event a signaller emits, and waits on them.
class Recorder {
  constructor(label, signaller) {
    this.label = label;
    this.events = [];
    this.waiters = [];
    signaller.feed((event) => {
      this.events.push(event);
      for (const w of [...this.waiters]) {
        if (w.pred(event)) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(event);
        }
      }
    });
  }

  wait(what, pred, ms = STEP_MS) {
    const seen = this.events.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const waiter = { pred, resolve: (e) => { clearTimeout(timer); resolve(e); } };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        const names = this.events.map((e) => e.name).filter((n) => n !== 'rawdata');
        reject(new Error(`${this.label}: no ${what} within ${ms} ms (events: ${names.join(', ') || 'none'})`));
      }, ms);
      this.waiters.push(waiter);
    });
  }
}

const is = (name, pred = () => true) => (e) => e.name === name && pred(e.args);

// The sender the client resolved a message to: its peer-table entry (`id`).
const senderId = (peer) => peer && (peer.peerId || peer.id);

function check(cond, message) {
  if (!cond) throw new Error(message);
  console.log(`ok - ${message}`);
}

async function main() {
  const opts = args(process.argv.slice(2));
  const room = `room-${crypto.randomUUID().slice(0, 8)}`;
  console.log(`# alice on ${opts['url-a']}, bob on ${opts['url-b']}, room ${room}`);
  const alice = rtcSignaller(switchboardMessenger(opts['url-a']));
  const aliceSaw = new Recorder('alice (node A)', alice);
  alice.announce({ room, nick: 'Alice' });
  const info = await aliceSaw.wait('/roominfo', is('message.roominfo'));
  check(info.args[0] && info.args[0].memberCount === 1, 'alice is alone in the room on node A');

  const bob = rtcSignaller(switchboardMessenger(opts['url-b']));
  const bobSaw = new Recorder('bob (node B)', bob);
  bob.announce({ room, nick: 'Bob' });
  const seenBob = await aliceSaw.wait('peer:announce for bob', is('peer.announce', ([d]) => d.id === bob.id));
  check(seenBob.args[0].nick === 'Bob', 'alice (node A) gets peer:announce for bob (node B)');
  const seenAlice = await bobSaw.wait('peer:announce for alice', is('peer.announce', ([d]) => d.id === alice.id));
  check(seenAlice.args[0].nick === 'Alice', "bob (node B) gets alice's autoreply /to|bob|/announce from node A");
  const bobInfo = await bobSaw.wait('/roominfo', is('message.roominfo'));
  check(bobInfo.args[0].memberCount === 2, `bob's /roominfo counts 2 across nodes (got ${bobInfo.args[0].memberCount})`);

  alice.to(bob.id).send('/hello', { n: 1 });
  const hello = await bobSaw.wait('message:hello from alice', is('message.hello'));
  check(hello.args[0].n === 1 && senderId(hello.args[1]) === alice.id,
    `bob gets alice's /to … /hello across nodes, sender resolved to alice (got ${JSON.stringify(hello.args[0])})`);
  bob.to(alice.id).send('/hello', { n: 2 });
  const back = await aliceSaw.wait('message:hello from bob', is('message.hello'));
  check(back.args[0].n === 2 && senderId(back.args[1]) === bob.id, "alice gets bob's /to … /hello back");

  const asked = Date.now();
  console.log('kill-node-a');
  const leave = await bobSaw.wait('message:leave for alice after node A was killed',
    is('message.leave', ([d]) => d && d.id === alice.id), LEAVE_MS);
  check(senderId(leave.args[1]) === alice.id,
    `bob gets alice's synthetic /leave ${Date.now() - asked} ms after asking for node A's kill`);
  bob.leave();
}

setTimeout(() => {
  console.log('not ok - global timeout');
  process.exit(2);
}, GLOBAL_MS).unref();

main().then(
  () => process.exit(0),
  (e) => {
    console.log(`not ok - ${e.message}`);
    process.exit(1);
  },
);
