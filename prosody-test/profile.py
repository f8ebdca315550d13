"""`make profile`: instructions per stanza, counted by valgrind's callgrind,
so the figures do not depend on how busy the machine is.

Prosody runs under callgrind (one file per thread). One c2s client sends
STANZAS messages, OUTSTANDING at a time, to the trivial echo component (the
ceiling) and to mod_component_http with nginx answering over HTTP and over
HTTPS (HTTP/2, as nginx offers it by ALPN). Counting
is zeroed once Prosody is warm and dumped after the last reply, so start-up
and shut-down are left out. Printed per stanza: Prosody's thread (where all
Lua runs) and the HTTP worker threads, and on Prosody's thread the
inclusive cost of the native library's stages, each the instructions spent
inside the named functions and what they call.
"""

import glob
import os
import re
import subprocess
import sys
import tempfile
import time

from bench import BOT, Nginx
from harness import DOMAIN, Certificates, Prosody, XmppClient

STANZAS = int(os.environ.get("PROFILE_STANZAS", "2000"))
OUTSTANDING = int(os.environ.get("PROFILE_OUTSTANDING", "20"))
MODES = os.environ.get("PROFILE_MODES", "ceiling http https").split()
START_TIMEOUT = 180  # Prosody starts slowly under valgrind

# The stages on Prosody's thread, as the functions whose inclusive counts
# say what they cost (Rust names as the symbol table has them).
DRAIN = r"component_http::delivery::Delivery::drain_effects$"
STAGES = [
    ("read the util.stanza table", r"component_http::lua::stanza::element_from_lua"),
    ("stanza → request JSON", r"component_http::conversion::request::request"),
    ("  of which the structured keys", r"component_http::conversion::extract::keys"),
    ("hand-off (submit)", r"component_http::delivery::Delivery::submit"),
    ("drain", r"component_http::delivery::Delivery::drain_effects$"),
    ("effects to Lua", r"component_http::lua::effect::effects_to_lua$"),
    ("  of which building reply stanzas", r"component_http::lua::stanza::push_stanza$"),
]


def drive(client, count, outstanding):
    """Sends `count` messages, `outstanding` at a time; waits for every reply."""
    sock = client.sock
    stanza = f"<message type='chat' to='c@{BOT}'><body>ping</body></message>".encode()
    sent = replies = 0
    buffer = b""
    while sent < min(outstanding, count):
        sock.sendall(stanza)
        sent += 1
    deadline = time.monotonic() + 600
    while replies < count and time.monotonic() < deadline:
        chunk = sock.recv(1 << 16)
        if not chunk:
            raise RuntimeError("Prosody closed the stream")
        buffer += chunk
        got = buffer.count(b"</message>")
        buffer = buffer[buffer.rfind(b"</message>") + 10:] if got else buffer
        replies += got
        more = min(got, count - sent)
        if more > 0:
            sock.sendall(stanza * more)
            sent += more
    if replies < count:
        raise RuntimeError(f"only {replies} of {count} replies")


def callgrind(pid, *args):
    subprocess.run(["callgrind_control", *args, str(pid)], check=True, capture_output=True, timeout=120)


def totals(path):
    """(total instructions, {function: inclusive instructions}) of one dump."""
    out = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", path],
                         capture_output=True, text=True, check=True).stdout
    total = int(re.search(r"^([\d,]+) \(100\.0%\)\s+PROGRAM TOTALS", out, re.M)[1].replace(",", ""))
    functions = {}
    for line in out.splitlines():
        match = re.match(r"^\s*([\d,]+) \([^)]*\)\s+\S*?:(.+?)(?: \[.*\])?$", line)
        if match:
            functions[match[2]] = int(match[1].replace(",", ""))
    return total, functions


def calls(path, pattern):
    """How many times the functions matching `pattern` were called, from the
    dump's call records (names are given once, then referred to by number)."""
    names, count, callee = {}, 0, None
    with open(path, errors="replace") as f:
        for line in f:
            match = re.match(r"^(c?)fn=\((\d+)\)(?: (.*))?$", line.rstrip("\n"))
            if match:
                if match[3]:
                    names[match[2]] = match[3]
                callee = names.get(match[2]) if match[1] else None
            elif callee and line.startswith("calls="):
                if re.search(pattern, callee):
                    count += int(line[6:].split()[0])
                callee = None
    return count


def profile(mode, certs, nginx):
    out_dir = tempfile.mkdtemp(prefix="profile-")
    prosody = make_prosody(mode, certs, nginx)
    wrapper = ["valgrind", "--tool=callgrind", "--separate-threads=yes", "--collect-atstart=yes",
               f"--callgrind-out-file={out_dir}/cg.out", "lua5.4"]  # prosody is a Lua script
    prosody.start(wrapper=wrapper, timeout=START_TIMEOUT)
    try:
        client = XmppClient(prosody.c2s_port, f"bench@{DOMAIN}", "load").connect(reader=False)
        drive(client, 200, OUTSTANDING)  # warm: connections open, code paths loaded
        callgrind(prosody.proc.pid, "-z")
        drive(client, STANZAS, OUTSTANDING)
        callgrind(prosody.proc.pid, "-d")
        client.sock.close()
    finally:
        prosody.cleanup()
    dumps = sorted(glob.glob(f"{out_dir}/cg.out*"))
    # The dump after zeroing: the files with the highest dump number.
    latest = {}
    for path in dumps:
        match = re.match(r".*cg\.out\.(\d+)-(\d+)$", path)
        thread = match[2] if match else "?"
        latest.setdefault(thread, path)
        latest[thread] = max(latest[thread], path)
    main, workers, stages, wakes = 0, 0, {}, 0
    for thread, path in latest.items():
        total, functions = totals(path)
        if thread == "01":
            main = total
            for name, pattern in STAGES:
                stages[name] = max((n for f, n in functions.items() if re.search(pattern, f)), default=0)
            wakes = calls(path, DRAIN)
        else:
            workers += total
    return {"main": main / STANZAS, "workers": workers / STANZAS,
            "stages": {k: v / STANZAS for k, v in stages.items()}, "wakes": wakes, "dumps": out_dir}


def make_prosody(mode, certs, nginx):
    if mode == "ceiling":
        return Prosody({BOT: {}}, users=("bench",), component_module="bench_echo", log_level="warn",
                       extra_config=["network_settings = { nagle = false }"])
    options = {"component_post_url": f"http://127.0.0.1:{nginx.http_port}/"}
    if mode == "https":
        options = {"component_post_url": f"https://127.0.0.1:{nginx.https_port}/",
                   "component_post_ca_file": certs.ca}
    return Prosody({BOT: options}, users=("bench",), log_level="warn",
                   extra_config=["network_settings = { nagle = false }"])


def main():
    certs = Certificates()
    nginx = Nginx(certs)
    try:
        results = {mode: profile(mode, certs, nginx) for mode in MODES}
    finally:
        nginx.stop()
        certs.cleanup()
    ceiling = results["ceiling"]
    measured = [m for m in MODES if m != "ceiling"]

    def whole(r):
        return r["main"] + r["workers"]
    print(f"\nmake profile: callgrind instructions per stanza, {STANZAS} stanzas, {OUTSTANDING} outstanding")
    print(f"{'':34} {'ceiling':>12}" + "".join(f" {m:>12} {'ratio':>6}" for m in measured))
    print(f"{'Prosody thread':34} {ceiling['main']:12,.0f}"
          + "".join(f" {results[m]['main']:12,.0f} {results[m]['main'] / ceiling['main']:6.2f}" for m in measured))
    print(f"{'HTTP worker threads':34} {'':12}" + "".join(f" {results[m]['workers']:12,.0f} {'':6}" for m in measured))
    print(f"{'whole process':34} {whole(ceiling):12,.0f}"
          + "".join(f" {whole(results[m]):12,.0f} {whole(results[m]) / whole(ceiling):6.2f}" for m in measured))
    print("on Prosody's thread, inclusive:")
    for name in results[measured[0]]["stages"]:
        cells = ""
        for m in measured:
            value = results[m]["stages"][name]
            cells += f" {value:12,.0f} {'':6}" if value else f" {'inlined':>12} {'':6}"  # no symbol of its own
        print(f"  {name:32} {'':12}{cells}")
    for m in measured:
        r = results[m]
        if r["wakes"]:
            per_wake = (r["stages"]["drain"] + r["stages"]["effects to Lua"]) * STANZAS / r["wakes"]
            print(f"{m}: Prosody's thread drained outcomes {r['wakes']:,} times, {STANZAS / r['wakes']:.2f} "
                  f"stanzas per wake; drain + effects to Lua {per_wake:,.0f} per wake")


if __name__ == "__main__":
    sys.exit(main())
