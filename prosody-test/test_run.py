"""End-to-end: `make run` as a newcomer meets it (prosody-test/run_local.py):
the guide it prints, a client over STARTTLS that checks the certificate
made on the spot, the echo bot, the push it makes, and the room it is in.
Run on the epoll backend only: what it shows does not depend on the loop."""

import base64
import os
import re
import signal
import ssl
import subprocess
import sys
import time
import unittest

from harness import MUC_DOMAIN, ROOT, WAIT, XmppClient, once_per_prosody

HERE = os.path.dirname(os.path.abspath(__file__))


@once_per_prosody
class MakeRunTest(unittest.TestCase):
    def setUp(self):
        self.run = subprocess.Popen([sys.executable, os.path.join(HERE, "run_local.py")],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.addCleanup(self.stop)
        self.guide = ""
        deadline = time.monotonic() + 60
        while "Ctrl-C stops" not in self.guide and time.monotonic() < deadline:
            line = self.run.stdout.readline()
            if not line:
                break
            self.guide += line
        self.assertIn("Ctrl-C stops", self.guide, self.guide)

    def stop(self):
        self.run.send_signal(signal.SIGTERM)
        self.run.communicate(timeout=WAIT)

    def test_a_client_over_starttls_chats_with_the_bot_and_finds_it_in_the_room(self):
        port = int(re.search(r"127\.0\.0\.1 +port (\d+)", self.guide)[1])
        folder = os.path.dirname(re.search(r"Prosody's log: (\S+)", self.guide)[1])
        fingerprint = re.search(r"SHA-256 ([0-9A-F:]+)", self.guide)[1]
        certificate = os.path.join(folder, "localhost.crt")
        made = subprocess.run(["openssl", "x509", "-in", certificate, "-noout", "-fingerprint", "-sha256"],
                              capture_output=True, text=True, check=True).stdout
        self.assertIn(fingerprint, made, "the guide shows the certificate's fingerprint")
        # A client that trusts only that certificate, for the name localhost.
        tls = ssl.create_default_context(cafile=certificate)
        me = XmppClient(port, "me@localhost", "test").connect(tls=tls)
        self.addCleanup(me.close)
        self.assertIsInstance(me.sock, ssl.SSLSocket)

        me.message("echo@bot.localhost", "hello over TLS")
        got = me.expect(lambda s: s.attr.get("from") == "echo@bot.localhost" and s.body is not None)
        self.assertEqual(got.body, "Did you say hello over TLS?")

        room = f"lobby@{MUC_DOMAIN}"
        me.send(f"<presence to='{room}/me'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
        me.expect(lambda s: s.name == "presence" and s.attr.get("from") == f"{room}/EchoBot")
        me.expect(lambda s: s.name == "presence" and s.attr.get("from") == f"{room}/me")
        me.send(f"<message to='{room}' type='groupchat'><body>hello room</body></message>")
        got = me.expect(lambda s: s.attr.get("from") == f"{room}/EchoBot" and s.body is not None)
        self.assertEqual(got.body, "Did you say hello room?")

        # The files the guide names: a chart, uploaded to Prosody's service.
        self.assertIn('say "chart"', self.guide)
        me.message("echo@bot.localhost", "chart")
        chart = me.expect(lambda s: s.attr.get("from") == "echo@bot.localhost"
                          and s.child("x", "jabber:x:oob") is not None)
        self.assertTrue(chart.body.endswith("/chart.png"), chart)

        # The menu the guide names: the example bot's two commands.
        self.assertIn("/ad-hoc bot.localhost", self.guide)
        commands = "http://jabber.org/protocol/commands"
        id_ = me.iq("bot.localhost", "get",
                    f"<query xmlns='http://jabber.org/protocol/disco#items' node='{commands}'/>")
        items = [i.get("name") for i in me.expect_id(id_).el.iter("{http://jabber.org/protocol/disco#items}item")]
        self.assertEqual(items, ["Ping", "Order a drink"])
        id_ = me.iq("bot.localhost", "set", f"<command xmlns='{commands}' node='ping'/>")
        note = me.expect_id(id_).el.find(f"{{{commands}}}command/{{{commands}}}note")
        self.assertEqual(note.text, "pong")

        # The typing the guide names: composing while the bot thinks.
        self.assertIn('say "think about it"', self.guide)
        me.message("echo@bot.localhost", "think about it")
        states = "http://jabber.org/protocol/chatstates"
        me.expect(lambda s: s.attr.get("from") == "echo@bot.localhost" and s.child("composing", states) is not None)
        thought = me.expect(lambda s: s.body == "Did you say think about it?")
        self.assertIsNotNone(thought.child("active", states), thought)

        # The stream the guide names: a message, then corrections of it.
        self.assertIn('say "story"', self.guide)
        me.message("echo@bot.localhost", "story")
        first = me.expect(lambda s: s.attr.get("from") == "echo@bot.localhost" and s.body == "Once")
        correct = "urn:xmpp:message-correct:0"
        last = me.expect(lambda s: s.body is not None and s.body.endswith("The end."))
        self.assertEqual(last.child("replace", correct).get("id"), first.attr["id"])

        # The face the guide names: a vCard with the example's picture.
        self.assertIn('"Echo Bot" with a smiling avatar', self.guide)
        id_ = me.iq("echo@bot.localhost", "get", "<vCard xmlns='vcard-temp'/>")
        vcard = me.expect_id(id_).el.find("{vcard-temp}vCard")
        self.assertEqual(vcard.find("{vcard-temp}FN").text, "Echo Bot")
        with open(os.path.join(ROOT, "examples", "echo_bot.png"), "rb") as f:
            self.assertEqual(base64.b64decode(vcard.find("{vcard-temp}PHOTO/{vcard-temp}BINVAL").text), f.read())


if __name__ == "__main__":
    unittest.main()
