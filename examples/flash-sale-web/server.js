// Starts the API: one StockdClient per process (a small pool of pipelined connections), then
// HTTP. WEB_WORKERS=N runs N processes with node:cluster, sharing the port, each with its own
// client. SIGTERM or SIGINT: stop taking connections, finish the calls in flight, exit.
//
// Environment: PORT (3000; 0 = any free), HOST (127.0.0.1), STOCKD_HOST (127.0.0.1),
// STOCKD_PORT (7070), STOCKD_CLIENT_TOKEN_FILE (stockd's --client-token-file, if it has one),
// STOCKD_CONNECTIONS (4 per process), STOCKD_TIMEOUT_MS (3000), HOLD_TTL_MS (600000),
// WEB_WORKERS (1).
'use strict';
const cluster = require('node:cluster');
const fs = require('node:fs');
const { StockdClient } = require('stockd-client');
const { createApp } = require('./app');

const env = process.env;
const workers = Number(env.WEB_WORKERS ?? 1);

function readToken(file) {
  if (!file) return '';
  return fs.readFileSync(file, 'utf8').replace(/\r?\n$/, '');
}

function serve() {
  const stockd = new StockdClient({
    host: env.STOCKD_HOST ?? '127.0.0.1',
    port: Number(env.STOCKD_PORT ?? 7070),
    token: readToken(env.STOCKD_CLIENT_TOKEN_FILE),
    clientName: `flash-sale-web/${process.pid}`,
    connections: Number(env.STOCKD_CONNECTIONS ?? 4),
    timeoutMs: Number(env.STOCKD_TIMEOUT_MS ?? 3000),
  });
  const app = createApp(stockd, { holdTtlMs: Number(env.HOLD_TTL_MS ?? 600_000) });
  // A sale opens with thousands of connections at once: Node's default backlog (511) drops
  // SYNs, and a dropped SYN is retried by the browser's TCP after 1 s, then 3 s, then 7 s.
  const listen = { port: Number(env.PORT ?? 3000), host: env.HOST ?? '127.0.0.1', backlog: 4096 };
  const server = app.listen(listen, (err) => {
    if (err) throw err;
    const { address, port } = server.address();
    if (cluster.isPrimary || cluster.worker.id === 1) console.log(`flash-sale-web: listening on http://${address}:${port}`);
  });
  server.keepAliveTimeout = 65_000; // longer than a load balancer's idle timeout
  // Stopping: no new connections; each request still in flight gets its answer with
  // Connection: close, and its socket ends after it (a kept-alive socket would hold close()
  // open until keepAliveTimeout); once none is left, stockd's client closes and the process
  // exits. A request still unanswered one stockd deadline (and a margin) later is cut.
  let stopping = false;
  const inFlight = new Set();
  server.on('request', (req, res) => {
    inFlight.add(res);
    if (stopping) res.setHeader('Connection', 'close');
    res.on('close', () => {
      inFlight.delete(res);
      if (stopping) server.closeIdleConnections();
    });
  });
  const stop = () => {
    if (stopping) return; // a second signal changes nothing
    stopping = true;
    for (const res of inFlight) if (!res.headersSent) res.setHeader('Connection', 'close');
    server.close(() =>
      stockd.close().then(() => {
        console.log('flash-sale-web: stopped');
        process.exit(0);
      }),
    );
    server.closeIdleConnections();
    setTimeout(() => process.exit(0), Number(env.STOCKD_TIMEOUT_MS ?? 3000) + 2000).unref();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (cluster.isPrimary && workers > 1) {
  let stopping = false;
  for (let i = 0; i < workers; i++) cluster.fork();
  cluster.on('exit', (worker, code, signal) => {
    if (!stopping) console.error(`flash-sale-web: worker ${worker.process.pid} exited (${signal ?? code})`);
    if (Object.keys(cluster.workers).length === 0) process.exit(0);
  });
  const stop = () => {
    stopping = true;
    for (const w of Object.values(cluster.workers)) w.process.kill('SIGTERM');
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
} else {
  serve();
}
