"""A PostgreSQL server of the tests' own, for the SQL storage tests."""

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time

from .env import WAIT, free_port
from .prosody import lua_string


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
