#!/usr/bin/env node
// The echo bot from the original module's README, for mod_component_http,
// with Node's standard library only:  node echo_bot.js 8080
'use strict';
const http = require('http');

const port = Number(process.argv[2] || 8080);

http.createServer((request, response) => {
  const chunks = [];
  request.on('data', (chunk) => chunks.push(chunk));
  request.on('end', () => {
    let stanza;
    try {
      stanza = JSON.parse(Buffer.concat(chunks).toString('utf8'));
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
