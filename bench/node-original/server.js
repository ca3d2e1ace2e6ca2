// The Node original's two hot paths, rebuilt as a committed baseline for `scripts/bench.sh`
// (issue 14): Express + Socket.IO 4 + pg + jsonwebtoken, the stack of the seed's report, doing the
// same work as the Rust service on those paths:
//
// - entity webhooks: `POST /webhook/yclients/events/:salon/:secret` looks the salon up, checks
//   the URL's secret, and in one transaction inserts the event under a unique dedup key (sha256 of
//   salon, resource, id, status and body) and, for a `record`, upserts the bookings projection;
//   it answers 200 only after COMMIT (durable: PostgreSQL's fsync and synchronous_commit on).
// - live channel: a Socket.IO connection authenticates with a JWT (`sub` = salon), joins the
//   salon's room and gets a snapshot; a change reads the salon's status once and emits it to the
//   room (`qr-update`, with the change's version).
//
// Bench-only routes (`/bench/...`) seed salons, drive changes and report the process's memory and
// CPU. Nothing here is part of the product; it exists to be measured against.
'use strict';

const crypto = require('node:crypto');
const http = require('node:http');
const express = require('express');
const { Server } = require('socket.io');
const { Pool } = require('pg');
const jwt = require('jsonwebtoken');

const port = Number(process.env.PORT || 3900);
const schema = process.env.NODE_BENCH_SCHEMA || 'node_original';
const secret = process.env.JWT_SECRET || 'bench-jwt-secret-that-is-long-enough-0000';
const pool = new Pool({
  connectionString: process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/test',
  max: Number(process.env.PG_POOL || 10),
  options: `-c search_path=${schema}`,
});

async function migrate() {
  const client = await pool.connect();
  try {
    await client.query(`CREATE SCHEMA IF NOT EXISTS ${schema}`);
    await client.query(`SET search_path = ${schema}`);
    await client.query(`CREATE TABLE IF NOT EXISTS salons (
      id bigint PRIMARY KEY, webhook_secret text NOT NULL, status text NOT NULL,
      qr text, version bigint NOT NULL DEFAULT 0, updated_at timestamptz NOT NULL DEFAULT now())`);
    await client.query(`CREATE TABLE IF NOT EXISTS entity_events (
      id bigserial PRIMARY KEY, salon_id bigint NOT NULL, resource text NOT NULL,
      resource_id text NOT NULL, status text NOT NULL, data_hash text NOT NULL,
      dedup_key text NOT NULL UNIQUE, data text NOT NULL, created_at timestamptz NOT NULL)`);
    await client.query(`CREATE TABLE IF NOT EXISTS records (
      id bigserial PRIMARY KEY, salon_id bigint NOT NULL, record_id bigint NOT NULL,
      client_phone text, client_name text, datetime text, status text NOT NULL,
      deleted boolean NOT NULL, updated_at timestamptz NOT NULL, UNIQUE (salon_id, record_id))`);
  } finally {
    client.release();
  }
}

const sha256 = (text) => crypto.createHash('sha256').update(text).digest('hex');

const app = express();
app.use(express.json({ limit: '256kb' }));

app.get('/health', (_req, res) => res.json({ status: 'ok' }));

app.post('/webhook/yclients/events/:salon/:secret', async (req, res) => {
  const salonId = Number(req.params.salon);
  const body = req.body || {};
  if (!Number.isSafeInteger(salonId) || typeof body.resource !== 'string') {
    return res.status(400).json({ success: false, error: 'bad request' });
  }
  const client = await pool.connect();
  try {
    const found = await client.query('SELECT webhook_secret FROM salons WHERE id = $1', [salonId]);
    if (found.rowCount === 0 || found.rows[0].webhook_secret !== req.params.secret) {
      return res.status(404).json({ success: false, error: 'unknown webhook' });
    }
    const data = JSON.stringify(body.data ?? null);
    const resourceId = String(body.resource_id ?? '');
    const status = String(body.status ?? '');
    const dataHash = sha256(data);
    const dedupKey = sha256(`${salonId}|${body.resource}|${resourceId}|${status}|${dataHash}`);
    await client.query('BEGIN');
    await client.query(
      `INSERT INTO entity_events (salon_id, resource, resource_id, status, data_hash, dedup_key, data, created_at)
       VALUES ($1, $2, $3, $4, $5, $6, $7, now()) ON CONFLICT (dedup_key) DO NOTHING`,
      [salonId, body.resource, resourceId, status, dataHash, dedupKey, data],
    );
    if (body.resource === 'record' && body.data && Number.isSafeInteger(Number(body.data.id))) {
      const d = body.data;
      await client.query(
        `INSERT INTO records (salon_id, record_id, client_phone, client_name, datetime, status, deleted, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, now())
         ON CONFLICT (salon_id, record_id) DO UPDATE SET client_phone = EXCLUDED.client_phone,
           client_name = EXCLUDED.client_name, datetime = EXCLUDED.datetime, status = EXCLUDED.status,
           deleted = EXCLUDED.deleted, updated_at = EXCLUDED.updated_at`,
        [salonId, Number(d.id), d.client?.phone ?? null, d.client?.name ?? null, d.datetime ?? null,
          status, d.deleted === true],
      );
    }
    await client.query('COMMIT');
    return res.json({ success: true });
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    return res.status(500).json({ success: false, error: String(error) });
  } finally {
    client.release();
  }
});

const server = http.createServer(app);
const io = new Server(server, { path: '/socket.io/', transports: ['websocket', 'polling'] });

async function readStatus(salonId) {
  const result = await pool.query('SELECT id, status, qr, version, updated_at FROM salons WHERE id = $1', [salonId]);
  const row = result.rows[0];
  return row && { salon_id: Number(row.id), status: row.status, qr: row.qr, version: Number(row.version),
    read_at: row.updated_at };
}

io.use((socket, next) => {
  try {
    const claims = jwt.verify(socket.handshake.auth?.token || socket.handshake.query?.token, secret);
    socket.data.salon = Number(claims.sub);
    next();
  } catch {
    next(new Error('unauthorized'));
  }
});

io.on('connection', async (socket) => {
  const salon = socket.data.salon;
  socket.join(`salon:${salon}`);
  const status = await readStatus(salon).catch(() => null);
  socket.emit('snapshot', status);
});

// One change: bump the salon's version, read its status once, emit it to the room.
async function change(salonId) {
  await pool.query(
    "UPDATE salons SET version = version + 1, qr = md5(random()::text), updated_at = now() WHERE id = $1",
    [salonId],
  );
  const status = await readStatus(salonId);
  if (status) io.to(`salon:${salonId}`).emit('qr-update', status);
}

// Bench-only: seed `count` salons from `first`, each with the webhook secret `secret`; answers
// their tokens.
app.post('/bench/salons', async (req, res) => {
  const { first, count, secret: webhookSecret } = req.body;
  await pool.query(
    `INSERT INTO salons (id, webhook_secret, status) SELECT g, $3, 'active' FROM generate_series($1::bigint, $1::bigint + $2::bigint - 1) g
     ON CONFLICT (id) DO UPDATE SET webhook_secret = EXCLUDED.webhook_secret`,
    [first, count, webhookSecret],
  );
  const tokens = [];
  for (let id = first; id < first + count; id += 1) {
    tokens.push(jwt.sign({ sub: String(id) }, secret, { expiresIn: '1h' }));
  }
  res.json({ tokens });
});

// Bench-only: each salon changes every `every_ms`, spread evenly, for `secs` seconds.
app.post('/bench/drive', async (req, res) => {
  const { first, count, every_ms: everyMs, secs } = req.body;
  const step = everyMs / count;
  const started = process.hrtime.bigint();
  const cpu = process.cpuUsage();
  let changes = 0;
  let next = Date.now();
  while (Number(process.hrtime.bigint() - started) / 1e9 < secs) {
    change(first + (changes % count)).catch((e) => console.error('change failed', e));
    changes += 1;
    next += step;
    const wait = next - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  const used = process.cpuUsage(cpu);
  res.json({ changes, cpu_secs: (used.user + used.system) / 1e6,
    secs: Number(process.hrtime.bigint() - started) / 1e9 });
});

app.get('/bench/stats', (_req, res) => {
  res.json({ rss: process.memoryUsage().rss, sockets: io.engine.clientsCount });
});

migrate()
  .then(() => server.listen(port, '127.0.0.1', () => console.log(`node original on ${port}`)))
  .catch((error) => {
    console.error(error);
    process.exit(1);
  });

process.on('SIGTERM', () => {
  io.close();
  server.close(() => pool.end().then(() => process.exit(0)));
});
