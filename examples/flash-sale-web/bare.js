// A bare Express app with the same JSON parsing and a canned answer, no stockd: what Express
// alone costs under the spike (./run.sh --bare-spike). WEB_WORKERS=N as in server.js.
'use strict';
const cluster = require('node:cluster');
const express = require('express');

const workers = Number(process.env.WEB_WORKERS ?? 1);
if (cluster.isPrimary && workers > 1) {
  for (let i = 0; i < workers; i++) cluster.fork();
} else {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false); // answers to buyers are never cached
  app.use(express.json({ limit: '4kb' }));
  let next = 1;
  app.post('/api/buy', (req, res) => {
    res.status(201).json({ orderId: String(next++), sku: req.body.sku, qty: 1, codes: [] });
  });
  const server = app.listen({ port: Number(process.env.PORT ?? 3000), host: '127.0.0.1', backlog: 4096 }, () => {
    if (cluster.isPrimary || cluster.worker.id === 1) console.log(`bare express: listening on port ${server.address().port}`);
  });
  for (const signal of ['SIGTERM', 'SIGINT']) process.once(signal, () => process.exit(0));
}
