"""Runs every test: the Rust unit tests, the busted specs on every Lua the
library is built for, and the end-to-end suite on each Prosody and network
backend. Ends with one line: `N passed, N failed, N skipped`.

`run_all.py [rust] [lua] [fuzz [SECONDS]] [e2e]` runs only those parts
(the Makefile's test-rust, test-lua, fuzz and test-e2e). `make test` builds
what the parts need first: the plugin, the library for each Lua, and
Prosody 13; its fuzz part gives each target FUZZ_TEST_SECONDS (20).
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

from harness import PROSODY_ROOTS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "prosody-test")

# No part may hang the run: CI has 90 minutes for everything.
PART_TIMEOUT = 20 * 60

# Each Lua the library is built for (`make build/lua-<v>/component_http.so`)
# and Debian's interpreter of it.
LUAS = {"5.1": "lua5.1", "5.3": "lua5.3", "5.4": "lua5.4", "luajit": "luajit"}


def run(title, command, cwd=ROOT, env=None):
    print(f"\n=== {title}: {' '.join(command)}", flush=True)
    try:
        proc = subprocess.run(command, cwd=cwd, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=PART_TIMEOUT)
    except subprocess.TimeoutExpired as e:
        output = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        print(output, f"\n{title}: stopped after {PART_TIMEOUT} s", flush=True)
        return 1, output
    print(proc.stdout, flush=True)
    return proc.returncode, proc.stdout


def cargo_counts(output):
    passed = failed = 0
    for m in re.finditer(r"test result: \w+\. (\d+) passed; (\d+) failed", output):
        passed += int(m.group(1))
        failed += int(m.group(2))
    return passed, failed, 0


def busted_counts(output):
    m = re.search(r"(\d+) successes? / (\d+) failures? / (\d+) errors?", output)
    if not m:
        return 0, 1, 0
    return int(m.group(1)), int(m.group(2)) + int(m.group(3)), 0


def unittest_counts(output):
    ran = re.search(r"Ran (\d+) tests?", output)
    if not ran:
        return 0, 1, 0
    total = int(ran.group(1))
    failed = sum(int(n) for n in re.findall(r"(?:failures|errors)=(\d+)", output))
    skipped = sum(int(n) for n in re.findall(r"skipped=(\d+)", output))
    return total - failed - skipped, failed, skipped


def backends():
    found = ["epoll", "select"]
    # The libevent backend needs Lua's luaevent binding (both Prosodys run
    # on Debian's Lua 5.4).
    if subprocess.run(["lua5.4", "-e", "require 'luaevent.core'"],
                      capture_output=True).returncode == 0:
        found.append("event")
    else:
        print("note: luaevent for Lua 5.4 is not installed; skipping the event backend")
    return found


FUZZ_DIR = os.path.join(ROOT, "fuzz")


def fuzz_targets():
    """Every target, or those FUZZ_TARGETS names (comma-separated)."""
    every = sorted(name[:-3] for name in os.listdir(os.path.join(FUZZ_DIR, "fuzz_targets"))
                   if name.endswith(".rs") and name != "common.rs")
    wanted = [t for t in os.environ.get("FUZZ_TARGETS", "").split(",") if t]
    unknown = set(wanted) - set(every)
    if unknown:
        raise SystemExit(f"FUZZ_TARGETS: no target {', '.join(sorted(unknown))} (there are {', '.join(every)})")
    return wanted or every


def fuzz(results, seconds=None):
    """Each fuzz target for `seconds`, from its committed seeds (read only:
    what it finds goes to a temp folder). A crash fails it; its input is
    kept in fuzz/artifacts/ to become a regression test."""
    seconds = int(seconds or os.environ.get("FUZZ_TEST_SECONDS", "20"))
    # `make deps-fuzz` puts cargo-fuzz there.
    env = dict(os.environ, PATH=os.path.join(ROOT, ".cache", "cargo-fuzz", "bin") + os.pathsep + os.environ["PATH"])
    for target in fuzz_targets():
        found = tempfile.mkdtemp(prefix=f"fuzz-{target}-")
        seeds = os.path.join(FUZZ_DIR, "seeds", target)
        try:
            code, out = run(f"fuzz {target}", [
                "cargo", "+nightly", "fuzz", "run", "--fuzz-dir", FUZZ_DIR, target, found, seeds,
                "--", f"-max_total_time={seconds}", "-max_len=4096", "-print_final_stats=1"], env=env)
        finally:
            shutil.rmtree(found, ignore_errors=True)
        runs = re.search(r"Done (\d+) runs in", out) or re.search(r"stat::number_of_executed_units:\s*(\d+)", out)
        print(f"fuzz {target}: {runs.group(1) if runs else '?'} executions in {seconds} s, "
              f"{'no crash' if code == 0 else 'FAILED'}", flush=True)
        results.append((f"fuzz {target}", 1 if code == 0 else 0, 0 if code == 0 else 1, 0))


def part(results, name, counts, command, **kwargs):
    code, out = run(name, command, **kwargs)
    p, f, skipped = counts(out)
    # A part that failed without a countable failure still counts as one.
    results.append((name, p, f + (1 if code and not f else 0), skipped))


def rust(results):
    part(results, "cargo test", cargo_counts,
         ["cargo", "test", "--no-default-features", "--features", "lua54 vendored"])


def lua(results):
    for version, interpreter in LUAS.items():
        env = dict(os.environ, NATIVE_LIB=f"build/lua-{version}/component_http.so")
        part(results, f"busted lua {version}", busted_counts,
             ["busted", f"--lua={interpreter}", "--output=utfTerminal", "lua/spec"], env=env)
    # Prosody 13's util.stanza, on its Lua.
    env = dict(os.environ, NATIVE_LIB="build/lua-5.4/component_http.so",
               PROSODY_SOURCE=os.path.join(PROSODY_ROOTS["13"], "usr", "lib", "prosody"))
    part(results, "busted lua 5.4, Prosody 13", busted_counts,
         ["busted", "--lua=lua5.4", "--output=utfTerminal", "lua/spec"], env=env)


# The venv of `make deps-examples`: Debian's Python packages and slixmpp.
E2E_PYTHON = os.path.join(ROOT, ".cache", "venv", "bin", "python")


def e2e(results):
    for prosody in PROSODY_ROOTS:
        for backend in backends():
            env = dict(os.environ, PROSODY=prosody, NETWORK_BACKEND=backend)
            part(results, f"e2e Prosody {prosody} {backend}", unittest_counts,
                 [E2E_PYTHON, "-m", "unittest", "discover", "-v", "-p", "test_*.py"],
                 cwd=HERE, env=env)


PARTS = {"rust": rust, "lua": lua, "fuzz": fuzz, "e2e": e2e}


def main(names):
    # `fuzz SECONDS`: the seconds go to the fuzz part.
    seconds = None
    if "fuzz" in names and names.index("fuzz") + 1 < len(names) and names[names.index("fuzz") + 1].isdigit():
        seconds = names.pop(names.index("fuzz") + 1)
    unknown = [n for n in names if n not in PARTS]
    if unknown:
        print(f"unknown part {unknown[0]!r}: say any of {', '.join(PARTS)}")
        return 2
    results = []
    for name in names or PARTS:
        if name == "fuzz":
            fuzz(results, seconds)
        else:
            PARTS[name](results)

    print("\n=== summary")
    width = max(len(r[0]) for r in results)
    for name, p, f, skipped in results:
        print(f"{name:>{width}}: {p} passed, {f} failed" + (f", {skipped} skipped" if skipped else ""))
    passed = sum(r[1] for r in results)
    failed = sum(r[2] for r in results)
    skipped = sum(r[3] for r in results)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
