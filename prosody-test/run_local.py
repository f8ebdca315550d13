"""`make run`: a local Prosody on loopback with the module on bot.localhost
and the bundled echo bot behind it. Foreground; Ctrl-C stops everything."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time

from harness import DOMAIN, PASSWORD, PROSODY, ROOT, Prosody, free_port

USER = "me"
BOT = "bot.localhost"


def port_or_free(preferred):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def stop_on_sigterm(*_):
    raise KeyboardInterrupt


def main():
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    bot_port, http_port = free_port(), port_or_free(5280)
    token = secrets.token_urlsafe(24)
    push_url = f"http://127.0.0.1:{http_port}/component_http"
    bot = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "echo_bot.py"),
                            "--port", str(bot_port), "--push-url", push_url,
                            "--push-host", BOT, "--push-token", token])
    prosody = Prosody({BOT: {"component_post_url": f"http://127.0.0.1:{bot_port}/",
                             "component_push_token": token}},
                      users=(USER,), c2s_port=port_or_free(5222),
                      extra_config=[f"http_ports = {{ {http_port} }}"])
    try:
        prosody.start()
        port = prosody.c2s_port
        print(f"""
Prosody {PROSODY} is running on 127.0.0.1 with mod_component_http on {BOT},
backed by the echo bot (examples/echo_bot.py) at http://127.0.0.1:{bot_port}/.

Connect with any XMPP client:
    JID       {USER}@{DOMAIN}
    password  {PASSWORD}
    server    127.0.0.1
    port      {port}
    (plain connection without TLS: allow it in your client's account
     settings, e.g. Gajim: Advanced > "Connect using an unencrypted connection")
Then send a message to  echo@{BOT}  (any name @{BOT} works);
it answers "Did you say ...?". Say "remind me in 10 s: tea" and the bot
speaks first 10 seconds later, through the push endpoint. Push yourself:
    curl -i {push_url} -H "Host: {BOT}" \\
      -H "Authorization: Bearer {token}" -H "Content-Type: application/json" \\
      -d '{{"to": "{USER}@{DOMAIN}", "body": "hello from curl"}}'

Or chat from a terminal:
    python3 prosody-test/chat.py --port {port} echo@{BOT}

Prosody's log: {prosody.log_file}
Ctrl-C stops Prosody and the bot.
""", flush=True)
        while prosody.alive() and bot.poll() is None:
            time.sleep(0.5)
        print("Prosody or the bot stopped; shutting down.")
    except KeyboardInterrupt:
        print("\nStopping.")
    finally:
        prosody.cleanup()
        if bot.poll() is None:
            bot.send_signal(signal.SIGTERM)
            bot.wait()


if __name__ == "__main__":
    main()
