#!/usr/bin/env python3
"""The echo bot from the original module's README, as a web service.

mod_component_http POSTs every stanza sent to the component as JSON; the
JSON this service answers becomes the reply. Standard library only, but for
checking signatures: with --secret (the module's component_post_secret) each
request's Standard Webhooks signature is verified with that standard's own
library (`pip install standardwebhooks`), and a request that fails gets 401.

    python3 echo_bot.py --port 8080 [--secret whsec_...]

It uses the structured keys of the JSON contract: it reacts 👍 to
"thanks", and joins a group chat it is invited to (then echoes there too),
if the room is on its own server (say, conference.example.com for
bot.example.com) or a domain given with --room-domains: an invitation says
only what the inviter claims, and anyone may send one.

Say "chart" and it answers with a chart it draws, a small PNG, as a file
(the module uploads it to the server's upload service, and the client shows
it inline).

It offers a menu of ad-hoc commands (the module's component_post_commands
must list them: MENU below): "Ping" completes at once, and "Order a drink"
is a two-step dialog with forms (choose, then confirm). It keeps no state:
the drink chosen travels in a hidden field of the confirmation form.

"story" is answered with a story streamed word by word
(application/x-ndjson): clients see one message grow in place.

A message starting with "think" is answered after 2 seconds of thought:
with component_post_typing set, the sender sees the bot typing meanwhile
(the module sends the chat states; the bot does nothing for it).

With the push endpoint on (component_push_token), it also speaks first:
"remind me in 10 s: tea" is answered at once, and 10 seconds later the bot
POSTs the reminder to the component's push URL.

    python3 echo_bot.py --port 8080 --push-url http://127.0.0.1:5280/component_http \\
        --push-host bot.localhost --push-token SECRET
"""

import argparse
import base64
import json
import random
import re
import struct
import threading
import time
import urllib.request
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

try:
    from standardwebhooks import Webhook, WebhookVerificationError
except ImportError:  # only needed with --secret
    Webhook = WebhookVerificationError = None

THINKING = 2  # seconds a "think …" message takes
STORY = ("Once upon a time a small bot lived on an XMPP server. Every day it answered "
         "whoever wrote to it, word by word, as it thought of them. The end.")
STORY_PACE = 0.15  # seconds between words
REMIND = re.compile(r"^remind me in (\d+) ?s(?:econds?)?:? (.+)$", re.IGNORECASE)
THANKS = re.compile(r"^(thanks|thank you)\b", re.IGNORECASE)
MAX_DELAY = 3600
NICK = "EchoBot"

# The menu, as component_post_commands lists it in Prosody's config.
MENU = [{"node": "ping", "name": "Ping"}, {"node": "order", "name": "Order a drink"}]
DRINKS = [{"label": "Tea", "value": "tea"}, {"label": "Coffee", "value": "coffee"},
          {"label": "Hot chocolate", "value": "chocolate"}]


def png(width, height, pixel):
    """A PNG image, standard library only: `pixel(x, y)` gives (r, g, b)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    rows = b"".join(b"\0" + b"".join(bytes(pixel(x, y)) for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def chart():
    """A bar chart of eight made-up figures, as the `file` of a reply."""
    bars = [random.randint(4, 44) for _ in range(8)]
    def pixel(x, y):
        bar, inside = divmod(x, 12)
        if inside < 9 and 48 - y <= bars[bar]:
            return (52, 101, 164)
        return (255, 255, 255)
    data = png(96, 48, pixel)
    return {"data": base64.b64encode(data).decode(), "name": "chart.png", "content_type": "image/png",
            "desc": "Made-up figures, drawn just now"}


def command_answer(command):
    """The answer to one step of a menu command (docs/contract.md §13)."""
    node, action, data = command["node"], command["action"], command.get("data", {})
    if node == "ping":
        return {"body": "pong"}
    if node != "order" or action == "cancel":
        return {}
    if action in ("execute", "prev") or "drink" not in data:
        return {"command": {"actions": {"execute": "next", "next": True}, "form": {
            "type": "form", "title": "Order a drink", "fields": [
                {"var": "drink", "type": "list-single", "label": "Drink", "required": True, "options": DRINKS}]}}}
    drink = next((d["label"] for d in DRINKS if d["value"] == data["drink"]), None)
    if drink is None:
        return {"command": {"note": {"type": "error", "text": "There is no such drink."}}}
    if "confirm" not in data:
        return {"command": {"actions": {"execute": "complete", "prev": True, "complete": True}, "form": {
            "type": "form", "title": "Confirm", "instructions": f"One {drink.lower()}?", "fields": [
                {"var": "drink", "type": "hidden", "value": data["drink"]},
                {"var": "confirm", "type": "boolean", "label": "Yes, please", "value": True}]}}}
    if data["confirm"]:
        return {"command": {"note": f"One {drink.lower()} coming up."}}
    return {"command": {"note": {"type": "warn", "text": "Order dropped."}}}


def push(args, stanza):
    """Sends a stanza on the bot's own initiative."""
    request = urllib.request.Request(
        args.push_url, data=json.dumps(stanza).encode(), method="POST",
        headers={"Content-Type": "application/json", "Host": args.push_host,
                 "Authorization": f"Bearer {args.push_token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        print("echo bot: pushed, got", response.status, response.read().decode(), flush=True)


def allowed_domains(args):
    """Room domains the bot joins: --room-domains, or its own server's."""
    if args.room_domains:
        return [d.strip().lower() for d in args.room_domains.split(",") if d.strip()]
    server = args.push_host.split(".", 1)[-1]
    return [server, f"*.{server}"]


def room_allowed(args, room):
    domain = room.rpartition("@")[2].lower()
    return any(domain == d or (d.startswith("*.") and domain.endswith(d[1:])) for d in allowed_domains(args))


def make_handler(args):
    class EchoBot(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the module reuses connections

        def do_POST(self):
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if args.webhook:
                try:
                    # The body as received; the webhook-id, -timestamp and
                    # -signature headers. The library also refuses stale ones.
                    args.webhook.verify(raw, dict(self.headers))
                except WebhookVerificationError as e:
                    print("echo bot: refused a request:", e, flush=True)
                    return self.answer(401, {"error": "bad signature"})
            stanza = json.loads(raw)
            if "command" in stanza:
                return self.answer(200, command_answer(stanza["command"]))
            invite = stanza.get("invite")
            if invite:
                if not room_allowed(args, invite["room"]):
                    return self.answer(200, {"body": "I only join rooms on " + ", ".join(allowed_domains(args))})
                # Join the room, as EchoBot, asking for no history.
                return self.answer(200, {"kind": "presence", "to": f"{invite['room']}/{NICK}", "join": True})
            body = stanza.get("body")
            if body is None:  # presence, iq, chat states...: nothing to say
                return self.answer(204, None)
            if body.strip().lower() == "story":
                return self.stream(STORY.split())
            if body.strip().lower() == "chart":
                return self.answer(200, {"body": "Here is a chart:", "file": chart()})
            if THANKS.match(body) and stanza.get("id"):
                return self.answer(200, {"reactions": {"id": stanza["id"], "reactions": ["👍"]}})
            if body.lower().startswith("think"):
                # A slow answer: with component_post_typing the module shows
                # the sender the bot typing meanwhile, and active after.
                time.sleep(THINKING)
            reminder = REMIND.match(body) if args.push_url else None
            if reminder and int(reminder[1]) <= MAX_DELAY:
                delay, text = int(reminder[1]), reminder[2]
                later = {"to": stanza["from"], "from": stanza["to"], "body": f"Reminder: {text}"}
                threading.Timer(delay, push, args=(args, later)).start()
                return self.answer(200, {"body": f"OK, I will remind you in {delay} s."})
            return self.answer(200, {"body": f"Did you say {body}?"})

        def stream(self, words):
            """A streamed answer (application/x-ndjson), word by word as a
            language model would write it: each line the whole text so far.
            The module sends the first as a message and the rest as
            corrections of it."""
            self.send_response(200)
            self.send_header("Content-Type", "application/x-ndjson")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            text = ""
            for word in words:
                text = f"{text} {word}".strip()
                line = (json.dumps({"body": text}, ensure_ascii=False) + "\n").encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(line), line))
                self.wfile.flush()
                time.sleep(STORY_PACE)
            self.wfile.write(b"0\r\n\r\n")

        def answer(self, status, value):
            data = json.dumps(value, ensure_ascii=False).encode() if value is not None else b""
            self.send_response(status)
            if value is not None:
                self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, fmt, *log_args):
            print("echo bot:", fmt % log_args, flush=True)

    return EchoBot


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--push-url", help="the component's push endpoint")
    parser.add_argument("--push-host", default="bot.localhost", help="the component's domain")
    parser.add_argument("--push-token", help="component_push_token")
    parser.add_argument("--room-domains", help="comma-separated room domains to join when invited "
                        "(default: the component's server and its subdomains)")
    parser.add_argument("--secret", help="component_post_secret: verify every request's signature")
    args = parser.parse_args()
    args.webhook = None
    if args.secret:
        if Webhook is None:
            parser.error("--secret needs Standard Webhooks' library: pip install standardwebhooks")
        # A whsec_ secret is base64 after its prefix; any other is used as it is written.
        args.webhook = Webhook(args.secret if args.secret.startswith("whsec_") else args.secret.encode())
    server = ThreadingHTTPServer((args.host, args.port), make_handler(args))
    print(f"echo bot listening on http://{args.host}:{args.port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
