"""End-to-end: the module across reloads, unloads and a daemonized Prosody."""

import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from harness import PROSODY_CMD, PROSODYCTL, ROOT, WAIT, ProsodyTestCase, echo_handler


class ReloadTest(ProsodyTestCase):
    def setUp(self):
        self.ws = self.web_service()
        self.start_prosody({"bot.localhost": {"component_post_url": self.ws.url + "/"}}, http=True)
        self.alice = self.connect("alice")

    def reload(self):
        self.prosody.reload_module("bot.localhost")

    def test_unload_cancels_in_flight_requests_with_an_error(self):
        release = threading.Event()

        def stuck(request):
            release.wait(WAIT)
            return echo_handler(request)
        self.ws.handler = stuck
        try:
            id_ = self.alice.message("stuck@bot.localhost", "waiting")
            self.ws.wait_for(lambda r: True)
            self.prosody.reload_module("bot.localhost", action="unload")
            error = self.alice.expect_id(id_)
            self.assertEqual(error.attr["type"], "error")
            self.assertEqual(error.error()[:2], ("cancel", "service-unavailable"))
            self.assertIn("the module was unloaded", error.error()[2])
        finally:
            release.set()
        self.prosody.reload_module("bot.localhost", action="load")
        self.ws.handler = echo_handler
        self.alice.message("after@bot.localhost", "again")
        got = self.alice.expect(lambda s: s.attr.get("from") == "after@bot.localhost")
        self.assertEqual(got.body, "Did you say again?")
        # The cancelled request's late answer is not sent as well.
        self.alice.message("after@bot.localhost", "barrier")
        self.alice.expect(lambda s: s.body == "Did you say barrier?")
        self.assertEqual(self.alice.received(lambda s: s.attr.get("from") == "stuck@bot.localhost"), [])

    def test_a_reload_hands_over_what_is_in_flight(self):
        release = threading.Event()
        self.addCleanup(release.set)

        def stuck(request):
            if request["json"]["body"] == "in flight":
                release.wait(WAIT)
            return echo_handler(request)
        self.ws.handler = stuck
        self.alice.message("stuck@bot.localhost", "in flight")
        self.ws.wait_for(lambda r: r["json"]["body"] == "in flight")
        queued = self.alice.message("stuck@bot.localhost", "queued behind it")
        self.reload()
        self.reload()  # twice: the second hands over what the first did
        after = self.alice.message("stuck@bot.localhost", "after the reloads")
        release.set()
        bodies = [self.alice.expect(lambda s: s.attr.get("from") == "stuck@bot.localhost").body
                  for _ in range(3)]
        # Answered by the reloaded module, in the conversation's order.
        self.assertEqual(bodies, ["Did you say in flight?", "Did you say queued behind it?",
                                  "Did you say after the reloads?"])
        self.assertEqual(self.alice.received(lambda s: s.attr.get("type") == "error"), [])
        self.assertEqual(len([r for r in self.ws.requests if r["json"]["id"] in (queued, after)]), 2)

    def test_a_reload_that_changes_the_url_delivers_what_waits_to_the_new_url(self):
        release = threading.Event()
        self.addCleanup(release.set)
        new = self.web_service()

        def stuck(request):
            release.wait(WAIT)
            return echo_handler(request)
        self.ws.handler = stuck
        self.alice.message("moving@bot.localhost", "in flight")
        self.ws.wait_for(lambda r: True)
        waiting = [self.alice.message("moving@bot.localhost", f"waiting {i}") for i in range(3)]
        self.prosody.reconfigure({"bot.localhost": {"component_post_url": new.url + "/new"}})
        self.reload()
        release.set()
        bodies = [self.alice.expect(lambda s: s.attr.get("from") == "moving@bot.localhost").body
                  for _ in range(4)]
        self.assertEqual(bodies, ["Did you say in flight?"] + [f"Did you say waiting {i}?" for i in range(3)])
        self.assertEqual([r["json"]["id"] for r in new.requests], waiting)
        self.assertEqual({r["path"] for r in new.requests}, {"/new"})
        self.assertEqual(len(self.ws.requests), 1, "the old URL got only the one in flight")

    def test_a_pushed_iq_waiting_at_a_reload_gets_its_answer(self):
        # Handed over too: the reloaded module sends the answer back.
        token = "reload-push-token-01"
        self.prosody.reconfigure({"bot.localhost": {"component_post_url": self.ws.url + "/",
                                                    "component_push_token": token}})
        self.reload()
        results = []

        def push():
            status, answer, _ = self.push({
                "to": self.alice.jid, "kind": "iq", "type": "get",
                "stanza": "<iq type='get' id='across'><query xmlns='jabber:iq:version'/></iq>"},
                token=token, timeout=WAIT)
            results.append((status, answer))
        pusher = threading.Thread(target=push)
        pusher.start()
        got = self.alice.expect(lambda s: s.name == "iq" and s.attr.get("id") == "across")
        self.reload()
        self.alice.send(f"<iq type='result' to='{got.attr['from']}' id='across'>"
                        "<query xmlns='jabber:iq:version'><name>after a reload</name></query></iq>")
        pusher.join(WAIT)
        self.assertEqual(results[0][0], 200, results)
        self.assertIn("after a reload", results[0][1]["stanza"])

    def test_shutdown_answers_in_flight_requests_before_closing_sessions(self):
        release = threading.Event()
        self.addCleanup(release.set)

        def stuck(request):
            release.wait(WAIT)
            return None
        self.ws.handler = stuck
        id_ = self.alice.message("stuck@bot.localhost", "waiting")
        self.ws.wait_for(lambda r: True)
        self.prosody.stop()
        error = self.alice.expect_id(id_)
        self.assertEqual(error.error()[:2], ("cancel", "service-unavailable"))
        self.assertIn("the server is shutting down", error.error()[2])
        self.prosody.start()  # the teardown wants it alive

    def test_reload_under_traffic_answers_every_stanza(self):
        def handler(request):
            time.sleep(0.2)  # so that requests are in flight at each reload
            return echo_handler(request)
        self.ws.handler = handler
        sent = []
        stop = threading.Event()
        def traffic():
            while not stop.is_set() and len(sent) < 400:
                n = len(sent)
                sent.append(self.alice.message(f"load{n % 7}@bot.localhost", f"n{n}"))
                time.sleep(0.01)
        sender = threading.Thread(target=traffic)
        sender.start()
        try:
            for _ in range(3):
                time.sleep(0.3)
                self.reload()
        finally:
            stop.set()
            sender.join()
        # Every message gets its echo: what was in flight or waiting at a
        # reload is handed over. Echo replies carry no id, so match by body.
        answered, errors = 0, 0
        bodies = {f"Did you say n{i}?" for i in range(len(sent))}
        ids = set(sent)
        deadline = time.monotonic() + WAIT
        while bodies and ids and time.monotonic() < deadline:
            stanza = self.alice.expect(lambda s: s.name == "message")
            if stanza.attr.get("type") == "error":
                ids.discard(stanza.attr.get("id"))
                errors += 1
            elif stanza.body in bodies:
                bodies.discard(stanza.body)
                answered += 1
            if answered + errors == len(sent):
                break
        self.assertEqual((answered, errors), (len(sent), 0))
        self.assertEqual(self.log().count("Error initializing"), 0)


class InstallTest(ProsodyTestCase):
    """`make install` into a plugin directory, also under a running Prosody."""

    def test_install_then_upgrade_under_a_running_prosody(self):
        plugins = tempfile.mkdtemp(prefix="plugins-")
        self.addCleanup(shutil.rmtree, plugins, ignore_errors=True)
        ws = self.web_service()
        install = lambda: subprocess.run(["make", "-s", "install", f"PLUGIN_DIR={plugins}"],
                                         cwd=ROOT, check=True, capture_output=True, timeout=600)
        install()
        installed = os.path.join(plugins, "mod_component_http")
        self.assertEqual(sorted(os.listdir(installed)),
                         ["component_http.so", "durable.lib.lua", "menu.lib.lua", "mod_component_http.lua",
                          "push.lib.lua", "rooms.lib.lua", "shell.lib.lua"])
        self.start_prosody({"bot.localhost": {"component_post_url": ws.url + "/"}}, plugin_dir=plugins)
        alice = self.connect("alice")
        self.assertEqual(self.echo(alice, "installed"), "Did you say installed?")
        # Installing again renames new files into place: the library
        # Prosody has mapped keeps its inode and Prosody keeps working.
        library = os.path.join(installed, "component_http.so")
        inode = os.stat(library).st_ino
        install()
        self.assertNotEqual(os.stat(library).st_ino, inode)
        self.assertEqual(self.echo(alice, "after install"), "Did you say after install?")
        # A shim of another version, reloaded, says the library is old.
        shim = os.path.join(installed, "mod_component_http.lua")
        with open(shim) as f:
            text = f.read()
        with open(shim + ".new", "w") as f:
            f.write(re.sub(r'local VERSION = "[^"]*"', 'local VERSION = "99.0.0"', text))
        os.rename(shim + ".new", shim)
        self.prosody.reload_module("bot.localhost")
        self.assertIn("This module is version 99.0.0 but the native library loaded in Prosody is", self.log())
        self.assertEqual(self.echo(alice, "reloaded"), "Did you say reloaded?")

    def echo(self, client, text):
        client.message("echo@bot.localhost", text)
        return client.expect(lambda s: s.attr.get("from") == "echo@bot.localhost").body


class LuarocksTest(ProsodyTestCase):
    """The luarocks paths: a source build into Prosody's installer tree, and
    a binary rock installed with prosodyctl. Prosody loads each with no
    plugin_paths pointing at this checkout."""

    def setUp(self):
        self.ws = self.web_service()
        self.dir = tempfile.mkdtemp(prefix="rocks-")
        self.addCleanup(shutil.rmtree, self.dir, ignore_errors=True)
        self.tree = os.path.join(self.dir, "tree")
        # With a push token and durable delivery, so every Lua file of the
        # module is loaded from the tree.
        self.start_prosody({"bot.localhost": {"component_post_url": self.ws.url + "/",
                                              "component_push_token": "rock-push-token-01",
                                              "component_post_durable": True}},
                           start=False, plugin_dir=os.path.join(self.dir, "none"),
                           extra_config=[f'installer_plugin_path = "{self.tree}"'])

    def assert_loads_and_echoes(self):
        self.assertTrue(os.path.exists(os.path.join(self.tree, "lib", "lua", "5.4", "component_http.so")))
        self.prosody.start()
        alice = self.connect("alice")
        alice.message("rock@bot.localhost", "installed")
        got = alice.expect(lambda s: s.attr.get("from") == "rock@bot.localhost")
        self.assertEqual(got.body, "Did you say installed?")

    def test_luarocks_make_into_the_installer_tree(self):
        rockspec = next(f for f in os.listdir(ROOT) if f.endswith(".rockspec"))
        subprocess.run(["luarocks", "--lua-version=5.4", "make", rockspec, "--tree", self.tree],
                       cwd=ROOT, check=True, capture_output=True, timeout=600)
        self.assert_loads_and_echoes()

    def test_binary_rock_installed_by_prosodyctl(self):
        subprocess.run(["make", "-s", "rock"], cwd=ROOT, check=True, capture_output=True, timeout=600)
        rock = next(os.path.join(ROOT, "build", f) for f in os.listdir(os.path.join(ROOT, "build"))
                    if f.endswith(".rock"))
        # No cargo needed: hide it from prosodyctl.
        result = subprocess.run([PROSODYCTL, "--config", self.prosody.config, "install", rock],
                                capture_output=True, text=True, timeout=120,
                                env=dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin"))
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)
        self.assert_loads_and_echoes()


class DaemonizedTest(ProsodyTestCase):
    """`prosody -D` forks after loading modules: the runtime must start
    lazily, in the child."""

    def test_works_after_fork(self):
        ws = self.web_service()
        prosody = self.start_prosody({"bot.localhost": {"component_post_url": ws.url + "/"}}, start=False)
        pidfile = os.path.join(prosody.dir, "prosody.pid")
        subprocess.run([PROSODY_CMD, "--config", prosody.config, "-D"], check=True, timeout=WAIT)
        deadline = time.monotonic() + WAIT
        while not os.path.exists(pidfile) and time.monotonic() < deadline:
            time.sleep(0.05)
        with open(pidfile) as f:
            pid = int(f.read().strip())
        self.addCleanup(prosody.stop_daemon, pid)
        client = None
        while client is None and time.monotonic() < deadline:
            try:
                client = self.connect("alice")
            except OSError:
                time.sleep(0.05)
        client.message("fork@bot.localhost", "forked")
        got = client.expect(lambda s: s.attr.get("from") == "fork@bot.localhost")
        self.assertEqual(got.body, "Did you say forked?")


if __name__ == "__main__":
    unittest.main()
