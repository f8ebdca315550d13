"""The environment every part of the harness reads: which Prosody and which
network backend (PROSODY=0.12|13, NETWORK_BACKEND=epoll|select|event), the
paths, the test domain, the bound of every wait, what each Prosody is known
not to do, loopback ports, and waiting for a process to listen."""

import os
import random
import socket
import time
import unittest


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PLUGIN_DIR = os.environ.get("PLUGIN_DIR", os.path.join(ROOT, "build"))
TEST_PLUGINS = os.path.join(ROOT, "prosody-test", "plugins")
DOMAIN = "localhost"
MUC_DOMAIN = "conference.localhost"
UPLOAD_DOMAIN = "upload.localhost"
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

# A test class that does not depend on the network backend runs once per
# Prosody (on epoll), not on every backend: the suite stays within its time.
once_per_prosody = unittest.skipUnless(BACKEND == "epoll", "does not depend on the network backend: run once per Prosody")



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
