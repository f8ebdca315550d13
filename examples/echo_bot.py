#!/usr/bin/env python3
"""The echo bot from the original module's README, as a web service.

mod_component_http POSTs every stanza sent to the component as JSON; the
JSON this service answers becomes the reply. Standard library only.

    python3 echo_bot.py --port 8080
"""

import argparse
import json
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class EchoBot(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: the module reuses connections

    def do_POST(self):
        stanza = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
        body = stanza.get("body")
        if body is None:  # presence, iq, chat states...: nothing to say
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        answer = json.dumps({"body": f"Did you say {body}?"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, fmt, *args):
        print("echo bot:", fmt % args, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args()
    server = ThreadingHTTPServer((args.host, args.port), EchoBot)
    print(f"echo bot listening on http://{args.host}:{args.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
