"""A real Prosody from a temp config on 127.0.0.1 (the Prosody and backend
of env), its log, metrics, admin shell and module status; stopped by PID."""

import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from .env import BACKEND, DOMAIN, MUC_DOMAIN, UPLOAD_DOMAIN, PASSWORD, PLUGIN_DIR, PROSODYCTL, PROSODY_CMD, SIGTERM_IGNORED, TEST_PLUGINS, WAIT, free_port
from .xmpp import XmppClient


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
                 plugin_dir=PLUGIN_DIR, http=False, metrics=False, muc=False, external=None, tls=None,
                 upload=None, http_port=None):
        """`http`: Prosody's HTTP server on `self.http_port`; `metrics`: also
        its statistics, served by mod_http_openmetrics (see `metric`);
        `muc`: a group chat service, Prosody's mod_muc, at MUC_DOMAIN
        (`muc="mam"`: with its archive, mod_muc_mam, which gives each
        message the room's XEP-0359 stanza-id);
        `external`: {host: secret} of XEP-0114 components, which connect to
        `self.component_port` (see ComponentClient); `tls`: (certificate,
        key) for STARTTLS on c2s (plain connections stay allowed); `upload`:
        Prosody's own upload service, mod_http_file_share, at UPLOAD_DOMAIN
        (HTTP on, its URLs on 127.0.0.1), with these options (say
        `http_file_share_access`, `http_file_share_size_limit`);
        `http_port`: the HTTP port, when not any free one."""
        self.tls = tls
        self.muc = muc
        self.external = external or {}
        self.component_port = free_port() if self.external else None
        self.backend = backend
        self.upload = upload
        self.http_port = http_port or (free_port() if http or metrics or upload is not None else None)
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
        if self.upload is not None:
            # Served and named at 127.0.0.1: *.localhost names need not
            # resolve on this machine.
            lines += [f"Component {lua_string(UPLOAD_DOMAIN)} \"http_file_share\"",
                      '    http_host = "127.0.0.1"',
                      f"    http_external_url = {lua_string(f'http://127.0.0.1:{self.http_port}/')}"]
            lines += [f"    {key} = {lua_value(value)}" for key, value in self.upload.items()]
        if self.muc:
            # Rooms open at once (no locked new rooms), as many deployments run.
            lines += [f"Component {lua_string(MUC_DOMAIN)} \"muc\"", "    muc_room_locking = false"]
            if self.muc == "mam":
                lines.append('    modules_enabled = { "muc_mam" }')
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


def metric_value(text, name, **labels):
    """The value of metric `name` with these labels in OpenMetrics `text`."""
    for line in text.splitlines():
        if line.startswith(name) and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0
