"""The web service of the fault run (prosody-test/chaos.py), as a process of
its own so that the run can `kill -9` it and start it again.

    python3 chaos_service.py PORT LOG

POST /hook answers as the current mode says; POST /mode with
{"mode": M, "delay": seconds} sets it (the module only ever posts to
/hook). Modes:

    echo   200 {"body": "Did you say <body>?"}
    hang   takes the request and never answers (closes once the mode changes)
    slow   echo after `delay` seconds
    5xx    500, 502, 503, 504 in turn
    bad    in turn: JSON cut short, a body shorter than its Content-Length,
           an answer over the module's size limit, the wrong content type

Each answered POST /hook appends a JSON line to LOG, flushed at once so
that a kill loses nothing written: {"id": webhook-id, "status": code,
"body": the stanza's body}. Loopback only; standard library only.
"""

import http.server
import itertools
import json
import sys
import threading
import time

HANG_AT_MOST = 300  # seconds: a hung request ends by itself
OVERSIZED = 2 * 1024 * 1024  # over component_post_max_response's 1 MiB default


class State:
    def __init__(self, log_path):
        self.mode, self.delay = "echo", 0.0
        self.lock = threading.Lock()
        self.log = open(log_path, "a", buffering=1)
        self.storm = itertools.cycle((500, 502, 503, 504))
        self.bad = itertools.cycle(("malformed", "truncated", "oversized", "content_type"))

    def record(self, webhook_id, status, body):
        with self.lock:
            self.log.write(json.dumps({"id": webhook_id, "status": status, "body": body}) + "\n")


def handler_for(state):
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def answer(self, status, body, content_type="application/json", length=None):
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body) if length is None else length))
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if self.path == "/mode":
                wanted = json.loads(raw)
                with state.lock:
                    state.mode, state.delay = wanted["mode"], float(wanted.get("delay", 0))
                return self.answer(200, b"{}")
            request = json.loads(raw)
            body = request.get("body")
            with state.lock:
                mode, delay = state.mode, state.delay
                storm, bad = next(state.storm), next(state.bad)
            if mode == "hang":
                deadline = time.monotonic() + HANG_AT_MOST
                while state.mode == "hang" and time.monotonic() < deadline:
                    time.sleep(0.05)
                self.close_connection = True
                return
            if mode == "slow":
                time.sleep(delay)
            if mode == "5xx":
                self.answer(storm, b'{"error": "storm"}')
                status = storm
            elif mode == "bad":
                if bad == "malformed":
                    self.answer(200, b'{"body": "cut sho')
                elif bad == "truncated":
                    self.answer(200, b'{"body": "tr', length=100)
                    self.close_connection = True
                elif bad == "oversized":
                    self.answer(200, json.dumps({"body": "x" * OVERSIZED}).encode())
                else:
                    self.answer(200, b"<html>not JSON</html>", content_type="text/html")
                status = f"bad:{bad}"
            else:
                self.answer(200, json.dumps({"body": f"Did you say {body}?"}).encode())
                status = 200
            state.record(self.headers.get("webhook-id"), status, body)

        def log_message(self, *args):
            pass

    return Handler


def main():
    port, log_path = int(sys.argv[1]), sys.argv[2]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler_for(State(log_path)))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
