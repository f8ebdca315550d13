"""End-to-end: menus (docs/contract.md §13). XEP-0050 ad-hoc commands and
XEP-0004 forms, run from raw XML and from slixmpp's own XEP-0050 client
against a real Prosody and a real web service; the menu from config and
from a push, through restarts and reloads."""

import json
import os
import re
import time
import unittest

from harness import (PROSODY, SHELL_UNRELIABLE, SHELL_UNRELIABLE_WHY, ProsodyTestCase, echo_handler, free_port,
                     json_reply, once_per_prosody)
from harness.slix import SlixClient

NS_COMMANDS = "http://jabber.org/protocol/commands"
NS_DATA = "jabber:x:data"
NS_ITEMS = "http://jabber.org/protocol/disco#items"
NS_INFO = "http://jabber.org/protocol/disco#info"
TOKEN = "menu-push-token-0123456789"

MENU = [{"node": "weather", "name": "Weather"}, "ping", "fail", "bad", "slow", "forms"]
MENU_NODES = ["weather", "ping", "fail", "bad", "slow", "forms"]

CITY_FORM = {"type": "form", "title": "Weather", "fields": [
    {"var": "city", "type": "list-single", "label": "City", "required": True,
     "options": [{"label": "Paris", "value": "paris"}, {"label": "Oslo", "value": "oslo"}]}]}

# Every XEP-0004 field type, as the bot sends it.
ALL_FIELDS = {"type": "form", "title": "Everything", "instructions": "Fill in\nall of it", "fields": [
    {"type": "fixed", "value": "A fixed line"},
    {"var": "agree", "type": "boolean", "label": "Agree?", "value": False},
    {"var": "secret", "type": "hidden", "value": "h1"},
    {"var": "friends", "type": "jid-multi", "value": ["a@localhost", "b@localhost"]},
    {"var": "owner", "type": "jid-single", "desc": "Who owns it"},
    {"var": "toppings", "type": "list-multi", "options": [{"value": "ham"}, {"label": "Olives", "value": "olive"}]},
    {"var": "size", "type": "list-single", "required": True, "options": [{"value": "s"}, {"value": "l"}]},
    {"var": "notes", "type": "text-multi"},
    {"var": "pin", "type": "text-private"},
    {"var": "name", "type": "text-single", "value": "x"},
]}


def menu_bot(request):
    """The web service: a menu bot, and an echo bot for messages."""
    j = request["json"] or {}
    command = j.get("command")
    if command is None:
        if "data" in j:
            return json_reply({"body": "form data " + json.dumps(j["data"], sort_keys=True)})
        return echo_handler(request)
    node, action = command["node"], command["action"]
    if node == "ping":
        return json_reply({"body": "pong"})
    if node == "weather":
        if action == "cancel":
            return json_reply({"body": "ignored: a cancel is canceled"})
        if action in ("execute", "prev"):
            return json_reply({"command": {
                "note": "Which city?", "actions": {"execute": "next", "next": True}, "form": CITY_FORM}})
        city = command["data"]["city"]
        return json_reply({"command": {"note": {"type": "info", "text": f"Sunny in {city}"}}})
    if node == "fail":
        return 503, {"Content-Type": "text/plain"}, "down for maintenance"
    if node == "bad":
        return json_reply({"command": {"status": "finished"}})
    if node == "slow":
        time.sleep(5)
        return json_reply({})
    if node == "forms":
        if action == "execute":
            return json_reply({"command": {"form": ALL_FIELDS}})
        rows = [[{"var": k, "value": v if isinstance(v, (str, list)) else json.dumps(v)}]
                for k, v in sorted(command["data"].items())]
        return json_reply({"command": {"form": {
            "type": "result", "title": "You said", "reported": [{"var": "answer", "label": "Answer"}],
            "items": rows}}})
    return 404, {}, b""


def command_xml(node, action=None, sessionid=None, form=""):
    attrs = f" node='{node}'"
    if action:
        attrs += f" action='{action}'"
    if sessionid:
        attrs += f" sessionid='{sessionid}'"
    return f"<command xmlns='{NS_COMMANDS}'{attrs}>{form}</command>"


def submit(**values):
    fields = "".join(
        f"<field var='{var}'>" + "".join(f"<value>{v}</value>" for v in (vs if isinstance(vs, list) else [vs]))
        + "</field>" for var, vs in values.items())
    return f"<x xmlns='{NS_DATA}' type='submit'>{fields}</x>"


def child(stanza, name, ns):
    return stanza.el.find(f"{{{ns}}}{name}")


class MenuTestCase(ProsodyTestCase):
    """A Prosody with the menu bot as its web service, and the push token."""
    SECRETS = (TOKEN,)
    TOKEN = TOKEN

    def items(self, to="bot.localhost"):
        """The commands disco#items lists at `to`, as (node, name)."""
        id_ = self.alice.iq(to, "get", f"<query xmlns='{NS_ITEMS}' node='{NS_COMMANDS}'/>")
        return [(i.get("node"), i.get("name")) for i in child(self.alice.expect_id(id_), "query", NS_ITEMS)]


class CommandsTest(MenuTestCase):
    @classmethod
    def setUpClass(cls):
        cls.ws = cls.web_service(menu_bot)
        url = cls.ws.url + "/"
        cls.start_prosody({
            "bot.localhost": {"component_post_url": url, "component_post_commands": MENU,
                              "component_post_timeout": 3, "component_post_retries": 0,
                              "component_push_token": TOKEN},
            "brief.localhost": {"component_post_url": url, "component_post_commands": ["weather"],
                                "component_post_command_timeout": 1 if PROSODY == "0.12" else "1s"},
            "plain.localhost": {"component_post_url": url},
            "iqbot.localhost": {"component_post_url": url, "component_post_commands": ["ping"],
                                "component_post_stanzas": ["message", "iq"]},
            "down.localhost": {"component_post_url": f"http://127.0.0.1:{free_port()}/",
                               "component_post_commands": ["ping"], "component_post_durable": True},
        }, http=True)
        cls.alice = cls.connect("alice")
        cls.bob = cls.connect("bob")

    def command(self, client, to, node, action=None, sessionid=None, form=""):
        """Sends a command step; its answer."""
        id_ = client.iq(to, "set", command_xml(node, action, sessionid, form))
        return client.expect_id(id_)

    def posts(self):
        return [r for r in self.ws.requests if (r["json"] or {}).get("command")]

    def assert_refused_alone(self, client, to, node, condition, specific=None, **step):
        """A step refused with `condition` (and XEP-0050's `specific`), not
        POSTed, and nothing else sent."""
        before = len(self.posts())
        answer = self.command(client, to, node, **step)
        self.assertEqual(answer.attr.get("type"), "error", answer)
        self.assertEqual(answer.error()[1], condition, answer)
        if specific:
            self.assertIsNotNone(answer.el.find(f".//{{{NS_COMMANDS}}}{specific}"), answer)
        self.barrier(client, to=f"barrier@{to.split('@')[-1]}")
        self.assertEqual(len(self.posts()), before, "not POSTed")
        self.assertEqual(client.received(lambda s: s.name == "iq" and s.attr.get("type") != "result"), [])
        return answer

    # -- the menu and its disco

    def test_disco_lists_the_menu_in_order_with_the_feature(self):
        for to in ("bot.localhost", "weather@bot.localhost", "any@bot.localhost/res"):
            id_ = self.alice.iq(to, "get", f"<query xmlns='{NS_INFO}'/>")
            features = [f.get("var") for f in child(self.alice.expect_id(id_), "query", NS_INFO)]
            self.assertIn(NS_COMMANDS, features, to)
            id_ = self.alice.iq(to, "get", f"<query xmlns='{NS_ITEMS}' node='{NS_COMMANDS}'/>")
            items = child(self.alice.expect_id(id_), "query", NS_ITEMS)
            self.assertEqual([(i.get("jid"), i.get("node"), i.get("name")) for i in items],
                             [(to, n, "Weather" if n == "weather" else n) for n in MENU_NODES])
        id_ = self.alice.iq("bot.localhost", "get", f"<query xmlns='{NS_INFO}' node='weather'/>")
        info = child(self.alice.expect_id(id_), "query", NS_INFO)
        identity = info.find(f"{{{NS_INFO}}}identity")
        self.assertEqual((identity.get("category"), identity.get("type"), identity.get("name")),
                         ("automation", "command-node", "Weather"))
        self.assertEqual({f.get("var") for f in info.findall(f"{{{NS_INFO}}}feature")}, {NS_COMMANDS, NS_DATA})

    def test_an_empty_menu_lists_no_feature_and_no_items(self):
        id_ = self.alice.iq("plain.localhost", "get", f"<query xmlns='{NS_INFO}'/>")
        features = [f.get("var") for f in child(self.alice.expect_id(id_), "query", NS_INFO)]
        self.assertNotIn(NS_COMMANDS, features)
        id_ = self.alice.iq("plain.localhost", "get", f"<query xmlns='{NS_ITEMS}' node='{NS_COMMANDS}'/>")
        self.assertEqual(list(child(self.alice.expect_id(id_), "query", NS_ITEMS)), [])
        self.assert_refused_alone(self.alice, "x@plain.localhost", "weather", "item-not-found")

    def test_with_iqs_forwarded_the_commands_disco_is_still_answered_here(self):
        before = len(self.ws.requests)
        id_ = self.alice.iq("iqbot.localhost", "get", f"<query xmlns='{NS_ITEMS}' node='{NS_COMMANDS}'/>")
        items = child(self.alice.expect_id(id_), "query", NS_ITEMS)
        self.assertEqual([i.get("node") for i in items], ["ping"])
        id_ = self.alice.iq("iqbot.localhost", "get", f"<query xmlns='{NS_INFO}' node='ping'/>")
        self.assertIsNotNone(child(self.alice.expect_id(id_), "query", NS_INFO))
        self.assertEqual(len(self.ws.requests), before, "not POSTed")
        # Other disco goes to the web service, as before.
        self.alice.iq("iqbot.localhost", "get", f"<query xmlns='{NS_INFO}'/>")
        self.ws.wait_for(lambda r: (r["json"] or {}).get("kind") == "iq" and NS_INFO in r["json"]["stanza"])
        answer = self.command(self.alice, "iqbot.localhost", "ping")
        self.assertEqual(child(answer, "command", NS_COMMANDS).get("status"), "completed")

    # -- running commands

    def test_a_one_step_command_completes_with_a_note(self):
        answer = self.command(self.alice, "echo@bot.localhost", "ping")
        command = child(answer, "command", NS_COMMANDS)
        self.assertEqual((answer.attr["type"], command.get("node"), command.get("status")),
                         ("result", "ping", "completed"))
        note = command.find(f"{{{NS_COMMANDS}}}note")
        self.assertEqual((note.get("type"), note.text), ("info", "pong"))
        posted = self.posts()[-1]["json"]
        self.assertEqual((posted["kind"], posted["type"], posted["to"]), ("iq", "set", "echo@bot.localhost"))
        self.assertEqual({k: v for k, v in posted["command"].items() if k != "sessionid"},
                         {"node": "ping", "action": "execute"})
        self.assertEqual(posted["command"]["sessionid"], command.get("sessionid"))
        self.assertGreaterEqual(len(command.get("sessionid")), 32)

    def test_two_steps_prev_and_cancel_from_raw_xml(self):
        first = child(self.command(self.alice, "weather@bot.localhost", "weather"), "command", NS_COMMANDS)
        sessionid = first.get("sessionid")
        self.assertEqual(first.get("status"), "executing")
        actions = first.find(f"{{{NS_COMMANDS}}}actions")
        self.assertEqual((actions.get("execute"), [a.tag.split("}")[1] for a in actions]), ("next", ["next"]))
        self.assertEqual([c.tag.split("}")[1] for c in first], ["actions", "note", "x"])
        prev = child(self.command(self.alice, "weather@bot.localhost", "weather", "prev", sessionid),
                     "command", NS_COMMANDS)
        self.assertEqual((prev.get("sessionid"), prev.get("status")), (sessionid, "executing"))
        done = child(self.command(self.alice, "weather@bot.localhost", "weather", "next", sessionid,
                                  submit(city="oslo")), "command", NS_COMMANDS)
        self.assertEqual((done.get("status"), done.find(f"{{{NS_COMMANDS}}}note").text),
                         ("completed", "Sunny in oslo"))
        steps = [p["json"]["command"] for p in self.posts() if p["json"]["command"]["sessionid"] == sessionid]
        self.assertEqual([s["action"] for s in steps], ["execute", "prev", "next"])
        self.assertEqual(steps[-1]["data"], {"city": "oslo"})
        self.assertEqual(steps[-1]["form"], {"type": "submit", "fields": [{"var": "city", "value": "oslo"}]})
        # Completed: the session is gone.
        self.assert_refused_alone(self.alice, "weather@bot.localhost", "weather", "bad-request",
                                  "bad-sessionid", action="next", sessionid=sessionid)
        # A cancel is POSTed and answered canceled, whatever the service says.
        sessionid = child(self.command(self.alice, "weather@bot.localhost", "weather"),
                          "command", NS_COMMANDS).get("sessionid")
        canceled = child(self.command(self.alice, "weather@bot.localhost", "weather", "cancel", sessionid),
                         "command", NS_COMMANDS)
        self.assertEqual(canceled.get("status"), "canceled")
        self.assertEqual(self.posts()[-1]["json"]["command"]["action"], "cancel")
        self.assert_refused_alone(self.alice, "weather@bot.localhost", "weather", "bad-request",
                                  "bad-sessionid", action="next", sessionid=sessionid)

    def test_a_two_step_command_from_slixmpp(self):
        client = SlixClient(self.prosody.c2s_port, "carol")
        self.addCleanup(client.close)
        xmpp = client.xmpp
        items = client.run(xmpp.plugin["xep_0050"].get_commands("bot.localhost"))
        listed = [(i.get("node"), i.get("name")) for i in items.xml.iter(f"{{{NS_ITEMS}}}item")]
        self.assertEqual(listed[:2], [("weather", "Weather"), ("ping", "ping")])
        first = client.run(xmpp.plugin["xep_0050"].send_command("bot.localhost", "weather"))
        form = first["command"]["form"]
        self.assertEqual((first["command"]["status"], form["title"]), ("executing", "Weather"))
        self.assertEqual([o["value"] for o in form.get_fields()["city"]["options"]], ["paris", "oslo"])
        answer = xmpp.plugin["xep_0004"].make_form(ftype="submit")
        answer.add_field(var="city", value="paris")
        done = client.run(xmpp.plugin["xep_0050"].send_command(
            "bot.localhost", "weather", action="next", sessionid=first["command"]["sessionid"], payload=answer))
        self.assertEqual(done["command"]["status"], "completed")
        self.assertEqual(done["command"]["notes"], [("info", "Sunny in paris")])
        if os.environ.get("SHOW_TRANSCRIPT"):  # for a closing note or a README
            print(f"\n{first}\n{done}")

    def test_every_field_type_both_ways_and_a_result_table(self):
        first = child(self.command(self.alice, "bot.localhost", "forms"), "command", NS_COMMANDS)
        x = first.find(f"{{{NS_DATA}}}x")
        self.assertEqual(first.get("status"), "executing", "a form of type form: executing")
        types = [f.get("type") for f in x.findall(f"{{{NS_DATA}}}field")]
        self.assertEqual(types, [f["type"] for f in ALL_FIELDS["fields"]])
        self.assertEqual([i.text for i in x.findall(f"{{{NS_DATA}}}instructions")], ["Fill in", "all of it"])
        agree = x.find(f"{{{NS_DATA}}}field[@var='agree']/{{{NS_DATA}}}value")
        self.assertEqual(agree.text, "false", "a boolean is written false")
        self.assertIsNotNone(x.find(f"{{{NS_DATA}}}field[@var='size']/{{{NS_DATA}}}required"))
        owner = x.find(f"{{{NS_DATA}}}field[@var='owner']/{{{NS_DATA}}}desc")
        self.assertEqual(owner.text, "Who owns it")
        olives = x.find(f"{{{NS_DATA}}}field[@var='toppings']/{{{NS_DATA}}}option[@label='Olives']")
        self.assertEqual(olives.find(f"{{{NS_DATA}}}value").text, "olive")
        # Submitted untyped, as clients do: types come from the form sent.
        form = submit(agree="1", secret="h1", friends=["c@localhost", "d@localhost"], owner="e@localhost",
                      toppings="ham", size="l", notes=["line 1", "line 2"], pin="1234", name="n")
        result = child(self.command(self.alice, "bot.localhost", "forms", "complete", first.get("sessionid"),
                                    form), "command", NS_COMMANDS)
        data = self.posts()[-1]["json"]["command"]["data"]
        self.assertEqual(data, {"agree": True, "secret": "h1", "friends": ["c@localhost", "d@localhost"],
                                "owner": "e@localhost", "toppings": ["ham"], "size": "l",
                                "notes": ["line 1", "line 2"], "pin": "1234", "name": "n"})
        self.assertEqual(self.posts()[-1]["json"]["command"]["form"]["fields"][0], {"var": "agree", "value": "1"})
        table = result.find(f"{{{NS_DATA}}}x")
        self.assertEqual((result.get("status"), table.get("type")), ("completed", "result"))
        self.assertEqual([f.get("var") for f in table.find(f"{{{NS_DATA}}}reported")], ["answer"])
        rows = [i.find(f"{{{NS_DATA}}}field/{{{NS_DATA}}}value").text for i in table.findall(f"{{{NS_DATA}}}item")]
        self.assertEqual(rows[0], "true")

    def test_steps_not_of_the_session_are_refused_and_not_posted(self):
        self.assert_refused_alone(self.alice, "bot.localhost", "nope", "item-not-found")
        self.assert_refused_alone(self.alice, "bot.localhost", "weather", "bad-request", "malformed-action",
                                  action="next")
        self.assert_refused_alone(self.alice, "bot.localhost", "weather", "bad-request", "malformed-action",
                                  action="dance")
        self.assert_refused_alone(self.alice, "bot.localhost", "weather", "bad-request", "bad-sessionid",
                                  action="next", sessionid="guessed")
        sessionid = child(self.command(self.alice, "bot.localhost", "weather"), "command", NS_COMMANDS)\
            .get("sessionid")
        # Bob cannot step Alice's session; nor can Alice another node with it.
        self.assert_refused_alone(self.bob, "bot.localhost", "weather", "bad-request", "bad-sessionid",
                                  action="next", sessionid=sessionid, form=submit(city="oslo"))
        self.assert_refused_alone(self.alice, "bot.localhost", "ping", "bad-request", "bad-sessionid",
                                  sessionid=sessionid)
        # Still Alice's.
        done = self.command(self.alice, "bot.localhost", "weather", "next", sessionid, submit(city="paris"))
        self.assertEqual(child(done, "command", NS_COMMANDS).get("status"), "completed")

    def test_an_expired_session_is_refused(self):
        sessionid = child(self.command(self.alice, "bot@brief.localhost", "weather"), "command", NS_COMMANDS)\
            .get("sessionid")
        time.sleep(1.5)
        self.assert_refused_alone(self.alice, "bot@brief.localhost", "weather", "bad-request", "bad-sessionid",
                                  action="next", sessionid=sessionid, form=submit(city="paris"))

    def test_failures_give_the_mapped_error_and_nothing_else(self):
        for node, expected in [
            ("fail", ("wait", "remote-server-timeout", "down for maintenance")),
            ("bad", ("cancel", "internal-server-error")),
            ("slow", ("wait", "remote-server-timeout", "timed out")),
        ]:
            answer = self.command(self.alice, "bot.localhost", node)
            self.assertEqual(answer.attr["type"], "error", node)
            self.assertEqual(answer.error()[:len(expected)], expected, node)
            if node == "bad":
                self.assertIn("'command.status' must be one of executing, completed, canceled", answer.error()[2])
            self.barrier(self.alice, to="barrier@bot.localhost")
            self.assertEqual(self.alice.received(lambda s: s.name == "iq"), [], node)

    def test_a_command_fails_at_once_while_the_service_is_down_even_durable(self):
        started = time.monotonic()
        answer = self.command(self.alice, "bot@down.localhost", "ping")
        self.assertEqual(answer.error()[:2], ("cancel", "remote-server-timeout"))
        self.assertLess(time.monotonic() - started, 10, "IQs are never held")

    @unittest.skipIf(SHELL_UNRELIABLE, SHELL_UNRELIABLE_WHY)
    def test_the_admin_shell_shows_the_menu_and_the_sessions_running(self):
        self.command(self.bob, "bot.localhost", "weather")  # left open
        out = self.shell("webhook:status('bot.localhost')")
        running = int(re.search(r"6 commands, (\d+) running", out)[1])
        self.assertGreaterEqual(running, 1, out)
        self.assertNotIn("commands", self.shell("webhook:status('plain.localhost')"))

    # -- forms in messages

    def test_a_form_in_a_message_both_ways(self):
        id_ = self.alice.message("echo@bot.localhost", None, extra=submit(color="red", ok="true"))
        answer = self.alice.expect(lambda s: s.body and s.body.startswith("form data"))
        self.assertEqual(answer.body, 'form data {"color": "red", "ok": "true"}')
        posted = self.ws.wait_for(lambda r: (r["json"] or {}).get("id") == id_)["json"]
        self.assertEqual(posted["form"]["fields"][0], {"var": "color", "value": "red"})
        status, _, _ = self.push({"to": "alice@localhost/test", "body": "Poll",
                               "form": {"title": "Lunch?", "fields": [{"var": "ok", "type": "boolean"}]}})
        self.assertEqual(status, 202)
        poll = self.alice.expect(lambda s: s.body == "Poll")
        self.assertEqual(child(poll, "x", NS_DATA).find(f"{{{NS_DATA}}}title").text, "Lunch?")



@once_per_prosody
class PushedMenuTest(MenuTestCase):
    """The menu pushed; a Prosody of its own, as it restarts."""

    @classmethod
    def setUpClass(cls):
        cls.ws = cls.web_service(menu_bot)
        cls.start_prosody({"bot.localhost": {"component_post_url": cls.ws.url + "/",
                                             "component_post_commands": ["ping"],
                                             "component_push_token": TOKEN}}, http=True)

    def test_a_pushed_menu_replaces_the_configured_one_across_restart_and_reload(self):
        self.alice = self.connect("alice")
        self.assertEqual(self.items(), [("ping", "ping")])
        status, body, _ = self.push({"commands": [{"node": "weather", "name": "Weather"}, "ping"]})
        self.assertEqual((status, body), (200, {"commands": 2}))
        self.assertEqual(self.items(), [("weather", "Weather"), ("ping", "ping")])
        # Wrong types: 400 naming the key path, the menu left as it was.
        for menu, path in [([{"node": "a"}, {"name": "b"}], "commands[1].node"), ({"x": 1}, "'commands'"),
                           (["a", 3], "commands[1]"), (["a", "a"], "commands[1].node")]:
            status, body, _ = self.push({"commands": menu})
            self.assertEqual(status, 400, menu)
            self.assertIn(path, body["error"])
        self.assertEqual(self.items(), [("weather", "Weather"), ("ping", "ping")])
        self.prosody.reload_module("bot.localhost")
        self.assertEqual(self.items(), [("weather", "Weather"), ("ping", "ping")])
        self.prosody.stop()
        self.prosody.start()
        self.alice = self.connect("alice")
        self.assertEqual(self.items(), [("weather", "Weather"), ("ping", "ping")])
        status, body, _ = self.push({"commands": None})
        self.assertEqual((status, body), (200, {"commands": 1}))
        self.assertEqual(self.items(), [("ping", "ping")])
        self.prosody.stop()
        self.prosody.start()
        self.alice = self.connect("alice")
        self.assertEqual(self.items(), [("ping", "ping")], "null was kept too")

    def test_a_session_survives_a_reload(self):
        alice = self.connect("alice", "reload")
        self.push({"commands": ["weather", "ping"]})
        id_ = alice.iq("bot.localhost", "set", command_xml("weather"))
        sessionid = child(alice.expect_id(id_), "command", NS_COMMANDS).get("sessionid")
        self.prosody.reload_module("bot.localhost")
        id_ = alice.iq("bot.localhost", "set", command_xml("weather", "next", sessionid, submit(city="oslo")))
        done = child(alice.expect_id(id_), "command", NS_COMMANDS)
        self.assertEqual((done.get("status"), done.find(f"{{{NS_COMMANDS}}}note").text),
                         ("completed", "Sunny in oslo"))
        self.push({"commands": None})


if __name__ == "__main__":
    unittest.main()
