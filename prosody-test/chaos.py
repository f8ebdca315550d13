"""`make chaos`: one fault run under steady load, a table per phase.

    python3 prosody-test/chaos.py [--short]

A real Prosody (the harness's PROSODY and NETWORK_BACKEND) with two
component hosts on the module, `bot.localhost` and, with durable delivery,
`durable.localhost`, both posting to chaos_service.py, a web service in a
process of its own. c2s clients send a steady stream of messages while each
phase breaks something, puts it right, and waits (bounded) until every
stanza of the phase has its answer. Per phase: stanzas sent, replies,
stanza errors, stanzas the service chose to leave unanswered (its last
answer was a 200 that is not JSON: no reply, as docs/contract.md §4 says),
silent drops (sent, and neither a reply, nor an error, nor left unanswered
by the service: must be 0), stanzas answered twice, duplicates by webhook-id (one id answered
200 more than once by the service), the slowest round trip of a ping to
Prosody meanwhile, and Prosody's fds, threads and RSS before and after.

`--short` is the version prosody-test/test_chaos.py runs and checks.
Loopback only; every process started here is ended here, by its PID.
"""

import http.client
import json
import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field

from harness import WAIT, Prosody, free_port, memory_mib, wait_for_port

HERE = os.path.dirname(os.path.abspath(__file__))
BOT, DURABLE = "bot.localhost", "durable.localhost"
REPLY = "Did you say "
# The service's answers after which, by the contract, the sender gets nothing.
NO_REPLY = ("bad:content_type",)


@dataclass
class Plan:
    """How long and how hard: the full run, or the short one of the tests."""
    clients: int
    rate: float  # messages per second, all clients together
    window: float  # seconds each fault lasts
    slow_window: float
    slow_delay: float
    reloads: int
    outage: float  # durable: seconds the service is down, a Prosody restart in the middle
    timeout: float  # component_post_timeout of bot.localhost
    settle: float  # seconds a phase waits at most for its last answers


FULL = Plan(clients=4, rate=40, window=15, slow_window=30, slow_delay=2, reloads=100, outage=60,
            timeout=5, settle=90)
SHORT = Plan(clients=2, rate=20, window=3, slow_window=4, slow_delay=1, reloads=10, outage=10,
             timeout=2, settle=75)


def resources(pid):
    """Prosody's open fds, threads and RSS (MiB), from /proc."""
    return {"fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": len(os.listdir(f"/proc/{pid}/task")),
            "rss": memory_mib(pid, "VmRSS")}


class Service:
    """chaos_service.py in a process of its own."""

    def __init__(self, port, log):
        self.port, self.log, self.proc = port, log, None

    def start(self):
        self.proc = subprocess.Popen([sys.executable, os.path.join(HERE, "chaos_service.py"),
                                      str(self.port), self.log])
        wait_for_port(self.port, self.proc)

    def mode(self, mode, delay=0):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=WAIT)
        try:
            conn.request("POST", "/mode", json.dumps({"mode": mode, "delay": delay}))
            conn.getresponse().read()
        finally:
            conn.close()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=WAIT)

    def answered(self):
        """The service's log: one dict per answered request."""
        with open(self.log) as f:
            return [json.loads(line) for line in f if line.endswith("\n")]


class Load:
    """Steady c2s load: the clients take turns, each message to one of four
    conversations per client; its id is its body, so that a reply ("Did you
    say <id>?") and a stanza error (same id) both name it."""

    def __init__(self, prosody, plan):
        self.prosody, self.plan = prosody, plan
        self.users = [f"load{i}" for i in range(plan.clients)]
        self.lock = threading.Lock()  # guards the clients and what was sent
        self.clients, self.all_clients = [], []
        self.sent = {}  # stanza id -> phase
        self.answers = {}  # stanza id -> ["reply" | "error", ...]
        self.phase, self.target = None, BOT
        self.running = threading.Event()
        self.stopped = threading.Event()
        self.pings = {}  # phase -> slowest ping round trip, seconds
        self.connect()

    def connect(self):
        with self.lock:
            self.clients = [self.prosody.client(user, "chaos") for user in self.users]
            self.pinger = self.prosody.client("pinger", "chaos")
            self.all_clients += self.clients

    def close(self):
        with self.lock:
            for client in self.clients + [self.pinger]:
                client.close()

    def start(self):
        threading.Thread(target=self._send_loop, daemon=True).start()
        threading.Thread(target=self._ping_loop, daemon=True).start()

    def _send_loop(self):
        n = 0
        while not self.stopped.is_set():
            if not self.running.wait(0.1):
                continue
            with self.lock:
                client = self.clients[n % len(self.clients)]
                id_ = f"{self.phase}-{n}"
                try:
                    client.message(f"c{n % len(self.clients)}-b{n // len(self.clients) % 4}@{self.target}",
                                   id_, id_=id_)
                    self.sent[id_] = self.phase
                except OSError:
                    pass  # not sent, not counted
            n += 1
            time.sleep(1 / self.plan.rate)

    def _ping_loop(self):
        while not self.stopped.is_set():
            if not self.running.wait(0.1):
                continue
            with self.lock:
                pinger, phase = self.pinger, self.phase
            began = time.monotonic()
            try:
                pinger.ping_server()
            except (AssertionError, OSError):
                pass  # a ping lost to a restart counts as slow as it took
            took = time.monotonic() - began
            self.pings[phase] = max(self.pings.get(phase, 0), took)
            time.sleep(0.2)

    def collect(self):
        """Reads every answer received so far."""
        with self.lock:
            clients = list(self.all_clients)
        for client in clients:
            while True:
                try:
                    stanza = client.inbox.get_nowait()
                except queue.Empty:
                    break
                if stanza is None or stanza.name != "message":
                    continue
                if stanza.attr.get("type") == "error":
                    self.answers.setdefault(stanza.attr.get("id"), []).append("error")
                elif stanza.body and stanza.body.startswith(REPLY):
                    self.answers.setdefault(stanza.body[len(REPLY):-1], []).append("reply")

    def unanswered(self, phase):
        self.collect()
        with self.lock:
            return [i for i, p in self.sent.items() if p == phase and i not in self.answers]


@dataclass
class Row:
    phase: str
    sent: int = 0
    replies: int = 0
    errors: int = 0
    no_reply: int = 0
    drops: int = 0
    twice: int = 0
    dup_ids: int = 0
    ping_ms: float = 0
    before: dict = field(default_factory=dict)
    after: dict = field(default_factory=dict)
    restarted: bool = False


class Run:
    def __init__(self, plan):
        self.plan = plan
        self.port = free_port()
        url = f"http://127.0.0.1:{self.port}/hook"
        common = {"component_post_url": url, "component_post_connect_timeout": 1}
        self.prosody = Prosody(
            {BOT: {**common, "component_post_timeout": plan.timeout},
             DURABLE: {**common, "component_post_durable": True, "component_post_retries": 0,
                       "component_post_timeout": plan.timeout}},
            users=[f"load{i}" for i in range(plan.clients)] + ["pinger"], log_level="info")
        self.service = Service(self.port, os.path.join(self.prosody.dir, "service.log"))
        self.rows = []

    def __enter__(self):
        self.load = None
        try:
            self.service.start()
            self.prosody.start()
            self.load = Load(self.prosody, self.plan)
            self.load.start()
        except BaseException:
            self.__exit__(*sys.exc_info())
            raise
        return self

    def __exit__(self, *exc):
        if self.load:
            self.load.stopped.set()
            self.load.close()
        self.service.kill()
        alive = self.prosody.alive()
        self.prosody.cleanup()
        if not alive and exc[0] is None:
            raise AssertionError("Prosody died during the fault run")

    def phase(self, name, fault, target=BOT):
        """Runs `fault` (which breaks something and puts it right) under load,
        then waits for every answer of the phase."""
        load = self.load
        row = Row(name, before=resources(self.prosody.proc.pid))
        pid = self.prosody.proc.pid
        with load.lock:
            load.phase, load.target = name, target
        load.running.set()
        fault()
        time.sleep(1)  # normal load again, within the phase
        load.running.clear()
        deadline = time.monotonic() + self.plan.settle
        while load.unanswered(name) and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)  # an answer sent twice would arrive about now
        load.collect()
        row.after = resources(self.prosody.proc.pid)
        row.restarted = self.prosody.proc.pid != pid
        ids = [i for i, p in load.sent.items() if p == name]
        ok, last = {}, {}
        for line in self.service.answered():
            if str(line["body"]).startswith(name + "-"):
                last[line["body"]] = line["status"]
                if line["status"] == 200:
                    ok[line["id"]] = ok.get(line["id"], 0) + 1
        row.sent = len(ids)
        for i in ids:
            kinds = load.answers.get(i, [])
            row.replies += kinds.count("reply")
            row.errors += kinds.count("error")
            row.twice += len(kinds) > 1
            if not kinds:
                if last.get(i) in NO_REPLY:
                    row.no_reply += 1
                else:
                    row.drops += 1
        row.dup_ids = sum(1 for count in ok.values() if count > 1)
        row.ping_ms = load.pings.get(name, 0) * 1000
        self.rows.append(row)
        return row

    # The phases, in order.

    def steady(self):
        time.sleep(self.plan.window)

    def service_killed(self):
        self.service.kill()
        time.sleep(self.plan.window / 2)
        self.service.start()
        time.sleep(self.plan.window / 2)

    def mode(self, mode, seconds, delay=0):
        def fault():
            self.service.mode(mode, delay)
            time.sleep(seconds)
            self.service.mode("echo")
        return fault

    def reloads(self):
        for _ in range(self.plan.reloads):
            self.prosody.reload_module(BOT)

    def durable_outage(self):
        self.service.kill()
        time.sleep(self.plan.outage / 2)
        # Prosody restarts in the middle of the outage. The load pauses
        # first, so that every stanza counted as sent reached Prosody.
        self.load.running.clear()
        time.sleep(1)
        self.prosody.stop()
        self.load.close()
        self.prosody.start()
        self.load.connect()
        self.load.running.set()
        time.sleep(self.plan.outage / 2)
        self.service.start()

    def all(self):
        plan = self.plan
        self.phase("steady load", self.steady)
        self.phase("service kill -9", self.service_killed)
        self.phase("never answers", self.mode("hang", plan.window))
        self.phase(f"slow ({plan.slow_delay:g} s)", self.mode("slow", plan.slow_window, plan.slow_delay))
        self.phase("5xx storm", self.mode("5xx", plan.window))
        self.phase("bad answers", self.mode("bad", plan.window))
        self.phase(f"{plan.reloads} reloads", self.reloads)
        self.phase("durable outage", self.durable_outage, target=DURABLE)
        return self.rows


def table(rows):
    head = ("phase", "sent", "replies", "errors", "no reply (by contract)", "silent drops", "answered twice", "dup webhook-ids",
            "max ping ms", "fds", "threads", "RSS MiB")
    lines = [head]
    for r in rows:
        mark = " (restarted)" if r.restarted else ""
        lines.append((r.phase, r.sent, r.replies, r.errors, r.no_reply, r.drops, r.twice, r.dup_ids, f"{r.ping_ms:.0f}",
                      f"{r.before['fds']} → {r.after['fds']}{mark}", f"{r.before['threads']} → {r.after['threads']}",
                      f"{r.before['rss']:.0f} → {r.after['rss']:.0f}"))
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(head))]
    out = []
    for n, line in enumerate(lines):
        out.append("| " + " | ".join(str(v).ljust(w) for v, w in zip(line, widths)) + " |")
        if n == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main():
    plan = SHORT if "--short" in sys.argv[1:] else FULL
    with Run(plan) as run:
        rows = run.all()
    print(table(rows))
    drops = sum(r.drops for r in rows)
    print(f"{sum(r.sent for r in rows)} stanzas sent, {drops} silent drops")
    return 1 if drops else 0


if __name__ == "__main__":
    sys.exit(main())
