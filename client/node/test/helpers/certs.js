// Throwaway certificates for TLS tests, made with the openssl CLI in a temporary directory:
// a CA, a server certificate for localhost and 127.0.0.1, a client certificate, and a second
// CA that signed none of them.
'use strict';
const { execFileSync } = require('child_process');
const fs = require('fs');
const os = require('os');
const path = require('path');

function hasOpenssl() {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function makeCerts() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'stockd-node-tls-'));
  const f = (name) => path.join(dir, name);
  const ssl = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const ca = (name) =>
    ssl('req', '-x509', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.crt`), '-days', '2', '-subj', `/CN=${name}`,
      '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  const leaf = (name, ext, by = 'ca') => {
    fs.writeFileSync(f(`${name}.ext`), ext);
    ssl('req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', `/CN=${name}`);
    ssl('x509', '-req', '-in', f(`${name}.csr`), '-CA', f(`${by}.crt`), '-CAkey', f(`${by}.key`), '-CAcreateserial',
      '-out', f(`${name}.crt`), '-days', '2', '-extfile', f(`${name}.ext`));
  };
  ca('ca');
  ca('other-ca');
  leaf('server', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'extendedKeyUsage=clientAuth\n');
  leaf('other-client', 'extendedKeyUsage=clientAuth\n', 'other-ca');
  const read = (name) => fs.readFileSync(f(name));
  return {
    dir,
    paths: { ca: f('ca.crt'), serverCert: f('server.crt'), serverKey: f('server.key') },
    ca: read('ca.crt'),
    otherCa: read('other-ca.crt'),
    serverCert: read('server.crt'),
    serverKey: read('server.key'),
    clientCert: read('client.crt'),
    clientKey: read('client.key'),
    otherClientCert: read('other-client.crt'),
    otherClientKey: read('other-client.key'),
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

module.exports = { hasOpenssl, makeCerts };
