"""Runs every test: Rust unit tests, the busted specs, and the end-to-end
suite once per network backend. Ends with one line: `N passed, N failed`."""

import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "prosody-test")


# No part may hang the run: CI has 90 minutes for everything.
PART_TIMEOUT = 20 * 60


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
    return passed, failed


def busted_counts(output):
    m = re.search(r"(\d+) successes? / (\d+) failures? / (\d+) errors?", output)
    if not m:
        return 0, 1
    return int(m.group(1)), int(m.group(2)) + int(m.group(3))


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
    # The libevent backend needs Lua's luaevent binding.
    if subprocess.run(["lua5.4", "-e", "require 'luaevent.core'"],
                      capture_output=True).returncode == 0:
        found.append("event")
    else:
        print("note: luaevent for Lua 5.4 is not installed; skipping the event backend")
    return found


def main():
    results = []

    code, out = run("Rust unit tests", ["cargo", "test", "--no-default-features",
                                        "--features", "lua54 vendored"])
    p, f = cargo_counts(out)
    results.append(("cargo test", p, f + (1 if code and not f else 0), 0))

    code, out = run("Lua specs", ["busted", "--lua=lua5.4", "--output=utfTerminal", "lua/spec"])
    p, f = busted_counts(out)
    results.append(("busted", p, f + (1 if code and not f else 0), 0))

    for backend in backends():
        env = dict(os.environ, NETWORK_BACKEND=backend)
        code, out = run(f"end-to-end ({backend})",
                        [sys.executable, "-m", "unittest", "-v", "test_contract", "test_delivery",
                         "test_push", "test_operations", "test_examples", "test_durable", "test_lifecycle"],
                        cwd=HERE, env=env)
        p, f, skipped = unittest_counts(out)
        results.append((f"e2e {backend}", p, f + (1 if code and not f else 0), skipped))

    print("\n=== summary")
    for name, p, f, skipped in results:
        print(f"{name:>12}: {p} passed, {f} failed" + (f", {skipped} skipped" if skipped else ""))
    passed = sum(r[1] for r in results)
    failed = sum(r[2] for r in results)
    skipped = sum(r[3] for r in results)
    print(f"{passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
