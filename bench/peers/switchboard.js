// Starts the reference rtc.io signalling server, rtc-switchboard 3.2.0, on loopback for
// bench/compare.sh: `node switchboard.js <port>`. The WebSocket serves every path; the
// rtc-signaller client connects to `/`.
'use strict';
const http = require('http');
const attachSwitchboard = require('rtc-switchboard');

const port = Number(process.argv[2] || 3000);
const server = http.createServer();
attachSwitchboard(server);
// The same listen backlog as the other servers in the comparison.
server.listen({ port, host: '127.0.0.1', backlog: 4096 }, () => {
  console.log(`rtc-switchboard on ws://127.0.0.1:${port}/ (pid ${process.pid})`);
});
