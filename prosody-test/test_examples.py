"""End-to-end: each example bot in examples/ behind a real Prosody."""

import base64
import os
import subprocess
import sys
import tempfile
import unittest
import urllib.request

from harness import ROOT, ProsodyTestCase, free_port, stop_process, wait_for_port

EXAMPLES = os.path.join(ROOT, "examples")
# `make deps-examples`: Standard Webhooks' libraries, for Python and Node.
VENV_PYTHON = os.path.join(ROOT, ".cache", "venv", "bin", "python")
NODE_MODULES = os.path.join(ROOT, ".cache", "node", "node_modules")
SIGNED_BOTS = {
    "python": lambda port, secret: [VENV_PYTHON, os.path.join(EXAMPLES, "echo_bot.py"), "--port", str(port),
                                    "--secret", secret],
    "node": lambda port, secret: ["node", os.path.join(EXAMPLES, "echo_bot.js"), str(port), "--secret", secret],
}

BOTS = {
    "python": lambda port: [sys.executable, os.path.join(EXAMPLES, "echo_bot.py"), "--port", str(port)],
    "php": lambda port: ["php", "-S", f"127.0.0.1:{port}", os.path.join(EXAMPLES, "echo_bot.php")],
    "node": lambda port: ["node", os.path.join(EXAMPLES, "echo_bot.js"), str(port)],
}


class ExampleBotsTest(ProsodyTestCase):
    def test_each_example_bot_echoes(self):
        ports = {name: free_port() for name in BOTS}
        bots = {}
        for name, command in BOTS.items():
            bots[name] = subprocess.Popen(command(ports[name]), stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
            self.addCleanup(stop_process, bots[name])
        for name, proc in bots.items():
            wait_for_port(ports[name], proc)
        self.start_prosody({f"{name}.localhost": {"component_post_url": f"http://127.0.0.1:{port}/",
                                                  "component_post_stanzas": ["message", "presence"]}
                            for name, port in ports.items()})
        alice = self.connect("alice")
        for name in BOTS:
            with self.subTest(bot=name):
                bot = f"echo@{name}.localhost"
                alice.message(bot, f"hello {name} & <friends>")
                got = alice.expect(lambda s: s.attr.get("from") == bot)
                self.assertEqual(got.body, f"Did you say hello {name} & <friends>?")
                # Presence has no body: the bot answers 204, nothing is sent.
                alice.send(f"<presence to='{bot}' type='probe'/>")
                alice.message(bot, "barrier")
                got = alice.expect(lambda s: s.attr.get("from") == bot)
                self.assertEqual(got.body, "Did you say barrier?")

    def test_the_python_bot_offers_a_menu_with_a_two_step_command(self):
        commands, data = "http://jabber.org/protocol/commands", "jabber:x:data"
        port = free_port()
        bot = subprocess.Popen(BOTS["python"](port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(stop_process, bot)
        wait_for_port(port, bot)
        self.start_prosody({"menu.localhost": {
            "component_post_url": f"http://127.0.0.1:{port}/",
            "component_post_commands": [{"node": "ping", "name": "Ping"}, {"node": "order", "name": "Order a drink"}]}})
        alice = self.connect("alice")

        def step(node, action=None, sessionid=None, form=""):
            attrs = f" node='{node}'" + (f" action='{action}'" if action else "") + \
                (f" sessionid='{sessionid}'" if sessionid else "")
            id_ = alice.iq("menu.localhost", "set", f"<command xmlns='{commands}'{attrs}>{form}</command>")
            return alice.expect_id(id_).el.find(f"{{{commands}}}command")

        def note(command):
            return command.find(f"{{{commands}}}note").text

        self.assertEqual(note(step("ping")), "pong")
        first = step("order")
        sessionid = first.get("sessionid")
        self.assertEqual(first.find(f"{{{data}}}x/{{{data}}}title").text, "Order a drink")
        chosen = f"<x xmlns='{data}' type='submit'><field var='drink'><value>tea</value></field></x>"
        confirm = step("order", "next", sessionid, chosen)
        self.assertEqual((confirm.get("status"), confirm.find(f"{{{data}}}x/{{{data}}}instructions").text),
                         ("executing", "One tea?"))
        confirmed = (f"<x xmlns='{data}' type='submit'><field var='drink'><value>tea</value></field>"
                     f"<field var='confirm'><value>1</value></field></x>")
        done = step("order", "complete", sessionid, confirmed)
        self.assertEqual((done.get("status"), note(done)), ("completed", "One tea coming up."))

    def test_the_python_bot_sends_a_chart_it_draws_as_a_file(self):
        port = free_port()
        bot = subprocess.Popen(BOTS["python"](port), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(stop_process, bot)
        wait_for_port(port, bot)
        self.start_prosody({"files.localhost": {"component_post_url": f"http://127.0.0.1:{port}/"}},
                           upload={"http_file_share_access": ["files.localhost"]})
        alice = self.connect("alice")
        alice.message("echo@files.localhost", "chart")
        self.assertEqual(alice.expect(lambda s: s.attr.get("from") == "echo@files.localhost").body,
                         "Here is a chart:")
        message = alice.expect(lambda s: s.attr.get("from") == "echo@files.localhost")
        oob = message.child("x", "jabber:x:oob")
        self.assertEqual(oob.find("{jabber:x:oob}url").text, message.body)
        with urllib.request.urlopen(message.body, timeout=10) as got:
            self.assertEqual(got.headers.get("Content-Type"), "image/png")
            self.assertTrue(got.read().startswith(b"\x89PNG\r\n\x1a\n"))

    def test_the_bots_verify_signatures_with_the_standard_webhooks_libraries(self):
        """v1 signatures checked by implementations nobody here wrote: the
        Python and the npm package of Standard Webhooks."""
        secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
        wrong = "whsec_" + base64.b64encode(b"w" * 32).decode()
        logs = tempfile.TemporaryDirectory(prefix="bot-logs-")
        self.addCleanup(logs.cleanup)
        hosts = {}
        for language, command in SIGNED_BOTS.items():
            for name, bot_secret in [("signed", secret), ("wrong", wrong)]:
                port = free_port()
                log = open(os.path.join(logs.name, f"{language}-{name}.log"), "w")
                self.addCleanup(log.close)
                proc = subprocess.Popen(command(port, bot_secret), stdout=log, stderr=subprocess.STDOUT,
                                        env={**os.environ, "NODE_PATH": NODE_MODULES})
                self.addCleanup(stop_process, proc)
                wait_for_port(port, proc)
                hosts[f"{language}-{name}.localhost"] = {"component_post_url": f"http://127.0.0.1:{port}/",
                                                         "component_post_secret": secret}
        self.start_prosody(hosts)
        alice = self.connect("alice")
        for language in SIGNED_BOTS:
            with self.subTest(bot=language):
                signed, wrong_bot = f"echo@{language}-signed.localhost", f"echo@{language}-wrong.localhost"
                alice.message(signed, "signed")
                got = alice.expect(lambda s: s.attr.get("from") == signed)
                self.assertEqual(got.body, "Did you say signed?")
                # The bot with another secret refuses the request: 401, an error.
                alice.message(wrong_bot, "forged?")
                got = alice.expect(lambda s: s.attr.get("from") == wrong_bot)
                self.assertEqual(got.attr.get("type"), "error")
                with open(os.path.join(logs.name, f"{language}-wrong.log")) as log:
                    self.assertIn("refused a request: No matching signature found", log.read())

if __name__ == "__main__":
    unittest.main()
