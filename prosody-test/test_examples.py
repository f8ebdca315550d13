"""End-to-end: each example bot in examples/ behind a real Prosody."""

import os
import subprocess
import sys
import time
import unittest

from harness import ROOT, WAIT, ProsodyTestCase, free_port, wait_for_port

EXAMPLES = os.path.join(ROOT, "examples")

BOTS = {
    "python": lambda port: [sys.executable, os.path.join(EXAMPLES, "echo_bot.py"), "--port", str(port)],
    "php": lambda port: ["php", "-S", f"127.0.0.1:{port}", os.path.join(EXAMPLES, "echo_bot.php")],
    "node": lambda port: ["node", os.path.join(EXAMPLES, "echo_bot.js"), str(port)],
}


def stop_bot(proc):
    proc.terminate()
    proc.wait(timeout=WAIT)


class ExampleBotsTest(ProsodyTestCase):
    def test_each_example_bot_echoes(self):
        ports = {name: free_port() for name in BOTS}
        bots = {}
        for name, command in BOTS.items():
            bots[name] = subprocess.Popen(command(ports[name]), stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
            self.addCleanup(stop_bot, bots[name])
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


if __name__ == "__main__":
    unittest.main()
