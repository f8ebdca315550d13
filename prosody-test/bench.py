"""`make bench`: how close the module comes to what Prosody itself can do.

Modes, in one run on this machine:
  ceiling  a trivial in-process Lua echo component (no HTTP): Prosody's own limit
  http     mod_component_http, nginx answering a fixed JSON reply over HTTP
  https    the same over HTTPS (a private CA trusted via component_post_ca_file)
then a scaling run (http) over 1, 100 and 10,000 conversations.

Two load shapes, each in every mode: a c2s client (as users chat with a
bot), and a XEP-0114 external component (as gateways and bridges talk to
one). The sender keeps K stanzas outstanding and counts replies. Per mode:
replies/s over a steady window, latency p50/p99, Prosody CPU per 1000
stanzas (its main thread, where all Lua runs, and the whole process), peak
RSS, the web service's and load generator's CPU, and each figure as a ratio
to the ceiling. The three modes run in turn, several rounds over: on a
shared machine what else runs drifts, so each round's ratios compare modes
measured moments apart, and the ratios printed are the median over rounds
(with their spread). Ends with one JSON line. About five minutes in all.

Then files (`bench.py upload` runs only them): a 5 MiB file pushed to
Prosody's own upload service while a client pings the server, in rounds
against rounds of pings alone; per round the push's time to its answer,
Prosody's main-thread CPU for it (what the upload costs the thread all Lua
runs on: Prosody's HTTP server reading the push, the module, and
mod_http_file_share taking the PUT), the part of it that is reading the
push (the same body refused for its token), and the worst ping round trip
during it against the worst without it.
"""

import collections
import json
import os
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import base64
import threading
import time

from harness import (DOMAIN, UPLOAD_DOMAIN, Certificates, ComponentClient, Prosody, WebService, XmppClient,
                     free_port, memory_mib, post_push)

BOT = "bot.localhost"
GATEWAY, GATEWAY_SECRET = "gateway.localhost", "bench-secret"
OUTSTANDING = int(os.environ.get("BENCH_OUTSTANDING", "100"))
# Load shape: how the sender connects, stanzas outstanding, their `from`.
SHAPES = {
    "c2s": {"outstanding": OUTSTANDING, "from": None},
    "component": {"outstanding": int(os.environ.get("BENCH_COMPONENT_OUTSTANDING", "64")),
                  "from": f"load@{GATEWAY}"},
}
WARMUP = float(os.environ.get("BENCH_WARMUP", "2"))
WINDOW = float(os.environ.get("BENCH_WINDOW", "4"))  # per round
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "5"))
SCALING_WINDOW = float(os.environ.get("BENCH_SCALING_WINDOW", "5"))
TICK = os.sysconf("SC_CLK_TCK")
REPLY = re.compile(rb"<message\b[^>]*>")
FROM = re.compile(rb"from='([^']*)'")


def cpu_seconds(stat_path):
    """utime + stime of a /proc stat file, in seconds."""
    with open(stat_path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(entry))
            except (OSError, ValueError):
                pass
    return found


def switches(status_path):
    """Voluntary context switches of a thread: each is a wait in its event
    loop, so per stanza they say how often Prosody's thread was woken."""
    with open(status_path) as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


class Nginx:
    """nginx on loopback answering every POST with a fixed JSON reply."""

    def __init__(self, certs):
        self.dir = tempfile.mkdtemp(prefix="bench-nginx-")
        self.http_port, self.https_port = free_port(), free_port()
        conf = os.path.join(self.dir, "nginx.conf")
        with open(conf, "w") as f:
            f.write(f"""
worker_processes 1;
user root;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {self.dir}/body;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    server {{
        listen 127.0.0.1:{self.http_port};
        # HTTP/2 where TLS offers it (ALPN), as web services commonly do.
        listen 127.0.0.1:{self.https_port} ssl http2;
        ssl_certificate {certs.trusted[0]};
        ssl_certificate_key {certs.trusted[1]};
        location / {{
            default_type application/json;
            return 200 '{{"body": "pong"}}';
        }}
    }}
}}
""")
        self.proc = subprocess.Popen(["nginx", "-p", self.dir, "-c", conf, "-g", "daemon off;"])
        deadline = time.monotonic() + 10
        while not children(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def cpu(self):
        pids = [self.proc.pid] + children(self.proc.pid)
        return sum(cpu_seconds(f"/proc/{p}/stat") for p in pids)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def drive(client, conversations, warmup, window, outstanding=OUTSTANDING, sender=None):
    """Keeps `outstanding` messages in flight, round-robin over
    `conversations` bot JIDs (from `sender`, which a component must name);
    measures over `window` seconds after `warmup`."""
    sock = client.sock
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.setblocking(False)
    jids = [f"c{i}@{BOT}".encode() for i in range(conversations)]
    head = b"<message type='chat'" + (b" from='" + sender.encode() + b"'" if sender else b"")
    stanzas = [head + b" to='" + j + b"'><body>ping</body></message>" for j in jids]
    sent_at = collections.defaultdict(collections.deque)
    latencies, replies, errors = [], 0, 0
    next_jid = 0

    def send(n):
        nonlocal next_jid
        out = []
        now = time.monotonic()
        for _ in range(n):
            i = next_jid % conversations
            next_jid += 1
            sent_at[jids[i]].append(now)
            out.append(stanzas[i])
        data = b"".join(out)
        while data:
            try:
                sent = sock.send(data)
                data = data[sent:]
            except BlockingIOError:
                select.select([], [sock], [], 1)

    start = time.monotonic()
    measure_from, measure_to = start + warmup, start + warmup + window
    send(outstanding)
    buffer = b""
    cpu0 = os.times()
    while True:
        now = time.monotonic()
        if now >= measure_to:
            break
        readable, _, _ = select.select([sock], [], [], 0.5)
        if not readable:
            continue
        chunk = sock.recv(1 << 20)
        if not chunk:
            raise RuntimeError("Prosody closed the stream")
        buffer += chunk
        cut = buffer.rfind(b"</message>")
        if cut < 0:
            continue
        complete, buffer = buffer[:cut + 10], buffer[cut + 10:]
        now = time.monotonic()
        got = 0
        for tag in REPLY.findall(complete):
            got += 1
            if b"type='error'" in tag:
                errors += 1
            match = FROM.search(tag)
            queue = sent_at.get(match.group(1)) if match else None
            if queue:
                sent = queue.popleft()
                if measure_from <= now:
                    latencies.append(now - sent)
            if measure_from <= now:
                replies += 1
        if now < measure_to:
            send(got)
    cpu1 = os.times()
    latencies.sort()

    def pct(p):
        return latencies[min(len(latencies) - 1, int(p * len(latencies)))] * 1000 if latencies else 0.0
    return {
        "replies": replies, "errors": errors, "rate": replies / window,
        "p50_ms": pct(0.50), "p99_ms": pct(0.99),
        "loadgen_cpu_s": (cpu1.user + cpu1.system) - (cpu0.user + cpu0.system),
    }


def connect(prosody, shape):
    if shape == "component":
        return ComponentClient(prosody.component_port, GATEWAY, GATEWAY_SECRET).connect()
    return XmppClient(prosody.c2s_port, f"bench@{DOMAIN}", "load").connect(reader=False)


def measure(prosody, conversations, window, service=None, shape="c2s"):
    client = connect(prosody, shape)
    pid = prosody.proc.pid
    proc_stat, main_stat = f"/proc/{pid}/stat", f"/proc/{pid}/task/{pid}/stat"
    # CPU is sampled around the whole run and scaled to the window: the
    # warm-up and the window see the same steady load.
    t0 = time.monotonic()
    p0, m0 = cpu_seconds(proc_stat), cpu_seconds(main_stat)
    w0 = switches(f"/proc/{pid}/task/{pid}/status")
    s0 = service.cpu() if service else 0.0
    result = drive(client, conversations, WARMUP, window, SHAPES[shape]["outstanding"], SHAPES[shape]["from"])
    elapsed = time.monotonic() - t0
    p1, m1 = cpu_seconds(proc_stat), cpu_seconds(main_stat)
    w1 = switches(f"/proc/{pid}/task/{pid}/status")
    s1 = service.cpu() if service else 0.0
    stanzas = max(1, result["rate"] * elapsed)
    result.update({
        "prosody_cpu_per_1000": (p1 - p0) / stanzas * 1000,
        "main_thread_cpu_per_1000": (m1 - m0) / stanzas * 1000,
        "wakes_per_stanza": (w1 - w0) / stanzas,
        "prosody_cpu_util": (p1 - p0) / elapsed,
        "main_thread_util": (m1 - m0) / elapsed,
        "service_cpu_util": (s1 - s0) / elapsed,
        "loadgen_cpu_util": result["loadgen_cpu_s"] / elapsed,
        "peak_rss_mib": memory_mib(pid, "VmHWM"),
    })
    client.sock.close()
    return result


def start_prosody(mode, certs, nginx):
    if mode == "ceiling":
        components, module = {BOT: {}}, "bench_echo"
    else:
        module = "component_http"
        url = (f"http://127.0.0.1:{nginx.http_port}/" if mode == "http"
               else f"https://127.0.0.1:{nginx.https_port}/")
        options = {"component_post_url": url}
        if mode == "https":
            options["component_post_ca_file"] = certs.ca
        components = {BOT: options}
    # Nagle off: with it, delayed ACKs stall the single load connection and
    # Prosody idles instead of showing its limit.
    return Prosody(components, users=("bench",), component_module=module, log_level="warn",
                   external={GATEWAY: GATEWAY_SECRET},
                   extra_config=["network_settings = { nagle = false }"]).start()


def run(mode, certs, nginx, conversations, window, shape="c2s"):
    prosody = start_prosody(mode, certs, nginx)
    try:
        return measure(prosody, conversations, window, None if mode == "ceiling" else nginx, shape)
    finally:
        prosody.cleanup()


def settle(client):
    """Reads the replies still outstanding after a run, until quiet."""
    while select.select([client.sock], [], [], 0.5)[0]:
        if not client.sock.recv(1 << 20):
            raise RuntimeError("Prosody closed the stream")


def soak(seconds):
    """`make soak`: the http mode under steady load for `seconds`, Prosody's
    RSS sampled every 10 s. Memory must level off, not grow."""
    certs = Certificates()
    nginx = Nginx(certs)
    prosody = start_prosody("http", certs, nginx)
    samples = []
    try:
        client = XmppClient(prosody.c2s_port, f"bench@{DOMAIN}", "load").connect(reader=False)
        start = time.monotonic()
        while time.monotonic() - start < seconds:
            result = drive(client, OUTSTANDING, 0, 10)
            settle(client)
            samples.append((time.monotonic() - start, memory_mib(prosody.proc.pid, "VmRSS"), result["rate"]))
            print(f"  {samples[-1][0]:6.0f} s  RSS {samples[-1][1]:6.1f} MiB  {result['rate']:7.0f} replies/s",
                  flush=True)
    finally:
        prosody.cleanup()
        nginx.stop()
        certs.cleanup()
    # Compare the second minute with the last: the first one includes warm-up.
    settled = [rss for t, rss, _ in samples if t >= 60] or [samples[-1][1]]
    print(f"soak: {seconds} s, RSS {settled[0]:.1f} MiB after the first minute, {samples[-1][1]:.1f} MiB "
          f"at the end ({samples[-1][1] - settled[0]:+.1f} MiB), max {max(r for _, r, _ in samples):.1f} MiB")
    print(json.dumps({"soak_s": seconds, "rss_after_1min_mib": round(settled[0], 1),
                      "rss_end_mib": round(samples[-1][1], 1),
                      "rss_max_mib": round(max(r for _, r, _ in samples), 1)}))


MODES = ["ceiling", "http", "https"]
# Ratio name, result key.
RATIOS = [("throughput", "rate"), ("cpu_per_stanza", "prosody_cpu_per_1000"),
          ("lua_thread_cpu_per_stanza", "main_thread_cpu_per_1000"), ("p99", "p99_ms")]


def median(values):
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def combine(runs):
    """One mode's rounds as one figure: totals over all windows, medians of
    the latencies, the highest peak RSS."""
    replies = sum(r["replies"] for r in runs)
    weight = [max(1, r["replies"]) for r in runs]

    def weighted(key):
        return sum(r[key] * w for r, w in zip(runs, weight)) / sum(weight)
    combined = {
        "replies": replies, "errors": sum(r["errors"] for r in runs),
        "rate": replies / (WINDOW * len(runs)),
        "p50_ms": median([r["p50_ms"] for r in runs]), "p99_ms": median([r["p99_ms"] for r in runs]),
        "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
    }
    for key in ["prosody_cpu_per_1000", "main_thread_cpu_per_1000", "wakes_per_stanza", "prosody_cpu_util",
                "main_thread_util", "service_cpu_util", "loadgen_cpu_util"]:
        combined[key] = weighted(key)
    return combined


UPLOAD_BYTES = 5 * 1024 * 1024
UPLOAD_ROUNDS = int(os.environ.get("BENCH_UPLOAD_ROUNDS", "5"))
UPLOAD_TOKEN = "bench-upload-token-0123456789"


def pings_during(client, action):
    """Pings the server back to back while `action()` runs: its result, the
    worst round trip (ms) and the number of pings."""
    done, rtts = threading.Event(), []

    def ping():
        while not done.is_set():
            t0 = time.monotonic()
            client.ping_server()
            rtts.append((time.monotonic() - t0) * 1000)
    pinger = threading.Thread(target=ping)
    pinger.start()
    try:
        result = action()
    finally:
        done.set()
        pinger.join()
    return result, max(rtts), len(rtts)


def upload_figures():
    """The cost of a 5 MiB file push, in rounds (see the module's comment)."""
    reply = {}  # the web service's answer to "file": the same file, as a reply
    service = WebService(lambda request: (200, {"Content-Type": "application/json"}, reply["body"])
                         if (request["json"] or {}).get("body") == "file" else (204, {}, b""))
    prosody = Prosody({BOT: {"component_post_url": service.url + "/", "component_push_token": UPLOAD_TOKEN}},
                      upload={"http_file_share_access": [BOT]}, log_level="info", users=("bench",))
    prosody.start()
    try:
        client = XmppClient(prosody.c2s_port, f"bench@{DOMAIN}", "files").connect()
        pinger = XmppClient(prosody.c2s_port, f"bench@{DOMAIN}", "pings").connect()
        data = os.urandom(UPLOAD_BYTES)
        body = json.dumps({"to": f"bench@{DOMAIN}/files", "file": {"data": base64.b64encode(data).decode(),
                                                                     "name": "big.bin"}})
        reply["body"] = json.dumps({"file": {"data": base64.b64encode(data).decode(), "name": "big.bin"}})
        main_stat = f"/proc/{prosody.proc.pid}/task/{prosody.proc.pid}/stat"
        rows = []

        def push():
            status, answer, _ = post_push(prosody.http_port, body, host=BOT, token=UPLOAD_TOKEN)
            if status != 200:
                raise SystemExit(f"the push failed: {status} {answer}")
            client.expect(lambda s: s.child("x", "jabber:x:oob") is not None)
        for n in range(1, UPLOAD_ROUNDS + 1):
            print(f"... upload round {n}/{UPLOAD_ROUNDS}", file=sys.stderr, flush=True)
            # Alone: the time and main-thread CPU of the push, to its answer.
            t0, m0 = time.monotonic(), cpu_seconds(main_stat)
            push()
            seconds, cpu = time.monotonic() - t0, cpu_seconds(main_stat) - m0
            # The same file as a reply: it reaches the module over its own
            # HTTP client, off Prosody's thread.
            t1, q0 = time.monotonic(), cpu_seconds(main_stat)
            client.message(f"x@{BOT}", "file")
            client.expect(lambda s: s.child("x", "jabber:x:oob") is not None)
            reply_seconds, reply_cpu = time.monotonic() - t1, cpu_seconds(main_stat) - q0
            # The same body refused (a wrong token): what Prosody's HTTP
            # server costs to read it, before the module does anything.
            r0 = cpu_seconds(main_stat)
            status, _, _ = post_push(prosody.http_port, body, host=BOT, token="wrong-token-0123456789")
            assert status in (401, 403), status
            read_cpu = cpu_seconds(main_stat) - r0
            # With pings back to back: the worst round trip, and without.
            _, worst, _ = pings_during(pinger, push)
            _, quiet_worst, _ = pings_during(pinger, lambda: time.sleep(seconds))
            rows.append({"seconds": seconds, "main_thread_cpu_ms": cpu * 1000,
                         "reading_the_push_ms": read_cpu * 1000, "reply_seconds": reply_seconds,
                         "reply_main_thread_cpu_ms": reply_cpu * 1000, "worst_ping_ms": worst,
                         "worst_ping_alone_ms": quiet_worst})
        client.close()
        pinger.close()
    finally:
        prosody.stop()
        prosody.cleanup()
        service.stop()
    print(f"\nfiles: a {UPLOAD_BYTES // (1024 * 1024)} MiB file pushed to {UPLOAD_DOMAIN} "
          f"(mod_http_file_share) while a client pings the server; {UPLOAD_ROUNDS} rounds, median (lowest-highest)")
    for key, what in [("seconds", "push to its answer, s"), ("main_thread_cpu_ms", "Prosody main thread CPU, ms"),
                      ("reading_the_push_ms", "of which reading the push (refused), ms"),
                      ("reply_seconds", "the same file as a reply: message to file, s"),
                      ("reply_main_thread_cpu_ms", "the same file as a reply: main thread CPU, ms"),
                      ("worst_ping_ms", "worst ping round trip during it, ms"),
                      ("worst_ping_alone_ms", "worst ping round trip without it, ms")]:
        values = [r[key] for r in rows]
        print(f"  {what:<48} {median(values):8.1f} ({min(values):.1f}-{max(values):.1f})")
    print(json.dumps({"upload": rows}))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "soak":
        soak(int(sys.argv[2]) if len(sys.argv) > 2 else 300)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "upload":
        upload_figures()
        return
    certs = Certificates()
    nginx = Nginx(certs)
    rounds = []
    try:
        for n in range(1, ROUNDS + 1):
            rounds.append({})
            for shape in SHAPES:
                for mode in MODES:
                    print(f"... round {n}/{ROUNDS}: {shape} {mode}", file=sys.stderr, flush=True)
                    rounds[-1][shape, mode] = run(mode, certs, nginx, OUTSTANDING, WINDOW, shape)
        scaling = {}
        for conversations in [1, 100, 10000] if SCALING_WINDOW > 0 else []:
            print(f"... http over {conversations} conversations", file=sys.stderr, flush=True)
            scaling[conversations] = run("http", certs, nginx, conversations, SCALING_WINDOW)
    finally:
        nginx.stop()
        certs.cleanup()

    results = {key: combine([r[key] for r in rounds]) for key in rounds[0]}
    # Per round, each mode against that round's ceiling (same shape); then the median.
    per_round = {(shape, mode): {name: [r[shape, mode][key] / r[shape, "ceiling"][key]
                                        if r[shape, "ceiling"][key] else float("nan") for r in rounds]
                                 for name, key in RATIOS}
                 for shape in SHAPES for mode in ["http", "https"]}
    ratios = {key: {name: median(values) for name, values in by_name.items()}
              for key, by_name in per_round.items()}

    def spread(key, name):
        values = per_round[key][name]
        return f"{ratios[key][name]:.2f} ({min(values):.2f}-{max(values):.2f})"

    def rss_delta(shape, mode):
        return results[shape, mode]["peak_rss_mib"] - results[shape, "ceiling"]["peak_rss_mib"]

    print(f"\nmake bench: {ROUNDS} rounds of a {WINDOW:.0f} s window per mode and shape, "
          f"{os.cpu_count()} cores; stanzas outstanding: "
          + ", ".join(f"{shape} {s['outstanding']}" for shape, s in SHAPES.items()))
    print(f"{'shape':<10} {'mode':<8} {'replies/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'CPU ms/1000':>12} "
          f"{'Lua thread':>11} {'wakes':>6} {'peak RSS':>9} {'service':>8} {'loadgen':>8} {'errors':>7}")
    for (shape, mode), r in results.items():
        print(f"{shape:<10} {mode:<8} {r['rate']:>10.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} "
              f"{r['prosody_cpu_per_1000'] * 1000:>12.1f} {r['main_thread_cpu_per_1000'] * 1000:>11.1f} "
              f"{r['wakes_per_stanza']:>6.2f} {r['peak_rss_mib']:>7.1f}Mi {r['service_cpu_util'] * 100:>7.0f}% "
              f"{r['loadgen_cpu_util'] * 100:>7.0f}% {r['errors']:>7}")
    print("(wakes: times Prosody's thread waited in its event loop, per stanza)")
    print("\nratio to the ceiling, median over rounds (lowest-highest) (targets: throughput >= 0.9, "
          "CPU/stanza <= 1.4, Lua thread <= 1.1, p99 <= 1.5, RSS <= ceiling + 16 MiB)")
    for shape, mode in per_round:
        print(f"{shape:<10} {mode:<8} throughput {spread((shape, mode), 'throughput')}  "
              f"CPU/stanza {spread((shape, mode), 'cpu_per_stanza')} "
              f"(Lua thread {spread((shape, mode), 'lua_thread_cpu_per_stanza')})  "
              f"p99 {spread((shape, mode), 'p99')}  RSS {rss_delta(shape, mode):+.1f} MiB")
    print("\nscaling (c2s, http): cost per stanza over distinct conversations")
    for n, r in scaling.items():
        print(f"{n:>6} conversations: {r['rate']:>7.0f} replies/s, "
              f"{r['prosody_cpu_per_1000'] * 1000:.1f} ms CPU per 1000 "
              f"(Lua thread {r['main_thread_cpu_per_1000'] * 1000:.1f}), p99 {r['p99_ms']:.1f} ms")
    summary = {
        "outstanding": {shape: s["outstanding"] for shape, s in SHAPES.items()},
        "window_s": WINDOW, "rounds": ROUNDS,
        "modes": {f"{shape} {mode}": {k: round(v, 4) if isinstance(v, float) else v for k, v in r.items()}
                  for (shape, mode), r in results.items()},
        "ratios": {f"{shape} {mode}": {**{name: round(value, 3) for name, value in ratios[shape, mode].items()},
                                       "rss_delta_mib": round(rss_delta(shape, mode), 1)}
                   for shape, mode in per_round},
        "scaling": {str(n): {"rate": round(r["rate"], 1),
                             "cpu_ms_per_1000": round(r["prosody_cpu_per_1000"] * 1000, 2),
                             "lua_thread_cpu_ms_per_1000": round(r["main_thread_cpu_per_1000"] * 1000, 2)}
                    for n, r in scaling.items()},
    }
    print(json.dumps(summary))
    upload_figures()


if __name__ == "__main__":
    main()
