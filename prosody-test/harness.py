"""The Prosody test environment: a real Prosody (0.12 or 13) from a temp
config on 127.0.0.1, a scriptable web service, a minimal real XMPP client,
and ProsodyTestCase, the base of every end-to-end test, which starts and
stops them and reads Prosody's log, metrics, shell and module status.

Which Prosody and which network backend every test runs on is chosen here,
from the environment: PROSODY=0.12 (Debian 12's package, the default) or
PROSODY=13 (`make prosody13`), NETWORK_BACKEND=epoll (default), select or
event.

Standard library only. Every process started here is ended here, by its PID.
"""

import base64
import functools
import glob
import hashlib
import http.client
import http.server
import json
import os
import queue
import random
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import tempfile
import threading
import re
import time
import unittest
import xml.etree.ElementTree as ET

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLUGIN_DIR = os.environ.get("PLUGIN_DIR", os.path.join(ROOT, "build"))
TEST_PLUGINS = os.path.join(ROOT, "prosody-test", "plugins")
DOMAIN = "localhost"
MUC_DOMAIN = "conference.localhost"
PASSWORD = "secret-pw"
WAIT = 15  # seconds: upper bound of every wait, never a timing assertion

# Each Prosody the suite runs on, by the folder its Debian package is
# unpacked in (Prosody 13's by `make prosody13`).
PROSODY_ROOTS = {"0.12": "/", "13": os.path.join(ROOT, ".cache", "prosody-13.0.1")}
PROSODY = os.environ.get("PROSODY", "0.12")
if PROSODY not in PROSODY_ROOTS:
    raise SystemExit(f"PROSODY={PROSODY}: say one of {', '.join(PROSODY_ROOTS)}")
PROSODY_BIN = os.path.join(PROSODY_ROOTS[PROSODY], "usr", "bin")
PROSODY_CMD = os.path.join(PROSODY_BIN, "prosody")
PROSODYCTL = os.path.join(PROSODY_BIN, "prosodyctl")
BACKEND = os.environ.get("NETWORK_BACKEND", "epoll")

# Prosody 0.12's libevent backend loses what an admin-shell client sends
# before its connection is set up, so many `prosodyctl shell` calls hang:
# that backend has no wrapserver, so mod_admin_socket accepts through
# wrapclient, whose connect callback, when the socket is already readable,
# reads the data before onconnect has made the session that would take it.
# Prosody 13's libevent backend accepts through wrapserver. Shown without
# this module by probe_libevent_shell.py.
SHELL_UNRELIABLE = PROSODY == "0.12" and BACKEND == "event"
SHELL_UNRELIABLE_WHY = "Prosody 0.12's libevent backend drops admin-shell input (probe_libevent_shell.py)"

# Prosody 13.0.1 on the select backend never runs its SIGTERM handler (nor
# SIGHUP's, SIGINT's): it starts inside an async runner, and util.signal
# hooks the Lua state that registered the handler, a coroutine that never
# runs again; epoll and libevent read signals from a descriptor instead. So
# there `prosodyctl stop` does not stop it either, and the tests stop it
# with the admin shell's server:shutdown().
SIGTERM_IGNORED = PROSODY == "13" and BACKEND == "select"

# The JSON contract as a JSON Schema: every request a WebService receives is
# checked against its `request` definition.
with open(os.path.join(ROOT, "docs", "contract.schema.json")) as _f:
    CONTRACT_SCHEMA = json.load(_f)

NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def _ephemeral_low():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


_PORTS_GIVEN = set()


def free_port():
    """A loopback port nobody listens on, below the kernel's ephemeral
    range: a port picked from that range can be taken by any outgoing
    connection (Prosody's to the web service, say) before the server that
    is to listen on it binds it. Never the same port twice in one run."""
    high = _ephemeral_low() - 1
    if high < 21000:  # no room below the ephemeral range: let the kernel pick
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]
    for _ in range(1000):
        port = random.randint(20000, high)
        if port in _PORTS_GIVEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _PORTS_GIVEN.add(port)
        return port
    raise RuntimeError("no free port")


def lua_string(value):
    return json.dumps(value)  # a JSON string is a valid Lua string literal


def lua_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "{ " + ", ".join(lua_value(v) for v in value) + " }"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"[{lua_string(k)}] = {lua_value(v)}" for k, v in value.items()) + " }"
    return lua_string(value)


class Prosody:
    """A Prosody started from a temp config, stopped by PID."""

    def __init__(self, components, backend=BACKEND, users=("alice", "bob", "carol"), c2s_port=None,
                 component_module="component_http", log_level="debug", extra_config=(),
                 plugin_dir=PLUGIN_DIR, http=False, metrics=False, muc=False, external=None, tls=None):
        """`http`: Prosody's HTTP server on `self.http_port`; `metrics`: also
        its statistics, served by mod_http_openmetrics (see `metric`);
        `muc`: a group chat service, Prosody's mod_muc, at MUC_DOMAIN;
        `external`: {host: secret} of XEP-0114 components, which connect to
        `self.component_port` (see ComponentClient); `tls`: (certificate,
        key) for STARTTLS on c2s (plain connections stay allowed)."""
        self.tls = tls
        self.muc = muc
        self.external = external or {}
        self.component_port = free_port() if self.external else None
        self.backend = backend
        self.http_port = free_port() if http or metrics else None
        self.metrics_on = metrics
        self.plugin_dir = plugin_dir
        self.extra_config = extra_config
        self.component_module = component_module
        self.log_level = log_level
        self.dir = tempfile.mkdtemp(prefix="prosody-test-")
        self.c2s_port = c2s_port or free_port()
        self.config = os.path.join(self.dir, "prosody.cfg.lua")
        self.log_file = os.path.join(self.dir, "prosody.log")
        self.proc = None
        # SQLite (storage = "sql") does not create the folder of its file.
        os.makedirs(os.path.join(self.dir, "data"))
        self.components = components
        with open(self.config, "w") as f:
            f.write(self._config_text(components))
        for user in users:
            self.register(user)

    def rewrite_config(self, components=None):
        """Writes the config file again (after `extra_config` changed, or
        with other components)."""
        if components is not None:
            self.components = components
        with open(self.config + ".new", "w") as f:
            f.write(self._config_text(self.components))
        os.rename(self.config + ".new", self.config)

    def _config_text(self, components):
        d = self.dir
        lines = [
            "run_as_root = true",
            f"pidfile = {lua_string(d + '/prosody.pid')}",
            f"data_path = {lua_string(d + '/data')}",
            f"plugin_paths = {{ {lua_string(self.plugin_dir)}, {lua_string(TEST_PLUGINS)} }}",
            f"log = {{ {{ levels = {{ min = {lua_string(self.log_level)} }}, to = \"file\", "
            f"filename = {lua_string(self.log_file)} }} }}",
            f"network_backend = {lua_string(self.backend)}",
            'interfaces = { "127.0.0.1" }',
            'local_interfaces = { "127.0.0.1" }',
            f"c2s_ports = {{ {self.c2s_port} }}",
            "s2s_ports = { }",
            "component_ports = { }",
            "http_ports = { }",
            "https_ports = { }",
            'http_interfaces = { "127.0.0.1" }',
            'https_interfaces = { "127.0.0.1" }',
            f"admin_socket = {lua_string(d + '/admin.sock')}",
            'modules_enabled = { "roster", "saslauth", "disco", "ping", "admin_shell", "test_reload" }',
            f"test_reload_trigger = {lua_string(d + '/reload-request')}",
            'modules_disabled = { "s2s", "tls" }',
            "c2s_require_encryption = false",
            "allow_unencrypted_plain_auth = true",
            'authentication = "internal_plain"',
            'storage = "internal"',
        ]
        if self.http_port:
            lines[lines.index("http_ports = { }")] = f"http_ports = {{ {self.http_port} }}"
        if self.component_port:
            lines[lines.index("component_ports = { }")] = f"component_ports = {{ {self.component_port} }}"
            lines.append('component_interfaces = { "127.0.0.1" }')
        if self.tls:
            modules = next(i for i, line in enumerate(lines) if line.startswith("modules_enabled"))
            lines[modules] = lines[modules].replace(" }", ', "tls" }')
            lines[lines.index('modules_disabled = { "s2s", "tls" }')] = 'modules_disabled = { "s2s" }'
            lines.append(f"ssl = {{ certificate = {lua_string(self.tls[0])}, key = {lua_string(self.tls[1])} }}")
        if self.metrics_on:
            modules = next(i for i, line in enumerate(lines) if line.startswith("modules_enabled"))
            lines[modules] = lines[modules].replace(" }", ', "http_openmetrics" }')
            lines += ['statistics = "internal"', 'statistics_interval = "manual"']
        # Options in extra_config replace the defaults above.
        overridden = {line.split("=")[0].strip() for line in self.extra_config}
        lines = [line for line in lines if line.split("=")[0].strip() not in overridden]
        lines += [*self.extra_config, f"VirtualHost {lua_string(DOMAIN)}"]
        for host, options in components.items():
            lines.append(f"Component {lua_string(host)} {lua_string(self.component_module)}")
            for key, value in options.items():
                lines.append(f"    {key} = {lua_value(value)}")
        for host, secret in self.external.items():
            lines += [f"Component {lua_string(host)}", f"    component_secret = {lua_string(secret)}"]
        if self.muc:
            # Rooms open at once (no locked new rooms), as many deployments run.
            lines += [f"Component {lua_string(MUC_DOMAIN)} \"muc\"", "    muc_room_locking = false"]
        return "\n".join(lines) + "\n"

    def prosodyctl(self, *args, check=True):
        return subprocess.run(
            [PROSODYCTL, "--config", self.config, *args],
            capture_output=True, text=True, timeout=60, check=check,
        )

    def shell(self, *args):
        """`prosodyctl shell ARGS`: a line of Lua, or a command's words
        (`webhook status HOST`). Its output and errors, as text."""
        result = self.prosodyctl("shell", *args, check=False)
        return result.stdout + result.stderr

    def register(self, user):
        self.prosodyctl("register", user, DOMAIN, PASSWORD)

    def start(self, wrapper=(), timeout=WAIT):
        """Starts Prosody (under `wrapper`, e.g. valgrind) and waits, up to
        `timeout` seconds, for its c2s port."""
        with open(os.path.join(self.dir, "stdout.log"), "w") as out:
            self.proc = subprocess.Popen(
                [*wrapper, PROSODY_CMD, "--config", self.config, "-F"],
                stdout=out, stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Prosody exited at start:\n{self.log()}")
            try:
                for port in [self.c2s_port, self.component_port]:
                    if port:
                        socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("Prosody did not open its c2s (or component) port")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _ask_to_stop(self, pid):
        """As an admin would: SIGTERM, or where Prosody ignores it, the
        shell's server:shutdown(), which stops it the same graceful way."""
        if SIGTERM_IGNORED:
            self.shell("server:shutdown('Received SIGTERM')")
        else:
            os.kill(pid, signal.SIGTERM)

    def stop(self):
        if self.alive():
            self._ask_to_stop(self.proc.pid)
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def crash(self):
        """`kill -9`: Prosody gets no chance to save anything."""
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=WAIT)

    def stop_daemon(self, pid):
        """Stops a Prosody started with -D (not a child of ours)."""
        self._ask_to_stop(pid)
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)
        os.kill(pid, signal.SIGKILL)

    def cleanup(self):
        self.stop()
        if not os.environ.get("KEEP_TEST_DIRS"):
            shutil.rmtree(self.dir, ignore_errors=True)

    def reload_module(self, host, name="component_http", action="reload"):
        """module:reload through Prosody's modulemanager (see mod_test_reload);
        `action` "unload", "load", or "config" (the config file read again)."""
        self.reloads = getattr(self, "reloads", 0) + 1
        seq = self.reloads
        tmp = os.path.join(self.dir, "reload-request.tmp")
        with open(tmp, "w") as f:
            f.write(f"{seq} {host} {name} {action}\n")
        os.rename(tmp, os.path.join(self.dir, "reload-request"))
        needle = f"test {action} #{seq} of {name} on {host}: "
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            for line in self.log().splitlines():
                if needle in line:
                    if not line.endswith(needle + "ok"):
                        raise AssertionError(line)
                    return
            time.sleep(0.02)
        raise AssertionError(f"reload #{seq} of {name} on {host} did not happen")

    def reconfigure(self, components):
        """Writes the config anew with these components, and has Prosody read
        it again as SIGHUP does (a module sees it at its next reload)."""
        self.rewrite_config(components)
        self.reload_module("*", "config", action="config")

    def metrics(self):
        """Prosody's /metrics (mod_http_openmetrics), as text."""
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=WAIT)
        try:
            conn.request("GET", "/metrics", headers={"Host": DOMAIN})
            response = conn.getresponse()
            if response.status != 200:
                raise AssertionError(f"/metrics answered {response.status}")
            return response.read().decode()
        finally:
            conn.close()

    def metric(self, name, text=None, **labels):
        """One of this module's metrics (`name` after its
        prosody_mod_component_http__ prefix) with these labels, from `text`
        (a `metrics()` snapshot) or read now; 0 when absent."""
        return metric_value(self.metrics() if text is None else text,
                            "prosody_mod_component_http__" + name, **labels)

    def log(self):
        try:
            with open(self.log_file) as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def client(self, user, resource="test"):
        return XmppClient(self.c2s_port, f"{user}@{DOMAIN}", resource).connect()


_JSON_TYPES = {"object": dict, "array": list, "string": str, "boolean": bool, "null": type(None)}


def _is_type(value, name):
    if name == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if name == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return isinstance(value, _JSON_TYPES[name])


def schema_errors(value, schema, path="$"):
    """Where `value` breaks `schema` (a definition name of
    docs/contract.schema.json, or a schema): a list of messages, empty when
    it conforms. Knows the keywords that file uses: $ref, type, enum, const,
    required, properties, additionalProperties, items, anyOf, allOf,
    minimum, maximum."""
    if isinstance(schema, str):
        schema = {"$ref": f"#/$defs/{schema}"}
    if "$ref" in schema:
        target = CONTRACT_SCHEMA
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return schema_errors(value, target, path)
    errors = []
    types = schema.get("type")
    if types and not any(_is_type(value, t) for t in ([types] if isinstance(types, str) else types)):
        return [f"{path}: {value!r} is not {types}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{path}: {value!r} is not one of {schema['enum']}")
    if "const" in schema and value != schema["const"]:
        errors.append(f"{path}: {value!r} is not {schema['const']!r}")
    if "minimum" in schema and value < schema["minimum"] or "maximum" in schema and value > schema["maximum"]:
        errors.append(f"{path}: {value!r} is out of range")
    if isinstance(value, dict):
        for key in schema.get("required", []):
            if key not in value:
                errors.append(f"{path}: '{key}' is missing")
        properties = schema.get("properties", {})
        for key, item in value.items():
            if key in properties:
                errors += schema_errors(item, properties[key], f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                errors.append(f"{path}: '{key}' is not described by the schema")
    if isinstance(value, list) and "items" in schema:
        for i, item in enumerate(value):
            errors += schema_errors(item, schema["items"], f"{path}[{i}]")
    for sub in schema.get("allOf", []):
        errors += schema_errors(value, sub, path)
    if "anyOf" in schema and all(schema_errors(value, sub, path) for sub in schema["anyOf"]):
        errors.append(f"{path}: {value!r} matches none of anyOf")
    return errors


def metric_value(text, name, **labels):
    """The value of metric `name` with these labels in OpenMetrics `text`."""
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


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
                           "time": time.monotonic()}
                problems = schema_errors(parsed, "request")
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


class Ed25519Keys:
    """A fresh ed25519 key pair in the Standard Webhooks form, made and used
    with Python's `cryptography`, independently of the module's own crate:
    `signing_key` (whsk_), `public_key` (whpk_), `sign` and `verifies`."""

    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, PublicFormat, NoEncryption
        self.private = Ed25519PrivateKey.generate()
        seed = self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        public = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.signing_key = "whsk_" + base64.b64encode(seed).decode()
        self.public_key = "whpk_" + base64.b64encode(public).decode()

    @staticmethod
    def content(webhook_id, timestamp, body):
        return f"{webhook_id}.{timestamp}.".encode() + body

    def sign(self, webhook_id, timestamp, body):
        """A `v1a,<base64>` signature over `id.timestamp.body`."""
        return "v1a," + base64.b64encode(self.private.sign(self.content(webhook_id, timestamp, body))).decode()

    def verifies(self, request):
        """Whether a recorded request carries a `v1a` signature by this key."""
        from cryptography.exceptions import InvalidSignature
        headers = request["headers"]
        content = self.content(headers["webhook-id"], headers["webhook-timestamp"], request["body"])
        for given in headers.get("webhook-signature", "").split(" "):
            if given.startswith("v1a,"):
                try:
                    self.private.public_key().verify(base64.b64decode(given[4:]), content)
                    return True
                except (InvalidSignature, ValueError):
                    pass
        return False


class Certificates:
    """A private CA with a server certificate for 127.0.0.1, and a
    self-signed certificate that nothing trusts. Made with openssl."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="certs-")
        self.ca = self.path("ca.pem")
        self.trusted = (self.path("server.pem"), self.path("server.key"))
        self.untrusted = (self.path("self.pem"), self.path("self.key"))
        san = self.path("san.ext")
        with open(san, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n")
        for command in [
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.path("ca.key"),
             "-out", self.ca, "-days", "2", "-subj", "/CN=Test CA"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", self.trusted[1],
             "-out", self.path("server.csr"), "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", self.path("server.csr"), "-CA", self.ca,
             "-CAkey", self.path("ca.key"), "-CAcreateserial", "-out", self.trusted[0],
             "-days", "2", "-extfile", san],
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.untrusted[1],
             "-out", self.untrusted[0], "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"],
        ]:
            subprocess.run(["openssl", *command], check=True, capture_output=True, timeout=60)

    def path(self, name):
        return os.path.join(self.dir, name)

    def services(self):
        """Two HTTPS web services: one with the CA's certificate, one
        self-signed."""
        return WebService(certificate=self.trusted), WebService(certificate=self.untrusted)


    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)


class PostgresServer:
    """A PostgreSQL server (Debian's `postgresql` package) of its own: a new
    cluster in a temp folder, listening on a loopback port, run as the
    `postgres` user when the tests run as root (PostgreSQL refuses root), with
    trust authentication for the role `prosody`. `database()` makes a new
    database for each Prosody; `query` reads one. Stopped by PID."""

    ROLE = "prosody"

    def __init__(self):
        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"))
        if not bins:
            raise RuntimeError("PostgreSQL is not installed: run `make deps`")
        self.bin = os.path.dirname(bins[-1])
        self.dir = tempfile.mkdtemp(prefix="postgres-test-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        self.databases = 0
        self.as_user = {}
        if os.geteuid() == 0:
            self.as_user = {"user": "postgres", "group": "postgres"}
            shutil.chown(self.dir, "postgres", "postgres")
        subprocess.run([os.path.join(self.bin, "initdb"), "-D", self.data, "-U", self.ROLE, "--auth=trust",
                        "-E", "UTF8", "--locale=C"], check=True, capture_output=True, timeout=120,
                       cwd=self.dir, **self.as_user)
        with open(os.path.join(self.dir, "postgres.log"), "w") as out:
            if self.as_user:
                shutil.chown(out.name, "postgres", "postgres")
            self.proc = subprocess.Popen(
                [os.path.join(self.bin, "postgres"), "-D", self.data, "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}",
                 "-c", "fsync=off"],
                stdout=out, stderr=subprocess.STDOUT, cwd=self.dir, **self.as_user)
        deadline = time.monotonic() + WAIT * 2
        while subprocess.run([os.path.join(self.bin, "pg_isready"), "-q", "-h", "127.0.0.1",
                              "-p", str(self.port)], timeout=WAIT).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("PostgreSQL did not start")
            time.sleep(0.1)

    def psql(self, sql, database="postgres"):
        result = subprocess.run(
            [os.path.join(self.bin, "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1",
             "-p", str(self.port), "-U", self.ROLE, "-d", database, "-c", sql],
            capture_output=True, text=True, timeout=WAIT * 2, check=True)
        return result.stdout.strip()

    def database(self):
        """A new, empty database: its name."""
        self.databases += 1
        name = f"prosody_{self.databases}"
        self.psql(f'CREATE DATABASE "{name}"')
        return name

    def sql_config(self, database):
        """Prosody's `sql` option for `database` on this server."""
        return (f'sql = {{ driver = "PostgreSQL", database = {lua_string(database)}, '
                f'username = {lua_string(self.ROLE)}, host = "127.0.0.1", port = {self.port} }}')

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown: ends open sessions
            try:
                self.proc.wait(timeout=WAIT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=WAIT)
        shutil.rmtree(self.dir, ignore_errors=True)


class either:
    """A method that gets the class when called on it (in setUpClass) and the
    instance when called on one (in a test or setUp)."""

    def __init__(self, method):
        self.method = method

    def __get__(self, obj, cls):
        return functools.partial(self.method, cls if obj is None else obj)


def _on_teardown(owner, stop, *args):
    """Stops what a class (at its end) or a test (at its end) started."""
    if isinstance(owner, type):
        owner.addClassCleanup(stop, *args)
    else:
        owner.addCleanup(stop, *args)


def _stop_prosody(prosody, secrets):
    started, alive = prosody.proc is not None, prosody.alive()
    log = prosody.log()
    prosody.cleanup()
    assert alive or not started, "Prosody died during the tests"
    for secret in secrets:
        assert secret not in log, "a secret reached Prosody's log"


def _stop_web_service(service):
    service.stop()
    assert not service.violations, f"requests outside the contract's schema: {service.violations[:5]}"


class ProsodyTestCase(unittest.TestCase):
    """The base of every end-to-end test: a Prosody (the harness's PROSODY and
    NETWORK_BACKEND), web services, XMPP clients, and readers of Prosody's
    log, metrics, admin shell and module status. What a class starts in
    setUpClass lives until the class ends; what a test starts, until the test
    ends. A Prosody that died fails its tests, and so does a secret (one of
    SECRETS) found in its log."""

    SECRETS = ()
    prosody = None

    @either
    def start_prosody(owner, components, start=True, **options):
        """A Prosody with these components (`start=False`: configured only)."""
        owner.prosody = Prosody(components, **options)
        _on_teardown(owner, _stop_prosody, owner.prosody, owner.SECRETS)
        return owner.prosody.start() if start else owner.prosody

    @either
    def web_service(owner, handler=None, port=0, certificate=None):
        """A web service; every request it gets must match the contract's
        JSON Schema (docs/contract.schema.json), or the test fails."""
        service = WebService(handler=handler, port=port, certificate=certificate)
        _on_teardown(owner, _stop_web_service, service)
        return service

    @either
    def web_services(owner):
        """`ws` (HTTP), and with `certs`, `https` (trusted through the
        private CA) and `untrusted`."""
        owner.ws = owner.web_service()
        owner.certs = Certificates()
        owner.https, owner.untrusted = owner.certs.services()
        for service in (owner.https, owner.untrusted):
            _on_teardown(owner, _stop_web_service, service)
        _on_teardown(owner, owner.certs.cleanup)

    @either
    def connect(owner, user, resource="test"):
        client = owner.prosody.client(user, resource)
        _on_teardown(owner, client.close)
        return client

    def log(self):
        return self.prosody.log()

    def wait_log(self, pattern, count=1, timeout=WAIT):
        """Waits (bounded) until Prosody's log has `count` lines matching."""
        deadline = time.monotonic() + timeout
        while True:
            found = len(re.findall(pattern, self.prosody.log()))
            if found >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"log has {found} of {count} x {pattern!r}")
            time.sleep(0.05)

    def metric(self, name, text=None, **labels):
        return self.prosody.metric(name, text, **labels)

    def shell(self, *args):
        return self.prosody.shell(*args)

    def status(self, host):
        """The module's status on `host` (module:set_status), as (level, text)."""
        info = self.shell(f"module:info('component_http', '{host}')")
        match = re.search(r"status: \[(\w+)\] (.*)", info)
        return match.groups() if match else None


def wait_for_port(port, proc):
    """Waits (bounded) until the process `proc` (a bot, a web service)
    listens on `port`."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"it exited: {proc.args}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"it did not listen: {proc.args}")


def memory_mib(pid, field):
    """A memory figure of /proc/PID/status: VmRSS now, VmHWM at peak."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    return 0.0


def reset_mid_body(handler):
    """Promise a body, send part of it, then reset the connection."""
    handler.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                        b"Content-Length: 1000\r\n\r\n{\"body\": \"par")
    handler.wfile.flush()
    handler.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    handler.connection.close()


def json_reply(value, status=200, content_type="application/json"):
    return status, {"Content-Type": content_type}, json.dumps(value)


def echo_handler(request):
    """The seed README's echo bot."""
    body = (request["json"] or {}).get("body")
    if body is None:
        return 204, {}, b""
    return json_reply({"body": f"Did you say {body}?"})


class Stanza:
    """A received stanza: an ElementTree element with small helpers."""

    def __init__(self, element):
        self.el = element
        self.name = element.tag.split("}")[-1]
        self.attr = element.attrib

    def child(self, name, ns=None):
        for c in self.el:
            tag_ns, _, tag = c.tag[1:].partition("}") if c.tag.startswith("{") else ("", "", c.tag)
            if tag == name and (ns is None or tag_ns == ns):
                return c
        return None

    @property
    def body(self):
        b = self.child("body")
        return b.text if b is not None else None

    def error(self):
        """(type, condition, text) of a stanza error, or None."""
        e = self.child("error")
        if e is None:
            return None
        condition, text = None, None
        for c in e:
            tag = c.tag.split("}")[-1]
            if tag == "text":
                text = c.text
            elif condition is None:
                condition = tag
        return e.get("type"), condition, text

    def __repr__(self):
        return ET.tostring(self.el, encoding="unicode")


class ComponentClient:
    """A XEP-0114 external component (as gateways and bridges connect):
    stream to `host`, handshake with its secret; then `sock` carries
    stanzas from any JID at `host`."""

    def __init__(self, port, host, secret):
        self.port, self.host, self.secret = port, host, secret
        self.sock = None

    def connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        self.sock.sendall(
            f"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' "
            f"to='{self.host}'>".encode()
        )
        data = b""
        while b">" not in data.split(b"<stream:stream", 1)[-1]:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("stream closed before its header")
            data += chunk
        stream_id = re.search(rb"\bid=['\"]([^'\"]+)['\"]", data)[1].decode()
        digest = hashlib.sha1((stream_id + self.secret).encode()).hexdigest()
        self.sock.sendall(f"<handshake>{digest}</handshake>".encode())
        data = b""
        while b"<handshake" not in data:
            chunk = self.sock.recv(4096)
            if not chunk or b"<stream:error" in chunk:
                raise ConnectionError(f"handshake refused: {chunk!r}")
            data += chunk
        self.sock.settimeout(None)
        return self


class XmppClient:
    """A minimal XMPP client over plain TCP: SASL PLAIN, bind, send, receive."""

    def __init__(self, port, bare_jid, resource):
        self.port = port
        self.bare = bare_jid
        self.jid = f"{bare_jid}/{resource}"
        self.resource = resource
        self.sock = None
        self.inbox = queue.Queue()
        self.pending = []
        self.counter = 0

    def _open_stream(self):
        self.sock.sendall(
            f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' version='1.0' "
            "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>".encode()
        )
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0

    def _elements(self):
        """The depth-1 elements (stanzas) completed by the data fed so far."""
        for event, el in self.parser.read_events():
            if event == "start":
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 1:
                    yield el

    def _read_top(self):
        """Blocking read of the next depth-1 element (handshake only)."""
        while True:
            for el in self._elements():
                return el
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("stream closed during handshake")
            self.parser.feed(data)

    def connect(self, reader=True, tls=None):
        """Logs in and binds; then a reader thread fills `inbox`, unless
        `reader` is false and the caller reads the socket itself. `tls`: an
        ssl.SSLContext to go on over STARTTLS with (verifying the domain)."""
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        self._open_stream()
        self._read_top()  # features
        if tls is not None:
            self.sock.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            proceed = self._read_top()
            if not proceed.tag.endswith("proceed"):
                raise ConnectionError(f"STARTTLS refused: {ET.tostring(proceed)}")
            self.sock = tls.wrap_socket(self.sock, server_hostname=DOMAIN)
            self._open_stream()
            self._read_top()  # features
        user = self.bare.split("@")[0]
        token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
        self.sock.sendall(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode()
        )
        result = self._read_top()
        if not result.tag.endswith("success"):
            raise ConnectionError(f"authentication failed: {ET.tostring(result)}")
        self._open_stream()
        self._read_top()  # features
        self.sock.sendall(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{self.resource}</resource></bind></iq>".encode()
        )
        bound = self._read_top()
        jid = bound.find(".//{urn:ietf:params:xml:ns:xmpp-bind}jid")
        self.jid = jid.text
        self.sock.settimeout(None)
        if reader:
            threading.Thread(target=self._read_loop, daemon=True).start()
        return self

    def _read_loop(self):
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.parser.feed(data)
                for el in self._elements():
                    self.inbox.put(Stanza(el))
        except (OSError, ET.ParseError):
            pass
        self.inbox.put(None)

    def next_id(self):
        self.counter += 1
        return f"{self.resource}-{self.counter}"

    def send(self, xml):
        self.sock.sendall(xml.encode() if isinstance(xml, str) else xml)

    def message(self, to, body, type_="chat", id_=None, extra=""):
        id_ = id_ or self.next_id()
        body_xml = f"<body>{escape(body)}</body>" if body is not None else ""
        self.send(f"<message to='{to}' type='{type_}' id='{id_}'>{body_xml}{extra}</message>")
        return id_

    def iq(self, to, type_, payload, id_=None):
        id_ = id_ or self.next_id()
        self.send(f"<iq to='{to}' type='{type_}' id='{id_}'>{payload}</iq>")
        return id_

    def expect(self, predicate=lambda s: True, timeout=WAIT):
        """The next stanza matching `predicate`; others stay for later."""
        for i, stanza in enumerate(self.pending):
            if predicate(stanza):
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching stanza for {self.jid}; unmatched: {self.pending}")
            try:
                stanza = self.inbox.get(timeout=remaining)
            except queue.Empty:
                continue
            if stanza is None:
                raise AssertionError("the stream closed")
            if predicate(stanza):
                return stanza
            self.pending.append(stanza)

    def expect_id(self, id_, timeout=WAIT):
        return self.expect(lambda s: s.attr.get("id") == id_, timeout)

    def received(self, predicate=lambda s: True):
        """Everything received so far that matches, without waiting."""
        while True:
            try:
                stanza = self.inbox.get_nowait()
            except queue.Empty:
                break
            if stanza is not None:
                self.pending.append(stanza)
        return [s for s in self.pending if predicate(s)]

    def ping_server(self):
        """Round trip through Prosody's own mod_ping: proves the loop is free."""
        id_ = self.iq(DOMAIN, "get", "<ping xmlns='urn:xmpp:ping'/>")
        return self.expect_id(id_)

    def close(self):
        try:
            self.send("</stream:stream>")
            self.sock.close()
        except OSError:
            pass


def escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))
