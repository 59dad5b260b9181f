// A fake stockd for tests of hostile or broken servers: frames in through the client's own
// codec, answers written by the test's script, byte by byte if it likes.
'use strict';
const net = require('net');
const tls = require('tls');
const { codec } = require('../../dist');

const HELLO = { version: 1, frameBytesMax: 65536, inflightMax: 64, idleTimeoutMs: 300000 };

/**
 * Listens on a loopback port; `script(req)` is called for every request frame, where `req` has
 * {conn (index from 0), sock, op, body, id, frame, reply(status, body), replyRaw(bytes)}.
 * HELLO is answered OK with `hello` unless the script returns 'handled' for it.
 */
async function startFake(script, { hello = HELLO, tlsOptions } = {}) {
  const sockets = new Set();
  const closed = [];
  let conns = 0;
  const received = [];
  const onSocket = (sock) => {
    const conn = conns++;
    sockets.add(sock);
    closed[conn] = false;
    sock.on('close', () => {
      sockets.delete(sock);
      closed[conn] = true;
    });
    sock.on('error', () => {});
    const reader = new codec.FrameReader();
    sock.on('data', (chunk) => {
      reader.push(chunk);
      for (let r; (r = reader.next(codec.FRAME_BYTES_MAX_DEFAULT)).kind === 'frame'; ) {
        const { op, body } = codec.decodeRequest(r.frame);
        const id = r.frame.header.requestId;
        const req = {
          conn, sock, op, body, id, frame: r.frame,
          reply: (status, b) => sock.write(codec.encodeResponse(op, id, status, b)),
          replyRaw: (bytes) => sock.write(bytes),
        };
        received.push(req);
        if (op === 'HELLO' && script(req) !== 'handled') req.reply(0, hello);
        else if (op !== 'HELLO') script(req);
      }
    });
  };
  const server = tlsOptions ? tls.createServer(tlsOptions, onSocket) : net.createServer(onSocket);
  server.on('tlsClientError', () => {});
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    received,
    get connections() {
      return conns;
    },
    /** Whether connection `n` (from 0) is closed. */
    closed: (n) => closed[n] === true,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(resolve));
    },
  };
}

/** A port nothing listens on. */
async function deadPort() {
  const probe = net.createServer();
  await new Promise((r) => probe.listen(0, '127.0.0.1', r));
  const port = probe.address().port;
  await new Promise((r) => probe.close(r));
  return port;
}

module.exports = { HELLO, startFake, deadPort };
