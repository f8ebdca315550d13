"""Shows, without this module, why the admin-shell tests skip on Prosody
0.12's libevent backend: `prosodyctl shell` calls that Prosody never answers.

    cd prosody-test && PROSODY=0.12 NETWORK_BACKEND=event python3 probe_libevent_shell.py [N]

Starts a Prosody with nothing but mod_admin_shell (no component, no plugin
folder of this project), runs `prosodyctl shell "server:version()"` N times
(default 20), each with a 5 s limit, and prints how many went unanswered
and how many commands reached the shell (Prosody's "Firing
admin/repl-input" log line). Not part of `make test`: it shows Prosody's
behaviour, it does not test ours.

What it shows (see SHELL_UNRELIABLE in harness/env.py): on 0.12 with libevent,
mod_admin_socket accepts through net.server's wrapclient; its connect
callback, when the new socket is already readable (the client sent its
stream header at once), reads that data and hands it to the listener
before onconnect has created the session, so the data is dropped and the
shell never sees the command. 13's libevent backend accepts through
wrapserver instead; epoll and select never lose it.
"""

import os
import subprocess
import sys
import tempfile
import time

from harness import BACKEND, PROSODY, PROSODYCTL, Prosody


def main(attempts):
    empty = tempfile.mkdtemp(prefix="no-plugins-")
    prosody = Prosody({}, users=(), plugin_dir=empty,
                      extra_config=['modules_enabled = { "admin_shell" }']).start()
    unanswered = 0
    try:
        for _ in range(attempts):
            try:
                result = subprocess.run([PROSODYCTL, "--config", prosody.config, "shell", "server:version()"],
                                        capture_output=True, text=True, timeout=5)
                if "OK:" not in result.stdout:
                    unanswered += 1
            except subprocess.TimeoutExpired:
                unanswered += 1
        time.sleep(0.2)
        reached = prosody.log().count("Firing admin/repl-input")
    finally:
        prosody.cleanup()
        os.rmdir(empty)
    print(f"Prosody {PROSODY}, {BACKEND} backend, no module of this project: "
          f"{unanswered} of {attempts} shell commands unanswered; {reached} reached the shell")
    return 0


if __name__ == "__main__":
    sys.exit(main(int(sys.argv[1]) if len(sys.argv) > 1 else 20))
