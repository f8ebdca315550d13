"""End-to-end: the push endpoint. An HTTP client POSTs to Prosody's own
HTTP server; a real XMPP client receives."""

import base64
import hashlib
import hmac
import http.client
import json
import os
import subprocess
import sys
import threading
import time
import unittest

from harness import (DOMAIN, PROSODY, ROOT, Ed25519Keys, ProsodyTestCase, echo_handler, free_port,
                     wait_for_port)

TOKEN = "push-s3cret-token"
KEYS = Ed25519Keys()
PATH = "/component_http"


def forward_to(port, request):
    """Relays a request the module made to the example bot on `port`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/", body=request["body"], headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, {"Content-Type": response.getheader("Content-Type", "")}, response.read()
    finally:
        conn.close()


class PushTest(ProsodyTestCase):
    SECRETS = (TOKEN,)
    TOKEN = TOKEN

    @classmethod
    def setUpClass(cls):
        cls.ws = cls.web_service()
        url = cls.ws.url + "/"
        cls.start_prosody({
            "bot.localhost": {"component_post_url": url, "component_push_token": TOKEN,
                              "component_push_rate": 1000},
            "slowiq.localhost": {"component_post_url": url, "component_push_token": TOKEN,
                                 "component_push_timeout": 1 if PROSODY == "0.12" else "1s", "component_push_rate": 1000},
            "limited.localhost": {"component_post_url": url, "component_push_token": TOKEN,
                                  "component_push_rate": 2},
            "small.localhost": {"component_post_url": url, "component_push_token": TOKEN,
                                "component_push_max_size": 200},
            "nopush.localhost": {"component_post_url": url},
            "keyed.localhost": {"component_post_url": url, "component_push_public_key": KEYS.public_key,
                                "component_push_rate": 1000},
            "guarded.localhost": {"component_post_url": url, "component_push_token": TOKEN,
                                  "component_push_public_key": KEYS.public_key, "component_push_auth_failures": 3},
        }, http=True)
        cls.http_port = cls.prosody.http_port
        cls.alice = cls.connect("alice")

    def assert_received_only(self, body):
        """The next push-sent message alice gets is `body`: what came before
        was refused and never sent."""
        got = self.alice.expect(lambda s: s.name == "message" and s.attr.get("from", "").endswith("bot.localhost"))
        self.assertEqual(got.body, body)

    def push_barrier(self):
        status, _, _ = self.push({"to": self.alice.jid, "body": "barrier"})
        self.assertEqual(status, 202)
        self.assert_received_only("barrier")

    def test_json_message_is_sent_as_the_component(self):
        status, answer, _ = self.push({"to": self.alice.jid, "body": "reminder: stand-up",
                                       "from": "alerts@bot.localhost", "type": "normal"})
        self.assertEqual(status, 202)
        got = self.alice.expect(lambda s: s.attr.get("from") == "alerts@bot.localhost")
        self.assertEqual(got.body, "reminder: stand-up")
        self.assertEqual(got.attr["type"], "normal")
        self.assertEqual(got.attr["id"], answer["id"])

    def test_from_defaults_to_the_domain(self):
        status, answer, _ = self.push({"to": self.alice.jid, "body": "hello", "id": "mine"})
        self.assertEqual((status, answer), (202, {"id": "mine"}))
        got = self.alice.expect_id("mine")
        self.assertEqual(got.attr["from"], "bot.localhost")

    def test_raw_xml_push(self):
        xml = (f"<message to='{self.alice.jid}' type='headline'><body>raw push</body>"
               "<x xmlns='urn:test:push'/></message>")
        status, answer, _ = self.push(xml, content_type="application/xmpp+xml")
        self.assertEqual(status, 202)
        got = self.alice.expect_id(answer["id"])
        self.assertEqual(got.body, "raw push")
        self.assertIsNotNone(got.child("x", "urn:test:push"))

    def test_bad_input_is_refused_with_its_reason_and_nothing_is_sent(self):
        cases = [
            ({"body": "no to"}, "application/json", 400, "missing 'to'"),
            ({"to": "not a jid@@/", "body": "x"}, "application/json", 400, "'to' is not a valid JID"),
            ({"to": f"victim@{DOMAIN}@bot.localhost", "body": "x"}, "application/json", 400,
             "'to' is not a valid JID"),
            ({"to": "@bot.localhost", "body": "x"}, "application/json", 400, "'to' is not a valid JID"),
            ({"to": "\u202ealice@localhost", "body": "x"}, "application/json", 400, "'to' is not a valid JID"),
            ({"to": self.alice.jid, "from": "a@b@bot.localhost", "body": "x"}, "application/json", 400,
             "'from' is not a valid JID"),
            ({"to": "echo@bot.localhost", "body": "x"}, "application/json", 400, "at the component itself: a loop"),
            ("<message to='bot.localhost'><body>x</body></message>", "application/xmpp+xml", 400, "a loop"),
            ("{oops", "application/json", 400, "invalid JSON"),
            ({"to": self.alice.jid, "kind": "email"}, "application/json", 400, "wrong 'kind'"),
            ("<message to='a@b'><body></message>", "application/xmpp+xml", 400, "invalid XML"),
            ("<foo to='a@b'/>", "application/xmpp+xml", 400, "wrong kind"),
            ("hello", "text/plain", 415, "Content-Type"),
            ({"to": self.alice.jid, "from": f"admin@{DOMAIN}", "body": "spoofed"},
             "application/json", 403, "'from' must be bot.localhost"),
        ]
        for body, content_type, code, reason in cases:
            with self.subTest(reason=reason):
                status, answer, _ = self.push(body, content_type=content_type)
                self.assertEqual(status, code, answer)
                self.assertIn(reason, answer["error"])
        self.push_barrier()

    def test_too_large(self):
        status, answer, _ = self.push({"to": self.alice.jid, "body": "x" * 500}, host="small.localhost")
        self.assertEqual(status, 413)
        self.assertIn("200 bytes", answer["error"])

    def test_missing_or_wrong_token_is_refused_and_nothing_is_sent(self):
        status, answer, headers = self.push({"to": self.alice.jid, "body": "no token"}, token=None)
        self.assertEqual(status, 401)
        self.assertEqual(headers.get("www-authenticate"), "Bearer")
        status, answer, _ = self.push({"to": self.alice.jid, "body": "wrong"}, token="guess")
        self.assertEqual(status, 403)
        self.push_barrier()

    def test_standard_webhooks_signature_is_accepted(self):
        body = json.dumps({"to": self.alice.jid, "body": "signed push"}).encode()
        msg_id, timestamp = "msg_push1", str(int(time.time()))
        signed = f"{msg_id}.{timestamp}.".encode() + body
        signature = base64.b64encode(hmac.new(TOKEN.encode(), signed, hashlib.sha256).digest()).decode()
        headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp,
                   "webhook-signature": f"v1,{signature}"}
        status, _, _ = self.push(body, token=None, headers=headers)
        self.assertEqual(status, 202)
        self.assert_received_only("signed push")
        headers["webhook-signature"] = "v1," + base64.b64encode(b"x" * 32).decode()
        status, _, _ = self.push(body, token=None, headers=headers)
        self.assertEqual(status, 403)
        self.push_barrier()

    def test_v1a_signature_is_checked_against_the_public_key(self):
        body = json.dumps({"to": self.alice.jid, "body": "pushed with a key"}).encode()
        msg_id, timestamp = "msg_push_v1a", str(int(time.time()))
        headers = {"webhook-id": msg_id, "webhook-timestamp": timestamp,
                   "webhook-signature": "v1,xyz " + KEYS.sign(msg_id, timestamp, body)}
        status, answer, _ = self.push(body, host="keyed.localhost", token=None, headers=headers)
        self.assertEqual(status, 202, answer)
        got = self.alice.expect(lambda s: s.name == "message" and s.attr.get("from") == "keyed.localhost")
        self.assertEqual(got.body, "pushed with a key")
        for refused in [Ed25519Keys().sign(msg_id, timestamp, body),  # another key
                        KEYS.sign(msg_id, timestamp, body + b" ")]:  # another body
            headers["webhook-signature"] = refused
            status, answer, _ = self.push(body, host="keyed.localhost", token=None, headers=headers)
            self.assertEqual(status, 403, answer)
        # With a public key alone, neither a bearer token nor a v1 signature is taken.
        status, answer, _ = self.push(body, host="keyed.localhost", token=TOKEN)
        self.assertEqual(status, 401, answer)
        signed = base64.b64encode(hmac.new(TOKEN.encode(), f"{msg_id}.{timestamp}.".encode() + body,
                                           hashlib.sha256).digest()).decode()
        headers["webhook-signature"] = f"v1,{signed}"
        status, answer, _ = self.push(body, host="keyed.localhost", token=None, headers=headers)
        self.assertEqual(status, 403, answer)
        # And on a host with a token only, a v1a signature is not enough.
        headers["webhook-signature"] = KEYS.sign(msg_id, timestamp, body)
        status, answer, _ = self.push(body, token=None, headers=headers)
        self.assertEqual(status, 403, answer)
        self.push_barrier()

    def test_iq_round_trip_returns_the_answer(self):
        status, answer, _ = self.push({"to": DOMAIN, "kind": "iq", "type": "get",
                                       "stanza": "<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>"})
        self.assertEqual(status, 200, answer)
        self.assertEqual(answer["kind"], "iq")
        self.assertEqual(answer["type"], "result")
        self.assertEqual(answer["from"], DOMAIN)
        self.assertEqual(answer["to"], "bot.localhost")
        self.assertTrue(answer["stanza"].startswith("<iq"))

    def test_iq_error_answer_is_returned_too(self):
        status, answer, _ = self.push(f"<iq type='get' to='{DOMAIN}' id='v1'><nope xmlns='urn:test:none'/></iq>",
                                      content_type="application/xmpp+xml")
        self.assertEqual(status, 200)
        self.assertEqual((answer["type"], answer["id"]), ("error", "v1"))
        self.assertIn("service-unavailable", answer["stanza"])

    def test_iq_without_answer_times_out(self):
        status, answer, _ = self.push({"to": self.alice.jid, "kind": "iq", "type": "get",
                                       "stanza": "<iq type='get'><query xmlns='urn:test:q'/></iq>"},
                                      host="slowiq.localhost")
        self.assertEqual(status, 504)
        self.assertIn("no answer", answer["error"])

    def test_rate_limit(self):
        statuses = [self.push({"to": self.alice.jid, "body": f"burst {i}"}, host="limited.localhost")
                    for i in range(6)]
        codes = [s for s, _, _ in statuses]
        self.assertIn(429, codes)
        self.assertIn(202, codes)
        limited = next(h for s, _, h in statuses if s == 429)
        self.assertEqual(limited.get("retry-after"), "1")

    def test_example_bot_speaks_first(self):
        bot_port = free_port()
        bot = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "examples", "echo_bot.py"), "--port", str(bot_port),
             "--push-url", f"http://127.0.0.1:{self.http_port}{PATH}", "--push-host", "bot.localhost",
             "--push-token", TOKEN], stdout=subprocess.DEVNULL)
        try:
            wait_for_port(bot_port, bot)
            self.ws.handler = lambda r: forward_to(bot_port, r)
            self.alice.message("echo@bot.localhost", "remind me in 1 s: tea")
            # It answers at once (typing is the module's: component_post_typing)...
            got = self.alice.expect(lambda s: s.attr.get("from") == "echo@bot.localhost")
            self.assertEqual(got.body, "OK, I will remind you in 1 s.")
            # ...and speaks first a second later, through the push endpoint.
            got = self.alice.expect(lambda s: s.attr.get("from") == "echo@bot.localhost")
            self.assertEqual(got.body, "Reminder: tea")
        finally:
            self.ws.handler = echo_handler
            bot.terminate()
            bot.wait(timeout=10)

    def test_endpoint_is_off_without_a_token(self):
        status, _, _ = self.push({"to": self.alice.jid, "body": "x"}, host="nopush.localhost")
        self.assertEqual(status, 404)

    # What an HTTP client without the credentials, or with a copy of a
    # signed request, tries.

    def signed(self, body, msg_id, signatures=None):
        timestamp = str(int(time.time()))
        signature = KEYS.sign(msg_id, timestamp, body)
        if signatures is not None:
            signature = signatures(signature)
        return {"webhook-id": msg_id, "webhook-timestamp": timestamp, "webhook-signature": signature}

    def test_only_the_first_three_signatures_are_checked(self):
        body = json.dumps({"to": self.alice.jid, "body": "many signatures"}).encode()
        bogus = [Ed25519Keys().sign("x", "0", b"") for _ in range(4)]
        late = self.signed(body, "msg_late", lambda good: " ".join(bogus[:3] + [good]))
        status, answer, _ = self.push(body, host="keyed.localhost", token=None, headers=late)
        self.assertEqual((status, answer), (403, {"error": "bad signature"}))
        # A request listing a hundred costs the check of three.
        hundred = self.signed(body, "msg_hundred", lambda good: " ".join(bogus[:1] * 100 + [good]))
        status, _, _ = self.push(body, host="keyed.localhost", token=None, headers=hundred)
        self.assertEqual(status, 403)
        rotated = self.signed(body, "msg_rotated", lambda good: " ".join(bogus[:2] + [good]))
        status, _, _ = self.push(body, host="keyed.localhost", token=None, headers=rotated)
        self.assertEqual(status, 202)
        self.alice.expect(lambda s: s.body == "many signatures")

    def test_a_signed_push_is_accepted_once(self):
        body = json.dumps({"to": self.alice.jid, "body": "pay once"}).encode()
        headers = self.signed(body, "msg_replayed")
        status, _, _ = self.push(body, host="keyed.localhost", token=None, headers=headers)
        self.assertEqual(status, 202)
        status, answer, _ = self.push(body, host="keyed.localhost", token=None, headers=headers)
        self.assertEqual(status, 409, answer)
        self.assertIn("webhook-id was used already", answer["error"])
        self.alice.expect(lambda s: s.body == "pay once")
        status, _, _ = self.push({"to": self.alice.jid, "body": "barrier"})
        self.alice.expect(lambda s: s.body == "barrier")
        self.assertEqual(self.alice.received(lambda s: s.body == "pay once"), [], "delivered once")

    def test_failed_authorisations_are_limited_per_address(self):
        for _ in range(3):
            status, _, _ = self.push({"to": self.alice.jid, "body": "x"}, host="guarded.localhost",
                                     token="a-wrong-guess-of-the-token", source="127.0.0.3")
            self.assertEqual(status, 403)
        # The fourth is refused before anything is checked, even the right token.
        status, answer, headers = self.push({"to": self.alice.jid, "body": "x"}, host="guarded.localhost",
                                            source="127.0.0.3")
        self.assertEqual(status, 429, answer)
        self.assertIn("too many failed authorisations", answer["error"])
        self.assertGreater(int(headers["retry-after"]), 1)
        # Another address is not held up.
        status, _, _ = self.push({"to": self.alice.jid, "body": "other address"}, host="guarded.localhost",
                                 source="127.0.0.4")
        self.assertEqual(status, 202)
        self.alice.expect(lambda s: s.body == "other address")

    def test_an_iq_answer_from_anyone_but_its_recipient_is_ignored(self):
        results = []
        iq = {"to": self.alice.jid, "kind": "iq", "type": "get",
              "stanza": "<iq type='get' id='guess-me'><query xmlns='jabber:iq:version'/></iq>"}
        pusher = threading.Thread(target=lambda: results.append(self.push(iq)))
        pusher.start()
        got = self.alice.expect(lambda s: s.name == "iq" and s.attr.get("id") == "guess-me")
        bob = self.connect("bob")
        bob.send("<iq type='result' to='bot.localhost' id='guess-me'><query xmlns='jabber:iq:version'>"
                 "<name>forged</name></query></iq>")
        bob.ping_server()  # the forged answer is in before the real one
        self.wait_log("Ignoring an answer to pushed iq guess-me from bob@")
        self.alice.send(f"<iq type='result' to='{got.attr['from']}' id='guess-me'>"
                        "<query xmlns='jabber:iq:version'><name>real</name></query></iq>")
        pusher.join(30)
        status, answer, _ = results[0]
        self.assertEqual(status, 200, answer)
        self.assertIn("<name>real</name>", answer["stanza"])
        self.assertEqual(answer["from"], self.alice.jid)

    def test_thousands_of_attributes_are_refused_cheaply(self):
        # 7,398 attributes in 64 KiB: names of three letters, empty values.
        names = (a + b + c for a in "abcdefghijklmnopqrstuvwxyz" for b in "abcdefghijklmnopqrstuvwxyz"
                 for c in "abcdefghijklmnopqrstuvwxyz")
        attrs = "".join(f" {next(names)}=''" for _ in range(7398))
        status, answer, _ = self.push(f"<message to='{self.alice.jid}'{attrs}><body>x</body></message>",
                                      content_type="application/xmpp+xml")
        self.assertEqual(status, 400)
        self.assertIn("more than 128 attributes", answer["error"])


if __name__ == "__main__":
    unittest.main()
