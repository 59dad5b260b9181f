// Starts a real stockd for a test: binary from STOCKD_BIN (default <repo>/build/bin/stockd),
// loopback port (0 = any free, read back from --ready-file), a temporary --data-dir, and the
// role tokens given through the environment, as an operator would.
'use strict';
const { spawn, execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

const STOCKD_BIN = process.env.STOCKD_BIN || path.resolve(__dirname, '../../../../build/bin/stockd');
const TOKENS = { admin: 'admin-secret', outbox: 'outbox-secret', buyer: 'buyer-secret' };

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `stockd --help`, or '' when the binary cannot run. */
function stockdHelp() {
  try {
    return execFileSync(STOCKD_BIN, ['--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch {
    return '';
  }
}

class Stockd {
  constructor(opts) {
    this.args = opts.args || [];
    this.dataDir = opts.dataDir || fs.mkdtempSync(path.join(os.tmpdir(), 'stockd-node-'));
    this.ownsDataDir = !opts.dataDir;
    this.port = opts.port || 0;
    this.host = '127.0.0.1';
    this.proc = undefined;
    this.log = '';
  }

  /** Starts it and waits until it listens (its ready file names the port). */
  async start() {
    const ready = path.join(this.dataDir, `ready-${process.pid}-${Date.now()}`);
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('STOCKD_')));
    Object.assign(env, {
      STOCKD_ADMIN_TOKEN: TOKENS.admin,
      STOCKD_OUTBOX_TOKEN: TOKENS.outbox,
      STOCKD_CLIENT_TOKEN: TOKENS.buyer,
    });
    const args = ['--listen', `${this.host}:${this.port}`, '--data-dir', path.join(this.dataDir, 'db'), '--ready-file', ready, '--log-level', 'warn', ...this.args];
    this.log = '';
    const proc = spawn(STOCKD_BIN, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    proc.stdout.on('data', (d) => (this.log += d));
    proc.stderr.on('data', (d) => (this.log += d));
    // A server a failed test forgot must not keep the test process alive (it is killed on exit).
    proc.unref();
    proc.stdout.unref();
    proc.stderr.unref();
    const exited = new Promise((resolve) => {
      proc.once('exit', (code, signal) => resolve({ code, signal }));
      proc.once('error', (e) => {
        this.log += `${STOCKD_BIN}: ${e.message} (set STOCKD_BIN?)`;
        resolve({ code: null, signal: null });
      });
    });
    this.exited = exited;
    let done = false;
    exited.then(() => (done = true));
    const until = Date.now() + 15000;
    while (Date.now() < until) {
      if (done) throw new Error(`stockd exited before listening:\n${this.log}`);
      if (fs.existsSync(ready)) {
        const text = fs.readFileSync(ready, 'utf8').trim();
        if (text) {
          this.port = Number(text.split(/\s+/)[1]);
          fs.rmSync(ready, { force: true });
          return this;
        }
      }
      await sleep(20);
    }
    proc.kill('SIGKILL');
    throw new Error(`stockd did not listen within 15 s:\n${this.log}`);
  }

  /** kill -9: no shutdown, no flush beyond what it already made durable. */
  async kill9() {
    if (!this.proc || this.proc.exitCode !== null || this.proc.signalCode !== null) return;
    this.proc.kill('SIGKILL');
    await this.exited;
  }

  /** SIGTERM, then SIGKILL after 5 s; removes the data dir it made. */
  async stop() {
    if (this.proc && this.proc.exitCode === null && this.proc.signalCode === null) {
      this.proc.kill('SIGTERM');
      const t = setTimeout(() => this.proc.kill('SIGKILL'), 5000);
      await this.exited;
      clearTimeout(t);
    }
    if (this.ownsDataDir) fs.rmSync(this.dataDir, { recursive: true, force: true });
  }
}

/** A started stockd; `opts.args` are extra flags. Killed when the test process exits. */
async function startStockd(opts = {}) {
  const s = new Stockd(opts);
  await s.start();
  process.once('exit', () => s.proc && s.proc.exitCode === null && s.proc.kill('SIGKILL'));
  return s;
}

module.exports = { STOCKD_BIN, TOKENS, startStockd, stockdHelp, sleep };
