// The live-stream clients for the Node original (the counterpart of `bench live-clients`):
// `node clients.js {base_url} {streams}`, tokens on stdin (one per salon, then an empty line).
// Opens `streams` Socket.IO connections (WebSocket transport) spread over the salons, says
// `ready` when every one has its snapshot, and when stdin closes prints the spread from a salon's
// first to last connection receiving each change (p50/p99/max), in the same format as the Rust
// clients.
'use strict';

const { io } = require('socket.io-client');
const readline = require('node:readline');

const [base, streamsArg] = process.argv.slice(2);
const streams = Number(streamsArg || 1);
const tokens = [];
let reading = true;
const seen = new Map(); // `${salon}:${version}` -> [first, last, count]
const perSalon = [];

const rl = readline.createInterface({ input: process.stdin });
rl.on('line', (line) => {
  if (!reading) return;
  const token = line.trim();
  if (token === '') {
    reading = false;
    open();
  } else {
    tokens.push(token);
  }
});
rl.on('close', report);

function now() {
  return Number(process.hrtime.bigint()) / 1e6;
}

function open() {
  let ready = 0;
  let opening = 0;
  let next = 0;
  const sockets = [];
  const openMore = () => {
    while (opening < 200 && next < streams) {
      const n = next++;
      const salon = n % tokens.length;
      perSalon[salon] = (perSalon[salon] || 0) + 1;
      opening += 1;
      const socket = io(base, { path: '/socket.io/', transports: ['websocket'], auth: { token: tokens[salon] },
        forceNew: true, reconnection: false });
      sockets.push(socket);
      socket.once('snapshot', () => {
        opening -= 1;
        ready += 1;
        if (ready === streams) console.log('ready');
        openMore();
      });
      socket.on('connect_error', (error) => console.error('a stream failed to open:', error.message));
      socket.on('qr-update', (status) => {
        const t = now();
        const key = `${salon}:${status.version}`;
        const entry = seen.get(key);
        if (entry) {
          entry[0] = Math.min(entry[0], t);
          entry[1] = Math.max(entry[1], t);
          entry[2] += 1;
        } else {
          seen.set(key, [t, t, 1]);
        }
      });
    }
  };
  openMore();
}

function report() {
  const spreads = [];
  let incomplete = 0;
  for (const [key, [first, last, count]] of seen) {
    const salon = Number(key.split(':')[0]);
    if (count === perSalon[salon]) spreads.push(last - first);
    else incomplete += 1;
  }
  spreads.sort((a, b) => a - b);
  if (spreads.length === 0) {
    console.log(`no change reached every stream of its salon (${incomplete} partial)`);
  } else {
    const pct = (p) => spreads[Math.min(Math.floor(spreads.length * p), spreads.length - 1)];
    console.log(`first→last stream of a salon, per change: p50 ${pct(0.5).toFixed(2)} ms, p99 ${pct(0.99).toFixed(2)} ms, ` +
      `max ${spreads[spreads.length - 1].toFixed(2)} ms (${spreads.length} changes complete, ${incomplete} partial)`);
  }
  process.exit(0);
}
