"""`make run`: a local Prosody on loopback with the module on bot.localhost
and the bundled echo bot behind it, STARTTLS with a certificate made on the
spot, and a group chat the bot is in. Foreground; Ctrl-C stops everything."""

import os
import secrets
import signal
import socket
import subprocess
import sys
import time

from harness import DOMAIN, MUC_DOMAIN, PASSWORD, PROSODY, ROOT, UPLOAD_DOMAIN, Prosody, free_port

USER = "me"
BOT = "bot.localhost"
ROOM = f"lobby@{MUC_DOMAIN}"
NICK = "EchoBot"


def port_or_free(preferred):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
            return preferred
        except OSError:
            return free_port()


def stop_on_sigterm(*_):
    raise KeyboardInterrupt


def make_certificate(folder):
    """A self-signed certificate for the server's names, made now: clients
    ask once whether to trust it. Returns (certificate, key, SHA-256)."""
    cert, key = os.path.join(folder, "localhost.crt"), os.path.join(folder, "localhost.key")
    names = ",".join(f"DNS:{name}" for name in (DOMAIN, MUC_DOMAIN, BOT)) + ",IP:127.0.0.1"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "30", "-subj", f"/CN={DOMAIN}", "-addext", f"subjectAltName={names}"],
                   check=True, capture_output=True, timeout=60)
    fingerprints = [subprocess.run(["openssl", "x509", "-in", cert, "-noout", "-fingerprint", f"-{digest}"],
                                   check=True, capture_output=True, text=True, timeout=60).stdout
                    for digest in ("sha256", "sha1")]
    return cert, key, [f.strip().split("=", 1)[-1] for f in fingerprints]


def main():
    signal.signal(signal.SIGTERM, stop_on_sigterm)
    bot_port, http_port = free_port(), port_or_free(5280)
    token = secrets.token_urlsafe(24)
    push_url = f"http://127.0.0.1:{http_port}/component_http"
    prosody = Prosody({BOT: {"component_post_url": f"http://127.0.0.1:{bot_port}/",
                             "component_push_token": token,
                             "component_post_rooms": [f"{ROOM}/{NICK}"],
                             # Its face: a name and a picture (vCard, XEP-0153).
                             "component_post_name": "Echo Bot",
                             "component_post_avatar": os.path.join(ROOT, "examples", "echo_bot.png"),
                             # The sender sees the bot typing when it takes a second.
                             "component_post_typing": 1,
                             # The example bot's menu (its MENU).
                             "component_post_commands": [{"node": "ping", "name": "Ping"},
                                                         {"node": "order", "name": "Order a drink"}]}},
                      users=(USER,), c2s_port=port_or_free(5222), muc=True,
                      http_port=http_port,
                      # Prosody's upload service, for the files the bot sends.
                      upload={"http_file_share_access": [BOT]})
    # STARTTLS, plain connections still allowed.
    cert, key, (sha256, sha1) = make_certificate(prosody.dir)
    prosody.tls = (cert, key)
    prosody.rewrite_config()
    bot = subprocess.Popen([sys.executable, os.path.join(ROOT, "examples", "echo_bot.py"),
                            "--port", str(bot_port), "--push-url", push_url,
                            "--push-host", BOT, "--push-token", token])
    try:
        prosody.start()
        port = prosody.c2s_port
        print(f"""
Prosody {PROSODY} is running on 127.0.0.1 with mod_component_http on {BOT},
backed by the echo bot (examples/echo_bot.py) at http://127.0.0.1:{bot_port}/.

Connect with any XMPP client (Conversations, Gajim, Dino, poezio, profanity):
    JID       {USER}@{DOMAIN}
    password  {PASSWORD}
    server    127.0.0.1   port {port}
    TLS       STARTTLS with a certificate made just now for {DOMAIN}: your
              client asks once whether to trust it; compare a fingerprint
                SHA-256 {sha256}
                SHA-1   {sha1}
              and accept it (profanity: /tls allow; poezio, Gajim, Dino: the
              dialog it shows). Plain connections are allowed too.

Try:
  * Chat: send a message to  echo@{BOT}  (any name @{BOT} works);
    it answers "Did you say ...?", and reacts 👍 to "thanks".
  * Push: say "remind me in 10 s: tea" and the bot speaks first 10 seconds
    later, through the push endpoint. Push yourself:
        curl -i {push_url} -H "Host: {BOT}" \\
          -H "Authorization: Bearer {token}" -H "Content-Type: application/json" \\
          -d '{{"to": "{USER}@{DOMAIN}", "body": "hello from curl"}}'
  * Files: say "chart" and the bot sends a chart it draws (a PNG), shown
    inline: uploaded to Prosody's own upload service ({UPLOAD_DOMAIN}).
  * Menu: open the commands of  {BOT}  (Conversations, Gajim: the bot's
    menu / "Execute command"; poezio: /ad-hoc {BOT}; profanity:
    /cmd list {BOT}): "Ping" answers at once, "Order a drink" is a
    dialog in two steps (choose, then confirm).
  * Typing: say "think about it" and the bot takes 2 s to answer; your
    client shows it typing meanwhile (component_post_typing).
  * Streaming: say "story" and the bot writes its answer word by word, as
    a language model does: one message that grows in place (corrections).
  * Face: the bot shows as "Echo Bot" with a smiling avatar (its vCard,
    from component_post_name and component_post_avatar).
  * Group chat: join  {ROOM}  (the bot is there as {NICK}) and say
    something: it answers in the room. Invite it to another room of
    {MUC_DOMAIN} and it joins.

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
