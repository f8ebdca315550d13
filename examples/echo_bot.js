#!/usr/bin/env node
// The echo bot from the original module's README, for mod_component_http,
// with Node's standard library only:  node echo_bot.js 8080
//
// With --secret (the module's component_post_secret) it verifies each
// request's Standard Webhooks signature with that standard's own library
// (`npm install standardwebhooks`), and answers a request that fails 401:
//   node echo_bot.js 8080 --secret whsec_...
'use strict';
const http = require('http');

const args = process.argv.slice(2);
const port = Number(args[0] || 8080);
const secretAt = args.indexOf('--secret');
const secret = secretAt >= 0 ? args[secretAt + 1] : undefined;

let webhook = null;
if (secret) {
  const { Webhook } = require('standardwebhooks');
  // A whsec_ secret is base64 after its prefix; any other is used as written.
  webhook = secret.startsWith('whsec_')
    ? new Webhook(secret)
    : new Webhook(Buffer.from(secret, 'utf8'), { format: 'raw' });
}

http.createServer((request, response) => {
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', () => {
    const raw = Buffer.concat(chunks);
    if (webhook) {
      try {
        // The body as received, and the webhook-* headers; stale ones fail too.
        webhook.verify(raw, request.headers);
      } catch (err) {
        console.log(`echo bot: refused a request: ${err.message}`);
        response.writeHead(401, { 'Content-Type': 'application/json' });
        return response.end(JSON.stringify({ error: 'bad signature' }));
      }
    }
    let stanza;
    try {
      stanza = JSON.parse(raw.toString('utf8'));
    } catch (err) {
      response.writeHead(400, { 'Content-Type': 'text/plain' });
      return response.end('expected JSON');
    }
    if (typeof stanza.body !== 'string') {
      // Presence, IQs, chat states: nothing to say.
      response.writeHead(204);
      return response.end();
    }
    response.writeHead(200, { 'Content-Type': 'application/json' });
    response.end(JSON.stringify({ body: `Did you say ${stanza.body}?` }));
  });
}).listen(port, '127.0.0.1', () => {
  console.log(`echo bot listening on http://127.0.0.1:${port}/`);
});
