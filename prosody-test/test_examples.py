"""End-to-end: each example bot in examples/ behind a real Prosody."""

import base64
import os
import subprocess
import sys
import tempfile
import unittest

from harness import ROOT, ProsodyTestCase, free_port, stop_process, wait_for_port

EXAMPLES = os.path.join(ROOT, "examples")
# `make deps-python`: the interpreter that has Standard Webhooks' library.
VENV_PYTHON = os.path.join(ROOT, ".cache", "venv", "bin", "python")

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

    def test_the_python_bot_verifies_signatures_with_the_standard_webhooks_library(self):
        """v1 signatures checked by an implementation nobody here wrote."""
        secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
        wrong = "whsec_" + base64.b64encode(b"w" * 32).decode()
        logs = tempfile.TemporaryDirectory(prefix="bot-logs-")
        self.addCleanup(logs.cleanup)
        hosts = {}
        for name, bot_secret in [("signed", secret), ("wrong", wrong)]:
            port = free_port()
            log = open(os.path.join(logs.name, f"{name}-bot.log"), "w")
            self.addCleanup(log.close)
            proc = subprocess.Popen([VENV_PYTHON, os.path.join(EXAMPLES, "echo_bot.py"), "--port", str(port),
                                     "--secret", bot_secret], stdout=log, stderr=subprocess.STDOUT)
            self.addCleanup(stop_process, proc)
            wait_for_port(port, proc)
            hosts[f"{name}.localhost"] = {"component_post_url": f"http://127.0.0.1:{port}/",
                                          "component_post_secret": secret}
        self.start_prosody(hosts)
        alice = self.connect("alice")
        alice.message("echo@signed.localhost", "signed")
        got = alice.expect(lambda s: s.attr.get("from") == "echo@signed.localhost")
        self.assertEqual(got.body, "Did you say signed?")
        # The bot with another secret refuses the request: 401, an error.
        alice.message("echo@wrong.localhost", "forged?")
        got = alice.expect(lambda s: s.attr.get("from") == "echo@wrong.localhost")
        self.assertEqual(got.attr.get("type"), "error")
        with open(os.path.join(logs.name, "wrong-bot.log")) as log:
            self.assertIn("refused a request: No matching signature found", log.read())


if __name__ == "__main__":
    unittest.main()
