// The stack of run.sh, started from a test: a throwaway PostgreSQL cluster, stockd (sync),
// stockd-outbox into that PostgreSQL, and the app (server.js), each on a free loopback port
// and stopped by PID; or the parts a test needs (more stockd, more apps). Binaries from
// STOCKD_BIN_DIR (default <repo>/build/bin).
'use strict';
const { execFileSync, spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const { setTimeout: sleep } = require('node:timers/promises');
const { Client } = require('pg');

const REPO = path.resolve(__dirname, '../../..');
const BIN = process.env.STOCKD_BIN_DIR || path.join(REPO, 'build/bin');

async function freePort() {
  const srv = net.createServer();
  await new Promise((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const { port } = srv.address();
  await new Promise((resolve) => srv.close(resolve));
  return port;
}

function pgBinDir() {
  if (process.env.STOCKD_PG_BINDIR) return process.env.STOCKD_PG_BINDIR;
  const versions = fs.existsSync('/usr/lib/postgresql') ? fs.readdirSync('/usr/lib/postgresql') : [];
  const found = versions.map((v) => `/usr/lib/postgresql/${v}/bin`).filter((d) => fs.existsSync(`${d}/initdb`));
  if (found.length) return found.sort((a, b) => a.localeCompare(b, 'en', { numeric: true })).pop();
  try {
    return execFileSync('pg_config', ['--bindir'], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error('PostgreSQL server binaries not found; set STOCKD_PG_BINDIR');
  }
}

/** A child process whose output is kept for error messages; killed with the test process. */
function start(cmd, args, opts = {}) {
  const proc = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], ...opts });
  proc.output = '';
  proc.stdout.on('data', (d) => (proc.output += d));
  proc.stderr.on('data', (d) => (proc.output += d));
  proc.exited = new Promise((resolve) => proc.once('exit', resolve));
  proc.once('error', (e) => (proc.output += `${cmd}: ${e.message}`));
  return proc;
}

async function until(what, proc, ok, ms = 20_000) {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (proc && proc.exitCode !== null) throw new Error(`${what} exited:\n${proc.output}`);
    if (await ok()) return;
    await sleep(20);
  }
  throw new Error(`${what} not up within ${ms} ms:\n${proc?.output ?? ''}`);
}

async function stop(proc, signal = 'SIGTERM') {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  proc.kill(signal);
  const killer = setTimeout(() => proc.kill('SIGKILL'), 5000);
  await proc.exited;
  clearTimeout(killer);
}

class Stack {
  constructor() {
    this.dir = fs.mkdtempSync(path.join(os.tmpdir(), 'flash-sale-web-test-'));
    fs.chmodSync(this.dir, 0o711); // the postgres user must reach its data dir inside
    this.procs = [];
  }

  async startPostgres() {
    const bin = pgBinDir();
    const asPg = {};
    if (process.getuid() === 0) {
      asPg.uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }));
      asPg.gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }));
    }
    const dir = path.join(this.dir, 'pg');
    fs.mkdirSync(dir);
    if (asPg.uid !== undefined) fs.chownSync(dir, asPg.uid, asPg.gid);
    const initdb = start(`${bin}/initdb`, ['-D', `${dir}/data`, '-U', 'postgres', '-A', 'trust', '-E', 'UTF8', '--locale=C', '--no-sync'], asPg);
    if ((await initdb.exited) !== 0) throw new Error(`initdb failed:\n${initdb.output}`);
    const port = await freePort();
    this.pg = start(`${bin}/postgres`, ['-D', `${dir}/data`, '-p', String(port), '-k', dir, '-c', 'listen_addresses=127.0.0.1'], asPg);
    this.procs.push(this.pg);
    this.pgUrl = `postgresql://postgres@127.0.0.1:${port}/postgres`;
    await until('postgres', this.pg, async () => {
      const c = new Client({ connectionString: this.pgUrl });
      try {
        await c.connect();
        await c.end();
        return true;
      } catch {
        return false;
      }
    });
  }

  /** The stockd the app uses: this.stockd, this.stockdPort, this.adminToken. */
  async startStockd() {
    const { proc, port } = await this.spawnStockd();
    this.stockd = proc;
    this.stockdPort = port;
  }

  /**
   * Another stockd (sync), with a data dir of its own and this stack's tokens, on `port` (0:
   * any free one), with more flags in `args`; resolves to {proc, port}.
   */
  async spawnStockd({ port = 0, args = [] } = {}) {
    this.adminToken ??= this.token('admin-token');
    this.outboxToken ??= this.token('outbox-token');
    this.stockds = (this.stockds ?? 0) + 1;
    const name = `stockd-${this.stockds}`;
    const ready = path.join(this.dir, `${name}.ready`);
    const proc = start(`${BIN}/stockd`, [
      '--listen', `127.0.0.1:${port}`, '--ready-file', ready, '--data-dir', path.join(this.dir, name),
      '--durability', 'sync', '--admin-token-file', this.adminToken.file,
      '--outbox-token-file', this.outboxToken.file, '--log-level', 'warn', ...args,
    ]);
    this.procs.push(proc);
    await until('stockd', proc, () => fs.existsSync(ready) && fs.readFileSync(ready, 'utf8').trim() !== '');
    return { proc, port: Number(fs.readFileSync(ready, 'utf8').trim().split(/\s+/)[1]) };
  }

  /** stockd-outbox from stockd into PostgreSQL (both started). */
  startOutbox() {
    this.outbox = start(`${BIN}/stockd-outbox`, [
      '--server', `127.0.0.1:${this.stockdPort}`, '--token-file', this.outboxToken.file, '--sql', this.pgUrl, '--log-level', 'warn',
    ]);
    this.procs.push(this.outbox);
  }

  /** A random token in a 0600 file. */
  token(name) {
    const value = require('node:crypto').randomBytes(16).toString('hex');
    const file = path.join(this.dir, name);
    fs.writeFileSync(file, `${value}\n`, { mode: 0o600 });
    return { value, file };
  }

  /** server.js on a free port (unless `env` says otherwise); resolves to its base URL. */
  async startApp(env = {}) {
    return this.appUrl(this.spawnApp(env));
  }

  /** server.js, not waited for: its process (`output`, `exited`). */
  spawnApp(env = {}) {
    const app = start(process.execPath, [path.join(__dirname, '..', 'server.js')], {
      env: { ...process.env, PORT: '0', STOCKD_PORT: String(this.stockdPort), ...env },
    });
    this.procs.push(app);
    return app;
  }

  /** The base URL of an app process, once it says it listens. */
  async appUrl(app, ms) {
    let url;
    await until('the app', app, () => (url = /listening on (http:\/\/\S+)/.exec(app.output)?.[1]) !== undefined, ms);
    return url;
  }

  async stop() {
    for (const p of this.procs.reverse()) await stop(p, p === this.pg ? 'SIGINT' : 'SIGTERM');
    fs.rmSync(this.dir, { recursive: true, force: true });
  }
}

module.exports = { Stack, freePort };
