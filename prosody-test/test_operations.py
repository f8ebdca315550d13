"""End-to-end: what an admin sees. Metrics through Prosody's OpenMetrics
endpoint, and the module's status following the web service."""

import unittest

from harness import (PROSODY, SHELL_UNRELIABLE, SHELL_UNRELIABLE_WHY, ProsodyTestCase, free_port,
                     json_reply)


class OperationsTest(ProsodyTestCase):
    @classmethod
    def setUpClass(cls):
        cls.ws = cls.web_service()
        cls.flaky_port = free_port()  # nothing listens here until a test says so
        cls.start_prosody({
            "bot.localhost": {"component_post_url": cls.ws.url + "/", "component_post_retries": 0},
            "retry.localhost": {"component_post_url": cls.ws.url + "/"},
            "flaky.localhost": {"component_post_url": f"http://127.0.0.1:{cls.flaky_port}/",
                                "component_post_retries": 0},
        }, metrics=True)
        cls.alice = cls.connect("alice")

    def test_metrics_count_outcomes_latency_and_retries(self):
        before = self.prosody.metrics()
        self.ws.handler = lambda r: json_reply({"body": "ok"})
        for _ in range(3):
            self.alice.message("m@bot.localhost", "x")
            self.alice.expect(lambda s: s.attr.get("from") == "m@bot.localhost")
        self.ws.handler = lambda r: (404, {}, b"")
        self.alice.message("m@bot.localhost", "x")
        self.alice.expect(lambda s: s.attr.get("type") == "error")
        self.alice.message("m@flaky.localhost", "x")
        self.alice.expect(lambda s: s.attr.get("type") == "error")
        self.ws.handler = lambda r: (503, {}, b"") if r["attempt"] == 1 else json_reply({"body": "ok"})
        self.alice.message("m@retry.localhost", "x")
        self.alice.expect(lambda s: s.attr.get("from") == "m@retry.localhost")
        after = self.prosody.metrics()
        host = "bot.localhost"
        delta = lambda metric, **labels: (self.metric(metric, after, **labels)
                                          - self.metric(metric, before, **labels))
        self.assertEqual(delta("requests_total", host=host, outcome="2xx"), 3)
        self.assertEqual(delta("requests_total", host=host, outcome="4xx"), 1)
        self.assertEqual(delta("requests_total", host="flaky.localhost", outcome="unreachable"), 1)
        self.assertEqual(delta("duration_seconds_count", host=host), 4)
        name = "prosody_mod_component_http__"
        self.assertIn(name + "duration_seconds_bucket", after)
        for gauge in ["in_flight", "queued"]:
            self.assertIn(f'{name}{gauge}{{host="{host}"}} 0', after)
        self.assertEqual(delta("retries_total", host="retry.localhost"), 1)
        self.assertEqual(delta("requests_total", host="retry.localhost", outcome="2xx"), 1)

    @unittest.skipIf(SHELL_UNRELIABLE, SHELL_UNRELIABLE_WHY)
    def test_status_follows_the_web_service(self):
        self.alice.message("s@flaky.localhost", "down")
        self.alice.expect(lambda s: s.attr.get("type") == "error" and s.attr.get("from") == "s@flaky.localhost")
        self.assertEqual(self.status("flaky.localhost"), ("error", "web service unreachable (unreachable)"))
        self.web_service(port=self.flaky_port)  # up until this test ends
        self.alice.message("s@flaky.localhost", "up")
        got = self.alice.expect(lambda s: s.attr.get("from") == "s@flaky.localhost")
        self.assertEqual(got.body, "Did you say up?")
        self.assertEqual(self.status("flaky.localhost"), ("info", "web service answering again"))


    @unittest.skipIf(SHELL_UNRELIABLE, SHELL_UNRELIABLE_WHY)
    def test_shell_status_command(self):
        self.alice.message("c@flaky.localhost", "down")
        self.alice.expect(lambda s: s.attr.get("type") == "error" and s.attr.get("from") == "c@flaky.localhost")
        # The Lua form and the argument form.
        out = self.shell("webhook:status('retry.localhost')")
        self.assertIn("retry.localhost: 0 in flight, 0 queued; last error: none", out)
        self.assertNotIn("flaky.localhost", out)
        self.assertIn("1 component host", out)
        out = self.shell("webhook", "status", "flaky.localhost")
        self.assertRegex(out, r"flaky\.localhost: 0 in flight, 0 queued; last error: \S+ \S+ POST for message")
        self.assertNotIn("retry.localhost", out)
        # Without a host: every host, on 0.12 as on 13.
        out = self.shell("webhook:status()")
        self.assertIn("retry.localhost: 0 in flight, 0 queued; last error: none", out)
        self.assertRegex(out, r"flaky\.localhost: 0 in flight, 0 queued; last error: \S+ \S+ POST for message")
        self.assertIn("3 component hosts", out)
        if PROSODY != "0.12":  # and in the argument form
            self.assertIn("3 component hosts", self.shell("webhook", "status"))

    @unittest.skipIf(PROSODY == "0.12", "Prosody 0.12's shell help lists only its own sections")
    def test_shell_help_lists_the_commands(self):
        sections = self.shell("help")
        self.assertRegex(sections, r"\nwebhook\s*\|\s*Deliveries of mod_component_http")
        # 13.0.1's `help SECTION` takes the section's name up to its first
        # character that is not a letter or digit: the name has none.
        out = self.shell("help webhook")
        for usage in ["status <host>", "held <host>", "retry <host>", "replay <host> <id>", "purge <host> <list> <id>"]:
            self.assertIn("webhook " + usage, out)
        self.assertIn("the last error of a component host", out)

    @unittest.skipIf(SHELL_UNRELIABLE, SHELL_UNRELIABLE_WHY)
    def test_shell_commands_follow_a_reload(self):
        """After a reload the commands show the new instance of the module."""
        self.ws.handler = lambda r: (404, {}, b"")
        self.alice.message("r@retry.localhost", "x")
        self.alice.expect(lambda s: s.attr.get("type") == "error" and s.attr.get("from") == "r@retry.localhost")
        self.assertIn("last error: ", self.shell("webhook", "status", "retry.localhost"))
        self.assertNotIn("last error: none", self.shell("webhook", "status", "retry.localhost"))
        self.prosody.reload_module("retry.localhost")
        out = self.shell("webhook", "status", "retry.localhost")
        self.assertIn("retry.localhost: 0 in flight, 0 queued; last error: none", out)


if __name__ == "__main__":
    unittest.main()
