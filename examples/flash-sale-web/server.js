// Starts the API: one StockdClient per process (a small pool of pipelined connections), then
// HTTP once that client is connected. WEB_WORKERS=N runs N processes with node:cluster, sharing
// the port, each with its own client; the primary restarts a worker that dies. SIGTERM or
// SIGINT: stop taking connections, finish the calls in flight, exit.
//
// Start: nothing listens until stockd has answered a HELLO, so a load balancer's health check
// (a refused connection) and node:cluster (which hands connections only to workers that
// listen) send no buyer to a process that cannot sell yet, and "listening" in the log means
// ready. Meanwhile the process logs every 5 s that it waits, and redials for as long as it
// takes (stockd may start after it). A refusal that waiting will not cure (a wrong token, a
// refused certificate) ends it with exit code 1.
//
// Environment: PORT (3000; 0 = any free), HOST (127.0.0.1), STOCKD_HOST (127.0.0.1),
// STOCKD_PORT (7070), STOCKD_CLIENT_TOKEN_FILE (stockd's --client-token-file, if it has one),
// STOCKD_CONNECTIONS (4 per process), STOCKD_TIMEOUT_MS (3000), HOLD_TTL_MS (600000),
// WEB_WORKERS (1).
'use strict';
const cluster = require('node:cluster');
const fs = require('node:fs');
const {
  StockdClient,
  StockdTlsError,
  StockdUnauthorizedError,
  StockdUnsupportedVersionError,
} = require('stockd-client');
const { createApp } = require('./app');

const env = process.env;
const workers = Number(env.WEB_WORKERS ?? 1);

/** Refusals of the HELLO or the TLS handshake: a redial gets them again, so they end the process. */
const FATAL = [StockdUnauthorizedError, StockdTlsError, StockdUnsupportedVersionError];
/** How long one wait for stockd lasts before the process says that it still waits. */
const WAIT_LOG_MS = 5000;

// Restarts of dead workers (cluster mode): the first after RESTART_MIN_MS; each death of a
// worker that lived less than STABLE_MS doubles its successor's wait, up to RESTART_MAX_MS,
// so a crash loop (a bad setting, a bug at start) costs a process start every 30 s, not a CPU.
const RESTART_MIN_MS = 100;
const RESTART_MAX_MS = 30_000;
const STABLE_MS = 10_000;
/** A worker's exit code when stockd refused the app (FATAL): its primary stops, not restarts. */
const EXIT_REFUSED = 78; // EX_CONFIG (sysexits.h)

function readToken(file) {
  if (!file) return '';
  return fs.readFileSync(file, 'utf8').replace(/\r?\n$/, '');
}

/**
 * Resolves true once `stockd` has a connection (its HELLO answered), false if the process began
 * to stop first; rejects with a refusal of FATAL. Logs each WAIT_LOG_MS spent waiting (the
 * first after 1 s).
 */
async function connected(stockd, address, stopping) {
  const t0 = Date.now();
  for (let timeoutMs = 1000; ; timeoutMs = WAIT_LOG_MS) {
    try {
      await stockd.connect(timeoutMs);
      return !stopping();
    } catch (err) {
      if (stopping()) return false;
      if (FATAL.some((Kind) => err instanceof Kind)) throw err;
      const s = Math.round((Date.now() - t0) / 1000);
      const why = (err.cause ?? err).message;
      console.error(`flash-sale-web: waiting for stockd at ${address} (${s} s), not listening until it answers: ${why}`);
    }
  }
}

function serve() {
  const host = env.STOCKD_HOST ?? '127.0.0.1';
  const port = Number(env.STOCKD_PORT ?? 7070);
  const stockd = new StockdClient({
    host,
    port,
    token: readToken(env.STOCKD_CLIENT_TOKEN_FILE),
    clientName: `flash-sale-web/${process.pid}`,
    connections: Number(env.STOCKD_CONNECTIONS ?? 4),
    timeoutMs: Number(env.STOCKD_TIMEOUT_MS ?? 3000),
  });
  const app = createApp(stockd, { holdTtlMs: Number(env.HOLD_TTL_MS ?? 600_000) });
  let server; // once stockd is connected
  // Stopping: no new connections; each request still in flight gets its answer with
  // Connection: close, and its socket ends after it (a kept-alive socket would hold close()
  // open until keepAliveTimeout); once none is left, stockd's client closes and the process
  // exits. A request still unanswered one stockd deadline (and a margin) later is cut. Before
  // the server listens there is nothing to finish: the client closes at once.
  let stopping = false;
  const inFlight = new Set();
  const stop = () => {
    if (stopping) return; // a second signal changes nothing
    stopping = true;
    const exit = () =>
      stockd.close().then(() => {
        console.log('flash-sale-web: stopped');
        process.exit(0);
      });
    setTimeout(() => process.exit(0), Number(env.STOCKD_TIMEOUT_MS ?? 3000) + 2000).unref();
    if (!server) return void exit();
    for (const res of inFlight) if (!res.headersSent) res.setHeader('Connection', 'close');
    server.close(exit);
    server.closeIdleConnections();
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);

  const listen = () => {
    // A sale opens with thousands of connections at once: Node's default backlog (511) drops
    // SYNs, and a dropped SYN is retried by the browser's TCP after 1 s, then 3 s, then 7 s.
    const at = { port: Number(env.PORT ?? 3000), host: env.HOST ?? '127.0.0.1', backlog: 4096 };
    server = app.listen(at, (err) => {
      if (err) throw err;
      const { address, port } = server.address();
      // In cluster mode the primary says it, once every worker listens.
      if (cluster.isPrimary) console.log(`flash-sale-web: listening on http://${address}:${port}`);
    });
    server.keepAliveTimeout = 65_000; // longer than a load balancer's idle timeout
    server.on('request', (req, res) => {
      inFlight.add(res);
      if (stopping) res.setHeader('Connection', 'close');
      res.on('close', () => {
        inFlight.delete(res);
        if (stopping) server.closeIdleConnections();
      });
    });
  };
  connected(stockd, `${host}:${port}`, () => stopping).then(
    (ready) => ready && listen(),
    (err) => {
      console.error(`flash-sale-web: stockd at ${host}:${port} refused this app, waiting will not help: ${err.message}`);
      process.exit(cluster.isPrimary ? 1 : EXIT_REFUSED);
    },
  );
}

/**
 * The cluster's primary: forks the workers, restarts each one that dies (with the backoff
 * above, logged), says "listening" once every worker listens, and on SIGTERM or SIGINT stops
 * restarting, passes SIGTERM on, and exits once every worker has.
 */
function supervise() {
  let stopping = false;
  let announced = false;
  const live = new Map(); // worker id -> {worker, slot, startedAt, replaces}
  const restarts = new Set(); // timers of pending restarts
  const slots = Array.from({ length: workers }, () => ({ listening: false, delayMs: 0 }));

  const fork = (slot, replaces) => {
    const worker = cluster.fork();
    live.set(worker.id, { worker, slot, startedAt: Date.now(), replaces });
  };

  cluster.on('listening', (worker, { address, port }) => {
    const w = live.get(worker.id);
    if (!w) return;
    w.slot.listening = true;
    if (!announced && slots.every((s) => s.listening)) {
      announced = true;
      const pids = [...live.values()].map((x) => x.worker.process.pid).join(', ');
      console.log(`flash-sale-web: listening on http://${address}:${port} (${workers} workers: pids ${pids})`);
    } else if (w.replaces !== undefined) {
      console.log(`flash-sale-web: worker ${worker.process.pid} listening, in place of ${w.replaces}`);
    }
  });

  cluster.on('exit', (worker, code, signal) => {
    const w = live.get(worker.id);
    live.delete(worker.id);
    if (stopping) {
      if (live.size === 0) process.exit(exitCode);
      return;
    }
    if (!w) return;
    const pid = worker.process.pid;
    if (code === EXIT_REFUSED) {
      // stockd refused the app (a token, a certificate): every restart would be refused too.
      // The primary exits 1, as a single process does, so that its supervisor sees it.
      console.error(`flash-sale-web: worker ${pid} was refused by stockd; stopping every worker`);
      stop(1);
      return;
    }
    const lived = Date.now() - w.startedAt;
    const slot = w.slot;
    slot.delayMs = lived >= STABLE_MS || slot.delayMs === 0 ? RESTART_MIN_MS : Math.min(RESTART_MAX_MS, slot.delayMs * 2);
    const why = signal ?? `exit code ${code}`;
    console.error(`flash-sale-web: worker ${pid} died (${why}) after ${(lived / 1000).toFixed(1)} s; restarting it in ${slot.delayMs} ms`);
    const timer = setTimeout(() => {
      restarts.delete(timer);
      fork(slot, pid);
    }, slot.delayMs);
    restarts.add(timer);
  });

  let exitCode = 0;
  const stop = (code = 0) => {
    if (stopping) return;
    stopping = true;
    exitCode = code;
    for (const timer of restarts) clearTimeout(timer);
    restarts.clear();
    if (live.size === 0) process.exit(exitCode);
    for (const { worker } of live.values()) worker.process.kill('SIGTERM');
  };
  process.once('SIGTERM', () => stop(0));
  process.once('SIGINT', () => stop(0));

  for (const slot of slots) fork(slot, undefined);
}

if (cluster.isPrimary && workers > 1) supervise();
else serve();
