"""Web services the module POSTs to: a scriptable HTTP(S) server that checks
every request against the contract's schema, an HTTP/2 one, and the
answers tests script."""

import http.client
import http.server
import json
import socket
import ssl
import struct
import threading
import time

from .env import WAIT
from .schema import schema_errors


class WebService:
    """A real HTTP server on loopback whose answers each test scripts.

    `handler(request)` gets a dict (path, headers, body, json) and returns
    (status, headers, body) or None to drop the connection without answering.
    """

    def __init__(self, handler=None, certificate=None, port=0):
        """`certificate`: (cert file, key file) to serve HTTPS."""
        self.handler = handler or echo_handler
        self.requests = []
        # Requests that break the contract's JSON Schema (see schema_errors).
        self.violations = []
        self.lock = threading.Lock()
        self.arrived = threading.Condition(self.lock)
        self.connections = set()
        service = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self):
                super().setup()
                with service.lock:
                    service.connections.add(self.connection)

            def finish(self):
                with service.lock:
                    service.connections.discard(self.connection)
                super().finish()

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                raw = self.rfile.read(length)
                try:
                    parsed = json.loads(raw)
                except ValueError:
                    parsed = None
                headers = {k.lower(): v for k, v in self.headers.items()}
                request = {"path": self.path, "headers": headers, "body": raw, "json": parsed,
                           "time": time.monotonic(), "method": self.command}
                # The module POSTs requests of the contract; a PUT is a
                # file's upload (a test playing the upload service).
                problems = schema_errors(parsed, "request") if self.command == "POST" else []
                with service.lock:
                    service.violations += problems
                    request["attempt"] = 1 + sum(
                        1 for r in service.requests
                        if r["headers"].get("webhook-id") == headers.get("webhook-id"))
                    service.requests.append(request)
                    service.arrived.notify_all()
                answer = service.handler(request)
                if answer is None:
                    self.close_connection = True
                    return
                if callable(answer):  # full control of the socket
                    self.close_connection = True
                    answer(self)
                    return
                status, headers, body = answer
                if isinstance(body, str):
                    body = body.encode()
                try:
                    self.send_response(status)
                    for key, value in headers.items():
                        self.send_header(key, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the module gave up waiting (timeout, unload)

            do_PUT = do_POST

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        scheme = "http"
        if certificate:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*certificate)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, predicate, timeout=WAIT):
        """The first recorded request matching `predicate`."""
        deadline = time.monotonic() + timeout
        with self.lock:
            while True:
                for request in self.requests:
                    if predicate(request):
                        return request
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError("the web service got no such request")
                self.arrived.wait(remaining)

    def stop(self):
        """Stops like a real server going down: its kept-alive connections
        are closed too."""
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for connection in self.connections:
                try:
                    connection.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


class H2WebService:
    """An HTTPS web service that speaks HTTP/2 only, offered by ALPN as TLS
    web servers do: just enough of RFC 9113 (frames, SETTINGS, one HPACK
    header block) to answer each POST with `answer` (a JSON body). Records
    the protocol ALPN chose per connection and each request's body."""

    def __init__(self, certificate, answer=b'{"body": "over HTTP/2"}'):
        self.answer = answer
        self.protocols, self.bodies = [], []
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(*certificate)
        self.context.set_alpn_protocols(["h2", "http/1.1"])
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = self.listener.getsockname()[1]
        self.url = f"https://127.0.0.1:{self.port}"
        self.stopping = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                raw, _ = self.listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._serve, args=(raw,), daemon=True).start()

    @staticmethod
    def _frame(kind, flags, stream, payload=b""):
        return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload

    def _serve(self, raw):
        raw.settimeout(WAIT)
        try:
            conn = self.context.wrap_socket(raw, server_side=True)
        except (OSError, ssl.SSLError):
            raw.close()
            return
        self.protocols.append(conn.selected_alpn_protocol())
        with conn:
            try:
                if conn.selected_alpn_protocol() != "h2" or self._read(conn, 24) != b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n":
                    return
                conn.sendall(self._frame(4, 0, 0))  # our SETTINGS: the defaults
                bodies = {}
                while not self.stopping.is_set():
                    header = self._read(conn, 9)
                    length = int.from_bytes(header[:3], "big")
                    kind, flags = header[3], header[4]
                    stream = int.from_bytes(header[5:9], "big") & 0x7FFFFFFF
                    payload = self._read(conn, length)
                    if kind == 4 and not flags & 1:  # their SETTINGS: acknowledged
                        conn.sendall(self._frame(4, 1, 0))
                    elif kind == 6 and not flags & 1:  # PING
                        conn.sendall(self._frame(6, 1, 0, payload))
                    elif kind == 7:  # GOAWAY
                        return
                    elif kind in (0, 1):  # DATA, HEADERS
                        if kind == 0:
                            if flags & 8:  # padded
                                payload = payload[1:len(payload) - payload[0]]
                            bodies[stream] = bodies.get(stream, b"") + payload
                        if flags & 1:  # END_STREAM: the request is complete
                            self.bodies.append(bodies.pop(stream, b""))
                            self._respond(conn, stream)
            except (OSError, ConnectionError):
                pass

    def _respond(self, conn, stream):
        # HPACK: :status 200 is static entry 8; content-type (entry 31) as a
        # literal without indexing.
        block = b"\x88" + b"\x0f\x10" + bytes([16]) + b"application/json"
        conn.sendall(self._frame(1, 4, stream, block) + self._frame(0, 1, stream, self.answer))

    @staticmethod
    def _read(conn, n):
        data = b""
        while len(data) < n:
            chunk = conn.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def stop(self):
        self.stopping.set()
        self.listener.close()


def reset_mid_body(handler):
    """Promise a body, send part of it, then reset the connection."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 1000\r\n\r\n{\"body\": \"par")
    handler.wfile.flush()
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()


def ndjson_stream(lines, every=0.1, cut_after=None):
    """An answer streaming `lines` (dicts, or bytes sent as they are) as
    NDJSON (docs/contract.md §18), one each `every` seconds, chunked; with
    `cut_after`, the connection drops after that many lines, the stream
    unfinished."""
    def answer(handler):
        try:
            handler.send_response(200)
            handler.send_header("Content-Type", "application/x-ndjson")
            handler.send_header("Transfer-Encoding", "chunked")
            handler.end_headers()
            for i, line in enumerate(lines):
                if i == cut_after:
                    return
                data = line if isinstance(line, bytes) else (json.dumps(line) + "\n").encode()
                handler.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                handler.wfile.flush()
                time.sleep(every)
            handler.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the module gave up
    return answer


def json_reply(value, status=200, content_type="application/json"):
    return status, {"Content-Type": content_type}, json.dumps(value)


def echo_handler(request):
    """The seed README's echo bot."""
    body = (request["json"] or {}).get("body")
    if body is None:
        return 204, {}, b""
    return json_reply({"body": f"Did you say {body}?"})
