"""End-to-end: group chat (docs/contract.md §12) with Prosody's own MUC and
real clients. The component joins rooms from its config and when the web
service asks, POSTs what occupants say (not its own messages, not what a
join brings), answers in the room or privately, stays joined across
reloads and restarts, and does not undo a kick."""

import glob
import os
import subprocess
import sys
import time
import unittest

from harness import (MUC_DOMAIN, ROOT, SHELL_UNRELIABLE, ProsodyTestCase, stop_process, echo_handler, free_port, json_reply,
                     wait_for_port)

TOKEN = "rooms-push-token"
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
LOBBY = f"lobby@{MUC_DOMAIN}"


def join(client, room, nick):
    """Joins `room` as `nick` and waits for the room's own presence to us."""
    client.send(f"<presence to='{room}/{nick}'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>")
    client.expect(lambda s: s.name == "presence" and s.attr.get("from") == f"{room}/{nick}")


def say(client, room, body):
    client.send(f"<message to='{room}' type='groupchat'><body>{body}</body></message>")


class GroupChatTest(ProsodyTestCase):
    TOKEN = TOKEN

    def setUp(self):
        self.ws = self.web_service(echo_handler)
        self.start_prosody({"bot.localhost": {
            "component_post_url": self.ws.url + "/",
            "component_post_stanzas": ["message", "presence"],
            "component_post_rooms": [f"{LOBBY}/Bot", f"quiet@{MUC_DOMAIN}"],
            "component_post_max_rooms": 3,
            "component_push_token": TOKEN,
        }}, muc=True, metrics=True)
        self.wait_log(f"Joined room {LOBBY} as Bot")
        self.alice = self.connect("alice")

    def room_requests(self, room=LOBBY):
        """The room's messages the web service got."""
        return [r["json"] for r in self.ws.requests
                if (r["json"] or {}).get("room") == room and r["json"]["kind"] == "message"]

    def assert_echoed_in(self, room, body):
        say(self.alice, room, body)
        got = self.alice.expect(lambda s: s.attr.get("type") == "groupchat"
                                and s.body == f"Did you say {body}?")
        return got

    def test_configured_rooms_are_joined_with_their_nicks(self):
        self.wait_log(f"Joined room quiet@{MUC_DOMAIN} as bot")  # the domain's first label
        join(self.alice, LOBBY, "alice")
        self.assertTrue(self.alice.received(lambda s: s.name == "presence"
                                            and s.attr.get("from") == f"{LOBBY}/Bot"),
                        "alice sees the bot in the room")
        self.assertEqual(self.metric("rooms", host="bot.localhost"), 2)
        if not SHELL_UNRELIABLE:
            out = self.shell("webhook", "status", "bot.localhost")
            self.assertIn(f"in rooms: {LOBBY}/Bot, quiet@{MUC_DOMAIN}/bot", out)

    def test_room_messages_are_posted_and_answered_in_the_room(self):
        join(self.alice, LOBBY, "alice")
        got = self.assert_echoed_in(LOBBY, "hello bot")
        self.assertEqual(got.attr.get("from"), f"{LOBBY}/Bot")
        posted = [r for r in self.room_requests() if r.get("body") == "hello bot"]
        self.assertEqual(len(posted), 1)
        self.assertEqual((posted[0]["room_nick"], posted[0]["type"]), ("alice", "groupchat"))
        self.assertTrue(posted[0]["occupant_id"], "the room's XEP-0421 occupant id")
        # The room reflects the bot's answer back to it: never POSTed.
        self.assert_echoed_in(LOBBY, "barrier")
        self.assertEqual([r for r in self.room_requests() if r.get("room_nick") == "Bot"], [])

    def test_a_private_message_from_an_occupant_is_answered_privately(self):
        join(self.alice, LOBBY, "alice")
        self.alice.send(f"<message to='{LOBBY}/Bot' type='chat'><body>psst</body>"
                        f"<x xmlns='{NS_MUC_USER}'/></message>")
        got = self.alice.expect(lambda s: s.body == "Did you say psst?")
        self.assertEqual((got.attr.get("from"), got.attr.get("type")), (f"{LOBBY}/Bot", "chat"))

    def test_a_join_brings_no_history_and_its_subject_is_not_posted(self):
        room = f"history@{MUC_DOMAIN}"
        join(self.alice, room, "alice")
        self.alice.send(f"<message to='{room}' type='groupchat'><subject>the topic</subject></message>")
        for i in range(3):
            say(self.alice, room, f"old {i}")
        self.alice.expect(lambda s: s.body == "old 2")
        self.assertEqual(self.push({"kind": "presence", "to": f"{room}/Bot", "join": True})[0], 202)
        self.wait_log(f"Joined room {room} as Bot")
        self.assert_echoed_in(room, "now")
        bodies = [(r.get("body"), r.get("subject")) for r in self.room_requests(room)]
        self.assertEqual(bodies, [("now", None)], "only what was said after the join")

    def test_an_invitation_is_posted_and_answered_with_a_join(self):
        room = f"invited@{MUC_DOMAIN}"
        join(self.alice, room, "alice")

        def accept(request):
            invite = (request["json"] or {}).get("invite")
            if invite:
                return json_reply({"kind": "presence", "to": invite["room"] + "/Helper", "join": True})
            return echo_handler(request)
        self.ws.handler = accept
        self.alice.send(f"<message to='bot.localhost'><x xmlns='jabber:x:conference' jid='{room}' "
                        "reason='help us'/></message>")
        self.wait_log(f"Joined room {room} as Helper")
        self.alice.expect(lambda s: s.name == "presence" and s.attr.get("from") == f"{room}/Helper")
        self.assert_echoed_in(room, "welcome")

    def test_an_invitation_through_the_room_is_posted(self):
        room = f"mediated@{MUC_DOMAIN}"
        join(self.alice, room, "alice")
        self.alice.send(f"<message to='{room}'><x xmlns='{NS_MUC_USER}'><invite to='bot.localhost'>"
                        "<reason>come along</reason></invite></x></message>")
        posted = self.ws.wait_for(lambda r: "invite" in (r["json"] or {}))["json"]
        # A semi-anonymous room names the inviter by occupant JID.
        self.assertEqual(posted["invite"], {"room": room, "from": f"{room}/alice", "reason": "come along"})

    def test_rooms_joined_by_the_web_service_are_remembered_until_left(self):
        room = f"pushed@{MUC_DOMAIN}"
        self.assertEqual(self.push({"kind": "presence", "to": f"{room}/Helper", "join": True})[0], 202)
        self.wait_log(f"Joined room {room} as Helper")
        # Only the web service's rooms are remembered, not the configured ones.
        stored = glob.glob(os.path.join(self.prosody.dir, "data", "*", "component_http_rooms", "*.dat"))
        self.assertEqual([os.path.basename(f).split("%40")[0] for f in stored], ["pushed"], stored)
        self.prosody.stop()
        self.prosody.start()
        self.wait_log(f"Joined room {room} as Helper", 2)
        self.wait_log(f"Joined room {LOBBY} as Bot", 2)
        alice = self.connect("alice", "again")
        join(alice, room, "alice")
        say(alice, room, "still there")
        alice.expect(lambda s: s.body == "Did you say still there?")

        self.assertEqual(self.push({"kind": "presence", "to": f"{room}/Helper", "type": "unavailable"})[0], 202)
        self.wait_log(f"Leaving room {room}")
        self.prosody.stop()
        self.prosody.start()
        self.wait_log(f"Joined room {LOBBY} as Bot", 3)
        self.assertEqual(self.log().count(f"Joined room {room} as Helper"), 2, "forgotten once left")

    def test_it_stays_joined_across_a_reload_a_restart_and_a_room_service_reload(self):
        join(self.alice, LOBBY, "alice")
        self.prosody.reload_module("bot.localhost")
        self.assert_echoed_in(LOBBY, "after a reload")
        self.prosody.reload_module(MUC_DOMAIN, "muc")
        self.assert_echoed_in(LOBBY, "after the room service reloaded")
        self.prosody.stop()
        self.prosody.start()
        self.wait_log(f"Joined room {LOBBY} as Bot", 2)
        alice = self.connect("alice", "again")
        join(alice, LOBBY, "alice")
        say(alice, LOBBY, "after a restart")
        alice.expect(lambda s: s.body == "Did you say after a restart?")

    def moderate(self, room, item):
        """alice makes `room` (so she owns it), the web service has the bot
        join it, then alice changes the bot's role or affiliation: `item`."""
        join(self.alice, room, "alice")
        self.assertEqual(self.push({"kind": "presence", "to": f"{room}/Bot", "join": True})[0], 202)
        self.wait_log(f"Joined room {room} as Bot")
        self.alice.send(f"<iq type='set' to='{room}' id='moderate'><query xmlns='{NS_MUC}#admin'>"
                        f"{item}</query></iq>")
        self.alice.expect_id("moderate")

    def test_a_kick_is_not_undone_and_is_posted(self):
        room = f"strict@{MUC_DOMAIN}"
        self.moderate(room, "<item nick='Bot' role='none'><reason>go away</reason></item>")
        self.wait_log(f"Left room {room}: kicked; not joining again")
        posted = self.ws.wait_for(lambda r: (r["json"] or {}).get("kind") == "presence"
                                  and (r["json"] or {}).get("room") == room
                                  and (r["json"] or {}).get("room_nick") == "Bot")
        self.assertEqual(posted["json"]["type"], "unavailable")
        self.assertIn("status code='307'", posted["json"]["stanza"])
        time.sleep(2)  # a rejoin would come after a 1 s backoff
        self.assertEqual(self.log().count(f"Joined room {room} as Bot"), 1)

    def test_a_ban_is_not_undone_and_the_room_is_forgotten(self):
        room = f"banned@{MUC_DOMAIN}"
        self.moderate(room, "<item jid='bot.localhost' affiliation='outcast'/>")
        self.wait_log(f"Left room {room}: banned; not joining again")
        self.prosody.stop()
        self.prosody.start()
        self.wait_log(f"Joined room {LOBBY} as Bot", 2)
        self.assertEqual(self.log().count(f"Joined room {room} as Bot"), 1, "forgotten: not joined at start")

    def test_the_rooms_a_host_is_in_are_capped(self):
        # Two configured, a cap of three: one more, and no further.
        self.assertEqual(self.push({"kind": "presence", "to": f"third@{MUC_DOMAIN}/Bot", "join": True})[0], 202)
        self.wait_log(f"Joined room third@{MUC_DOMAIN} as Bot")
        status, answer, _ = self.push({"kind": "presence", "to": f"fourth@{MUC_DOMAIN}/Bot", "join": True})
        self.assertEqual(status, 400)
        self.assertIn("more rooms than component_post_max_rooms = 3", answer["error"])
        # An invitation answered with a join: an invalid reply, said to the inviter.
        self.ws.handler = lambda r: (json_reply({"kind": "presence", "to": r["json"]["invite"]["room"] + "/Bot",
                                                 "join": True}) if "invite" in (r["json"] or {}) else echo_handler(r))
        self.alice.send(f"<message to='bot.localhost' id='inv'><x xmlns='jabber:x:conference' "
                        f"jid='fifth@{MUC_DOMAIN}'/></message>")
        error = self.alice.expect_id("inv").error()
        self.assertEqual(error[1], "internal-server-error")
        self.assertIn("more rooms than component_post_max_rooms = 3", error[2])
        self.assertEqual(self.metric("rooms", host="bot.localhost"), 3)
        self.assertNotIn("Joined room fourth", self.log())
        self.assertNotIn("Joined room fifth", self.log())

    # The bot is never kicked by an error it sends (Prosody's MUC kicks an
    # occupant that sends a message or presence error into the room).

    def assert_not_kicked(self, room=LOBBY):
        kicked = self.alice.received(lambda s: s.name == "presence" and s.attr.get("from") == f"{room}/Bot"
                                     and s.attr.get("type") == "unavailable")
        self.assertEqual(kicked, [], "the bot left the room")
        self.assertEqual(self.log().count(f"Out of room {room}"), 0)

    def test_a_failing_web_service_does_not_get_the_bot_kicked(self):
        join(self.alice, LOBBY, "alice")

        def failing(request):
            if (request["json"] or {}).get("body") == "fail":
                return json_reply({"error": "oops"}, status=500)
            return echo_handler(request)
        self.ws.handler = failing
        say(self.alice, LOBBY, "fail")
        self.wait_log(r"POST for message id=\S+ from " + LOBBY + r"/alice failed: .*no error sent to the room")
        self.assert_echoed_in(LOBBY, "still here")
        self.assert_not_kicked()
        errors = self.alice.received(lambda s: s.attr.get("type") == "error")
        self.assertEqual(errors, [])
        self.assertEqual(self.metric("errors_withheld_total", host="bot.localhost"), 1)

    def test_a_room_message_the_module_cannot_read_is_logged_and_reaches_everyone_else(self):
        join(self.alice, LOBBY, "alice")
        others = [self.connect(user, f"r{i}") for i, user in enumerate(("bob", "carol", "bob", "carol"))]
        for i, other in enumerate(others):
            join(other, LOBBY, f"other{i}")
        deep = "<x xmlns='urn:example:deep'>" * 70 + "</x>" * 70
        self.alice.send(f"<message to='{LOBBY}' type='groupchat' id='deep'><body>deep</body>{deep}</message>")
        self.wait_log(r"Could not forward <message .*nested too deeply.*no error sent to the room")
        for other in others:
            other.expect(lambda s: s.body == "deep")
        self.assert_echoed_in(LOBBY, "after the deep one")
        self.assert_not_kicked()
        self.assertNotIn("Traceback", self.log())
        self.assertEqual(self.metric("errors_withheld_total", host="bot.localhost"), 1)

    def test_a_room_presence_the_module_cannot_read_gets_no_error(self):
        join(self.alice, LOBBY, "alice")
        deep = "<x xmlns='urn:example:deep'>" * 70 + "</x>" * 70
        self.alice.send(f"<presence to='{LOBBY}/alice'><status>deep</status>{deep}</presence>")
        self.wait_log(r"Could not forward <presence .*nested too deeply.*no error sent to the room")
        self.assert_echoed_in(LOBBY, "after the deep presence")
        self.assert_not_kicked()
        self.assertNotIn("Traceback", self.log())

    def test_an_iq_error_to_an_occupant_is_still_sent(self):
        # An IQ get must be answered (RFC 6120), and the room only passes an
        # IQ error on: the bot stays.
        join(self.alice, LOBBY, "alice")
        self.alice.send(f"<iq type='get' to='{LOBBY}/Bot' id='q1'><query xmlns='urn:example:unknown'/></iq>")
        got = self.alice.expect_id("q1")
        self.assertEqual(got.attr.get("type"), "error")
        self.assert_echoed_in(LOBBY, "after the iq")
        self.assert_not_kicked()


if __name__ == "__main__":
    unittest.main()


class ExampleBotTest(ProsodyTestCase):
    """examples/echo_bot.py with the structured keys: it reacts 👍 to
    thanks, shows it is typing (component_post_typing) while it thinks, and joins a room
    it is invited to."""

    def setUp(self):
        port = free_port()
        self.start_prosody({"example.localhost": {
            "component_post_url": f"http://127.0.0.1:{port}/", "component_push_token": TOKEN,
            "component_post_typing": 0.5,
        }}, muc=True, http=True, start=False)
        bot = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "examples", "echo_bot.py"), "--port", str(port),
             "--push-url", f"http://127.0.0.1:{self.prosody.http_port}/component_http",
             "--push-host", "example.localhost", "--push-token", TOKEN], stdout=subprocess.DEVNULL)
        self.addCleanup(stop_process, bot)
        wait_for_port(port, bot)
        self.prosody.start()
        self.alice = self.connect("alice")

    def test_reacts_to_thanks(self):
        id_ = self.alice.message("echo@example.localhost", "thanks, bot")
        got = self.alice.expect(lambda s: s.attr.get("from") == "echo@example.localhost")
        reactions = got.child("reactions", "urn:xmpp:reactions:0")
        self.assertEqual((reactions.get("id"), [r.text for r in reactions]), (id_, ["👍"]))

    def test_shows_typing_then_answers(self):
        # The example thinks 2 s over "think …": the module shows it typing.
        self.alice.message("echo@example.localhost", "think it over")
        typing = self.alice.expect(lambda s: s.attr.get("from") == "echo@example.localhost")
        self.assertIsNone(typing.body)
        self.assertIsNotNone(typing.child("composing", "http://jabber.org/protocol/chatstates"))
        answer = self.alice.expect(lambda s: s.attr.get("from") == "echo@example.localhost")
        self.assertEqual(answer.body, "Did you say think it over?")
        self.assertIsNotNone(answer.child("active", "http://jabber.org/protocol/chatstates"))

    def test_joins_no_room_on_another_server(self):
        self.alice.send("<message to='echo@example.localhost' id='far'><x xmlns='jabber:x:conference' "
                        "jid='party@conference.elsewhere.example'/></message>")
        got = self.alice.expect(lambda s: s.attr.get("from") == "echo@example.localhost" and s.body)
        self.assertEqual(got.body, "I only join rooms on localhost, *.localhost")
        self.assertNotIn("party@conference.elsewhere.example/EchoBot", self.log(), "no join was sent")

    def test_joins_a_room_it_is_invited_to(self):
        room = f"party@{MUC_DOMAIN}"
        join(self.alice, room, "alice")
        self.alice.send(f"<message to='echo@example.localhost'><x xmlns='jabber:x:conference' jid='{room}'/></message>")
        self.wait_log(f"Joined room {room} as EchoBot")
        say(self.alice, room, "hi all")
        got = self.alice.expect(lambda s: s.body == "Did you say hi all?")
        self.assertEqual(got.attr.get("from"), f"{room}/EchoBot")
