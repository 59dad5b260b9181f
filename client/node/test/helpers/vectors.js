// The hex test vectors of docs/protocol.md, read from the document itself so that the spec
// and this client cannot drift apart.
'use strict';
const fs = require('fs');
const path = require('path');

const PROTOCOL_MD = path.resolve(__dirname, '../../../../docs/protocol.md');

/** [{name, bytes}] in document order; every marker must be followed by a ```hex block. */
function readVectors(file = PROTOCOL_MD) {
  const text = fs.readFileSync(file, 'utf8');
  const out = [];
  const marker = /^<!-- vector: ([A-Za-z0-9_]+) -->\s*```hex\n([\s\S]*?)```/gm;
  for (let m; (m = marker.exec(text)); ) {
    const hex = m[2].replace(/\s+/g, '');
    if (!/^([0-9a-f]{2})*$/.test(hex)) throw new Error(`vector ${m[1]}: not lowercase hex`);
    out.push({ name: m[1], bytes: Buffer.from(hex, 'hex') });
  }
  const markers = (text.match(/^<!-- vector: /gm) || []).length;
  if (markers !== out.length) throw new Error(`${markers} vector markers but ${out.length} hex blocks after them`);
  return out;
}

module.exports = { PROTOCOL_MD, readVectors };
