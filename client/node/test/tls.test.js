// TLS (spec section 1): against a fake TLS server always (when openssl is installed), and
// against a real stockd once it has --tls-cert (skipped, saying so, until then).
'use strict';
const { describe, it, before, after } = require('node:test');
const assert = require('node:assert/strict');
const s = require('../dist');
const { StockdClient } = s;
const { HELLO, startFake } = require('./helpers/fake');
const { hasOpenssl, makeCerts } = require('./helpers/certs');
const { STOCKD_BIN, TOKENS, startStockd, stockdHelp } = require('./helpers/stockd');

const noOpenssl = hasOpenssl() ? false : 'the openssl CLI is not installed';
const serverLacksTls = stockdHelp().includes('--tls-cert') ? false : `${STOCKD_BIN} --help does not list --tls-cert yet`;
let certs;

before(() => {
  if (!noOpenssl) certs = makeCerts();
});
after(() => certs && certs.remove());

const pingOnly = (req) => req.op === 'PING' && req.reply(0, {});
// Every client made is destroyed at the end, even when an assertion fails first: a client left
// redialling a stopped server would keep this file's process alive.
const made = [];
after(() => made.forEach((c) => c.destroy()));
const tryClient = (port, tls, extra = {}) => {
  const c = new StockdClient({ port, tls, timeoutMs: 1500, connectTimeoutMs: 1000, reconnect: { minDelayMs: 20, maxDelayMs: 100 }, ...extra });
  made.push(c);
  return c;
};

describe('TLS client against a fake TLS server', { skip: noOpenssl, timeout: 60_000 }, () => {
  let fake, mtls;
  before(async () => {
    fake = await startFake(pingOnly, { tlsOptions: { cert: certs.serverCert, key: certs.serverKey } });
    mtls = await startFake(pingOnly, {
      tlsOptions: { cert: certs.serverCert, key: certs.serverKey, ca: certs.ca, requestCert: true, rejectUnauthorized: true },
    });
  });
  after(async () => {
    await fake.close();
    await mtls.close();
  });

  it('verifies the certificate against the CA and the IP dialled', async () => {
    const c = tryClient(fake.port, { ca: certs.ca });
    await c.ping();
    assert.equal(c.serverLimits.frameBytesMax, HELLO.frameBytesMax);
    await c.close();
  });

  it('verifies against `servername` when given', async () => {
    const c = tryClient(fake.port, { ca: certs.ca, servername: 'localhost' });
    await c.ping();
    await c.close();
    const wrong = tryClient(fake.port, { ca: certs.ca, servername: 'stockd.example' });
    await assert.rejects(wrong.ping(), (e) => e instanceof s.StockdTlsError && /stockd\.example/.test(e.message));
    wrong.destroy();
  });

  it('refuses a certificate from another CA, at once', async () => {
    const c = tryClient(fake.port, { ca: certs.otherCa });
    const t0 = Date.now();
    await assert.rejects(c.connect(), s.StockdTlsError);
    await assert.rejects(c.ping(), s.StockdTlsError);
    assert.ok(Date.now() - t0 < 1000);
    c.destroy();
  });

  it('presents a client certificate when the server asks for one', async () => {
    const c = tryClient(mtls.port, { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey });
    await c.ping();
    await c.close();
    const anon = tryClient(mtls.port, { ca: certs.ca });
    await assert.rejects(anon.ping(), s.StockdError);
    anon.destroy();
  });

  it('a plain client on a TLS port fails within its deadline', async () => {
    const c = tryClient(fake.port, undefined);
    await assert.rejects(c.ping(), s.StockdError);
    c.destroy();
  });
});

describe('TLS settings Node cannot load', { timeout: 20_000 }, () => {
  it('a key that is not PEM: calls fail at once with StockdTlsError; nothing left to crash later', async () => {
    const unhandled = [];
    const onUnhandled = (e) => unhandled.push(e);
    process.on('unhandledRejection', onUnhandled);
    try {
      // tls.connect throws this synchronously, before any byte is sent (port 9: nothing there).
      const c = tryClient(9, { ca: 'not a CA', cert: 'not a certificate', key: 'not a key' }, { timeoutMs: 300 });
      const t0 = Date.now();
      await assert.rejects(c.ping(), (e) => e instanceof s.StockdTlsError && /PEM/.test(e.message));
      await assert.rejects(c.connect(), s.StockdTlsError);
      await assert.rejects(c.ping(), s.StockdTlsError);
      assert.ok(Date.now() - t0 < 250, 'at once, not at the deadline');
      await c.close();
      await new Promise((r) => setTimeout(r, 400)); // past the calls' deadlines
      assert.deepEqual(unhandled, []);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });
});

describe('TLS against a real stockd', { skip: noOpenssl || serverLacksTls, timeout: 60_000 }, () => {
  it('--tls-cert/--tls-key: a client with the CA buys; a plain client does not get through', async () => {
    const srv = await startStockd({ args: ['--tls-cert', certs.paths.serverCert, '--tls-key', certs.paths.serverKey] });
    try {
      const admin = tryClient(srv.port, { ca: certs.ca }, { role: 'admin', token: TOKENS.admin });
      assert.equal((await admin.skuSet({ sku: 'TLS', total: 5 })).status, 'OK');
      const buyer = tryClient(srv.port, { ca: certs.ca, servername: 'localhost' }, { token: TOKENS.buyer });
      assert.equal((await buyer.reserve({ user: 'u', ttlMs: 0, lines: [{ sku: 'TLS', qty: 1 }] })).status, 'OK');
      await Promise.all([admin.close(), buyer.close()]);
      const plain = tryClient(srv.port, undefined, { token: TOKENS.buyer });
      await assert.rejects(plain.ping(), s.StockdError);
      plain.destroy();
    } finally {
      await srv.stop();
    }
  });

  it('--tls-client-ca: only a client with a certificate from that CA gets through', async () => {
    const srv = await startStockd({
      args: ['--tls-cert', certs.paths.serverCert, '--tls-key', certs.paths.serverKey, '--tls-client-ca', certs.paths.ca],
    });
    try {
      const good = tryClient(srv.port, { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey }, { token: TOKENS.buyer });
      await good.ping();
      await good.close();
      // Refused for its certificate (none, or one from another CA): a StockdTlsError at once, not
      // redials until the deadline ("fails at once", as a refused server certificate does).
      for (const tls of [{ ca: certs.ca }, { ca: certs.ca, cert: certs.otherClientCert, key: certs.otherClientKey }]) {
        const refused = tryClient(srv.port, tls, { token: TOKENS.buyer, timeoutMs: 5000 });
        const t0 = Date.now();
        await assert.rejects(refused.ping(), (e) => e instanceof s.StockdTlsError || assert.fail(`${e.name}: ${e.message}`));
        assert.ok(Date.now() - t0 < 2000, `refused after ${Date.now() - t0} ms`);
        refused.destroy();
      }
    } finally {
      await srv.stop();
    }
  });
});
