"""End-to-end: bots that feel alive (docs/contract.md §15–§16). A face:
the module answers vcard-temp with the configured name and avatar, every
available presence the component sends carries the avatar's hash
(XEP-0153), disco#info names the bot; a bad avatar fails the load. Who
may talk: only the JIDs and domains of component_post_allow are POSTed;
others get forbidden or unsubscribed, rooms are judged as rooms."""

import base64
import hashlib
import os
import time
import unittest

from harness import (MUC_DOMAIN, ComponentClient, ProsodyTestCase, echo_handler, json_reply, ndjson_stream,
                     once_per_prosody)

NS_VCARD = "vcard-temp"
NS_UPDATE = "vcard-temp:x:update"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_MUC = "http://jabber.org/protocol/muc"
LOBBY = f"lobby@{MUC_DOMAIN}"
AVATAR = bytes.fromhex("89504e470d0a1a0a") + os.urandom(3000)
SHA1 = hashlib.sha1(AVATAR).hexdigest()
TOKEN = "alive-tests-push-token"


def face_bot(request):
    """Answers "presence" with an available presence of its own."""
    if (request["json"] or {}).get("body") == "presence":
        return json_reply({"kind": "presence"})
    return echo_handler(request)


def photo_of(stanza):
    update = stanza.child("x", NS_UPDATE)
    photo = update.find(f"{{{NS_UPDATE}}}photo") if update is not None else None
    return None if photo is None else photo.text


@once_per_prosody
class FaceTest(ProsodyTestCase):
    @classmethod
    def setUpClass(cls):
        cls.ws = cls.web_service(face_bot)
        url = cls.ws.url + "/"
        prosody = cls.start_prosody({
            "bot.localhost": {"component_post_url": url, "component_post_name": "Helper",
                              "component_post_avatar": "faces/bot.png",
                              "component_post_stanzas": ["message", "iq"],
                              "component_post_rooms": [f"{LOBBY}/Helper"]},
            "named.localhost": {"component_post_url": url, "component_post_name": "Named only"},
            "plain.localhost": {"component_post_url": url},
            "noface.localhost": {"component_post_url": url, "component_post_avatar": "faces/missing.png"},
            "textface.localhost": {"component_post_url": url, "component_post_avatar": "faces/face.txt"},
        }, muc=True, start=False)
        # Relative to the config file's folder.
        os.makedirs(os.path.join(prosody.dir, "faces"))
        with open(os.path.join(prosody.dir, "faces", "bot.png"), "wb") as f:
            f.write(AVATAR)
        with open(os.path.join(prosody.dir, "faces", "face.txt"), "w") as f:
            f.write("not an image")
        prosody.start()
        cls.alice = cls.connect("alice")

    def vcard_of(self, jid):
        id_ = self.alice.iq(jid, "get", f"<vCard xmlns='{NS_VCARD}'/>")
        return self.alice.expect_id(id_)

    def test_the_vcard_has_the_name_and_the_avatar_at_any_jid_of_the_domain(self):
        before = len(self.ws.requests)
        for jid in ("bot.localhost", "helper@bot.localhost", "helper@bot.localhost/res"):
            with self.subTest(jid=jid):
                answer = self.vcard_of(jid)
                self.assertEqual(answer.attr.get("type"), "result", answer)
                vcard = answer.child("vCard", NS_VCARD)
                self.assertEqual(vcard.find(f"{{{NS_VCARD}}}FN").text, "Helper")
                photo = vcard.find(f"{{{NS_VCARD}}}PHOTO")
                self.assertEqual(photo.find(f"{{{NS_VCARD}}}TYPE").text, "image/png")
                self.assertEqual(base64.b64decode(photo.find(f"{{{NS_VCARD}}}BINVAL").text), AVATAR)
        self.assertEqual(len(self.ws.requests), before, "answered by the module, though IQs are forwarded")

    def test_a_name_alone_gives_a_vcard_without_photo_and_no_face_none(self):
        vcard = self.vcard_of("named.localhost").child("vCard", NS_VCARD)
        self.assertEqual(vcard.find(f"{{{NS_VCARD}}}FN").text, "Named only")
        self.assertIsNone(vcard.find(f"{{{NS_VCARD}}}PHOTO"))
        self.assertEqual(self.vcard_of("plain.localhost").error()[:2], ("cancel", "service-unavailable"))

    def test_disco_names_the_bot_and_announces_vcards(self):
        for jid, name, vcard in (("named.localhost", "Named only", True),
                                 ("plain.localhost", "plain.localhost", False)):
            with self.subTest(jid=jid):
                answer = self.alice.expect_id(self.alice.iq(jid, "get", f"<query xmlns='{NS_DISCO_INFO}'/>"))
                query = answer.child("query", NS_DISCO_INFO)
                self.assertEqual(query.find(f"{{{NS_DISCO_INFO}}}identity").get("name"), name)
                features = [f.get("var") for f in query.findall(f"{{{NS_DISCO_INFO}}}feature")]
                self.assertEqual(NS_VCARD in features, vcard, features)

    def test_every_available_presence_carries_the_avatar_hash(self):
        # The module's own answer to a probe.
        self.alice.send("<presence to='helper@bot.localhost' type='probe'/>")
        probe = self.alice.expect(lambda s: s.name == "presence" and s.attr.get("from") == "helper@bot.localhost/default")
        self.assertEqual(photo_of(probe), SHA1)
        # The web service's own presence.
        self.alice.message("helper@bot.localhost", "presence")
        own = self.alice.expect(lambda s: s.name == "presence" and s.attr.get("from") == "helper@bot.localhost"
                                and "type" not in s.attr)
        self.assertEqual(photo_of(own), SHA1)
        # Without an avatar: no update element.
        self.alice.send("<presence to='x@named.localhost' type='probe'/>")
        plain = self.alice.expect(lambda s: s.name == "presence" and s.attr.get("from") == "x@named.localhost/default")
        self.assertIsNone(plain.child("x", NS_UPDATE))

    def test_the_room_sees_the_avatar_in_the_bots_join(self):
        self.wait_log(f"Joined room {LOBBY} as Helper")
        self.alice.send(f"<presence to='{LOBBY}/alice'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>")
        bot = self.alice.expect(lambda s: s.name == "presence" and s.attr.get("from") == f"{LOBBY}/Helper")
        self.assertEqual(photo_of(bot), SHA1)

    def test_an_unusable_avatar_fails_the_load_with_one_line(self):
        log = self.log().splitlines()
        for host, needle in (("noface.localhost", "faces/missing.png\": No such file"),
                             ("textface.localhost", "not a PNG, JPEG, GIF or WebP image")):
            with self.subTest(host=host):
                lines = [l for l in log if f"on '{host}'" in l and "Error initializing" in l]
                self.assertEqual(len(lines), 1, lines)
                self.assertIn("component_post_avatar = ", lines[0])
                self.assertIn(needle, lines[0])


@once_per_prosody
class AllowTest(ProsodyTestCase):
    TOKEN = TOKEN

    @classmethod
    def setUpClass(cls):
        cls.ws = cls.web_service(echo_handler)
        url = cls.ws.url + "/"
        cls.start_prosody({
            "bot.localhost": {"component_post_url": url, "component_post_stanzas": ["message", "iq"],
                              "component_post_allow": ["alice@localhost", "friends.localhost"],
                              "component_push_token": TOKEN,
                              "component_post_commands": ["ping"],
                              "component_post_rooms": [f"{LOBBY}/Guard"]},
            "open.localhost": {"component_post_url": url},
            "badallow.localhost": {"component_post_url": url, "component_post_allow": ["alice@localhost/phone"]},
        }, muc=True, metrics=True,
            external={"friends.localhost": "friend-secret", "sub.friends.localhost": "friend-secret"})
        cls.alice, cls.bob = cls.connect("alice"), cls.connect("bob")

    def posted_from(self, user):
        return [r for r in self.ws.requests if r["json"]["from"].startswith(f"{user}@")]

    def test_a_listed_jid_talks_and_others_are_refused_before_any_post(self):
        self.alice.message("x@bot.localhost", "hello")
        self.assertEqual(self.alice.expect(lambda s: s.body is not None).body, "Did you say hello?")
        id_ = self.bob.message("x@bot.localhost", "let me in")
        error = self.bob.expect_id(id_)
        self.assertEqual(error.error()[:2], ("auth", "forbidden"), error)
        iq = self.bob.expect_id(self.bob.iq("x@bot.localhost", "get", "<query xmlns='urn:example:q'/>"))
        self.assertEqual(iq.error()[:2], ("auth", "forbidden"), iq)
        step = self.bob.expect_id(self.bob.iq("bot.localhost", "set",
                                              "<command xmlns='http://jabber.org/protocol/commands' node='ping'/>"))
        self.assertEqual(step.error()[:2], ("auth", "forbidden"), step)
        self.assertEqual(self.posted_from("bob"), [], "nothing of bob's is POSTed")
        # Open to everyone: the module's own answers.
        ping = self.bob.expect_id(self.bob.iq("bot.localhost", "get", "<ping xmlns='urn:xmpp:ping'/>"))
        self.assertEqual(ping.attr.get("type"), "result")
        self.bob.send("<presence to='x@bot.localhost' type='probe'/>")
        self.bob.expect(lambda s: s.name == "presence" and s.attr.get("from") == "x@bot.localhost/default")
        # Another host without the option: everyone, as before.
        self.bob.message("x@open.localhost", "hi")
        self.assertEqual(self.bob.expect(lambda s: s.body is not None).body, "Did you say hi?")
        self.assertGreaterEqual(self.metric("disallowed_total", host="bot.localhost", kind="message"), 1)
        self.assertGreaterEqual(self.metric("disallowed_total", host="bot.localhost", kind="iq"), 2)

    def test_a_listed_domain_is_allowed_but_not_its_subdomains(self):
        for domain, allowed in (("friends.localhost", True), ("sub.friends.localhost", False)):
            with self.subTest(domain=domain):
                component = ComponentClient(self.prosody.component_port, domain, "friend-secret").connect()
                self.addCleanup(component.sock.close)
                component.sock.sendall(f"<message from='pal@{domain}/r' to='x@bot.localhost' id='d1' "
                                       "type='chat'><body>hi from a friend</body></message>".encode())
                got = component.sock.recv(65536).decode()
                if allowed:
                    self.assertIn("Did you say hi from a friend?", got)
                else:
                    self.assertIn("<forbidden", got)
        self.assertEqual([r["json"]["from"] for r in self.ws.requests if "friends" in r["json"]["from"]],
                         ["pal@friends.localhost/r"])

    def test_the_answer_of_a_pushed_iq_is_judged_by_the_iq_it_answers(self):
        # The server's domain is not in the list; its answer to a pushed
        # ping still reaches the push caller.
        status, answer, _ = self.push({"to": "localhost", "kind": "iq", "type": "get",
                                       "stanza": "<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>"})
        self.assertEqual((status, answer.get("type")), (200, "result"), answer)

    def test_a_subscription_from_a_stranger_is_refused(self):
        bob = self.connect("bob", "roster")
        bob.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
        bob.expect_id("roster")
        bob.send("<presence/>")
        bob.send("<presence to='x@bot.localhost/any' type='subscribe'/>")
        refused = bob.expect(lambda s: s.name == "presence" and s.attr.get("type") == "unsubscribed")
        self.assertEqual(refused.attr["from"], "x@bot.localhost")
        self.assertGreaterEqual(self.metric("disallowed_total", host="bot.localhost", kind="presence"), 1)

    def test_room_messages_are_judged_by_the_room(self):
        self.wait_log(f"Joined room {LOBBY} as Guard")
        for client, nick in ((self.alice, "alice"), (self.bob, "bob")):
            client.send(f"<presence to='{LOBBY}/{nick}'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>")
            client.expect(lambda s, n=nick: s.name == "presence" and s.attr.get("from") == f"{LOBBY}/{n}")
        self.bob.send(f"<message to='{LOBBY}' type='groupchat'><body>hello guard</body></message>")
        said = self.bob.expect(lambda s: s.attr.get("from") == f"{LOBBY}/Guard" and s.body is not None)
        self.assertEqual(said.body, "Did you say hello guard?")
        # A private message through the room: judged by the room too.
        self.bob.send(f"<message to='{LOBBY}/Guard' type='chat'><body>psst</body>"
                      "<x xmlns='http://jabber.org/protocol/muc#user'/></message>")
        private = self.bob.expect(lambda s: s.attr.get("from") == f"{LOBBY}/Guard" and s.body == "Did you say psst?")
        self.assertEqual(private.attr.get("type"), "chat")

    def test_a_full_jid_in_the_list_fails_the_load(self):
        lines = [l for l in self.log().splitlines() if "on 'badallow.localhost'" in l and "Error initializing" in l]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn('component_post_allow = "alice@localhost/phone" must be a bare JID or a domain', lines[0])


NS_RETRACT = "urn:xmpp:message-retract:1"


def retract_bot(request):
    """Retracts what "undo <id>" names; says the ids it is told of."""
    body = (request["json"] or {}).get("body") or ""
    if body.startswith("undo "):
        return json_reply({"retract": body[5:]})
    if body == "say oops":
        return json_reply({"body": "oops", "id": "bot-oops"})
    if body == "undo-with-body":
        return json_reply({"retract": "m1", "body": "and some text"})
    return echo_handler(request)


@once_per_prosody
class RetractTest(ProsodyTestCase):
    @classmethod
    def setUpClass(cls):
        cls.ws = cls.web_service(retract_bot)
        cls.start_prosody({"bot.localhost": {"component_post_url": cls.ws.url + "/",
                                             "component_post_rooms": [f"{LOBBY}/Bot"]}}, muc="mam")
        cls.alice = cls.connect("alice")

    def test_a_retraction_is_posted_as_retract(self):
        self.alice.message("x@bot.localhost", None, extra=f"<retract xmlns='{NS_RETRACT}' id='gone-1'/>"
                           "<body>This person attempted to retract a previous message</body>")
        request = self.ws.wait_for(lambda r: r["json"].get("retract") == "gone-1")
        self.assertEqual(request["json"]["kind"], "message")

    def test_a_reply_retracts_with_the_fallback_and_a_store_hint(self):
        self.alice.message("x@bot.localhost", "undo bot-7")
        got = self.alice.expect(lambda s: s.child("retract", NS_RETRACT) is not None)
        self.assertEqual(got.child("retract", NS_RETRACT).get("id"), "bot-7")
        self.assertTrue(got.body.startswith("This person attempted to retract a previous message"), got)
        self.assertEqual(got.child("fallback", "urn:xmpp:fallback:0").get("for"), NS_RETRACT)
        self.assertIsNotNone(got.child("store", "urn:xmpp:hints"))
        id_ = self.alice.message("x@bot.localhost", "undo-with-body")
        error = self.alice.expect_id(id_)
        self.assertIn("invalid reply: 'retract' cannot go with 'body'", error.error()[2])

    def test_room_messages_carry_the_rooms_stanza_id(self):
        self.wait_log(f"Joined room {LOBBY} as Bot")
        self.alice.send(f"<presence to='{LOBBY}/alice'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>")
        self.alice.expect(lambda s: s.name == "presence" and s.attr.get("from") == f"{LOBBY}/alice")
        self.alice.send(f"<message to='{LOBBY}' type='groupchat' id='a-1'><body>with an id</body></message>")
        mine = self.alice.expect(lambda s: s.attr.get("from") == f"{LOBBY}/alice" and s.body == "with an id")
        room_id = mine.child("stanza-id", "urn:xmpp:sid:0").get("id")
        request = self.ws.wait_for(lambda r: r["json"].get("body") == "with an id")
        self.assertEqual(request["json"]["stanza_id"], room_id)
        self.assertNotEqual(room_id, "a-1")

    def test_in_a_room_the_bot_retracts_its_message_by_the_id_it_gave_it(self):
        self.wait_log(f"Joined room {LOBBY} as Bot")
        alice = self.connect("alice", "room")
        alice.send(f"<presence to='{LOBBY}/alice2'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>")
        alice.expect(lambda s: s.name == "presence" and s.attr.get("from") == f"{LOBBY}/alice2")
        alice.send(f"<message to='{LOBBY}' type='groupchat'><body>say oops</body></message>")
        oops = alice.expect(lambda s: s.attr.get("from") == f"{LOBBY}/Bot" and s.body == "oops")
        room_id = oops.child("stanza-id", "urn:xmpp:sid:0").get("id")
        alice.send(f"<message to='{LOBBY}' type='groupchat'><body>undo bot-oops</body></message>")
        retraction = alice.expect(lambda s: s.attr.get("from") == f"{LOBBY}/Bot"
                                  and s.child("retract", NS_RETRACT) is not None)
        self.assertEqual(retraction.child("retract", NS_RETRACT).get("id"), room_id,
                         "clients in a room know the message by the room's id")


QUIET = f"quiet@{MUC_DOMAIN}"
CHATTY = f"chatty@{MUC_DOMAIN}"


@once_per_prosody
class MentionsTest(ProsodyTestCase):
    TOKEN = TOKEN

    @classmethod
    def setUpClass(cls):
        cls.ws = cls.web_service(echo_handler)
        cls.start_prosody({"bot.localhost": {
            "component_post_url": cls.ws.url + "/", "component_push_token": TOKEN,
            "component_post_rooms": [{"jid": f"{QUIET}/Helper", "mentions_only": True}, f"{CHATTY}/Helper"],
        }}, muc=True, http=True)
        cls.alice = cls.connect("alice")
        for room in (QUIET, CHATTY):
            cls.prosody_log_wait(f"Joined room {room} as Helper")
            cls.alice.send(f"<presence to='{room}/alice'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>")
            cls.alice.expect(lambda s, r=room: s.name == "presence" and s.attr.get("from") == f"{r}/alice")

    @classmethod
    def prosody_log_wait(cls, text):
        import time
        for _ in range(300):
            if text in cls.prosody.log():
                return
            time.sleep(0.05)
        raise AssertionError(f"not in the log: {text}")

    def say(self, room, body, extra=""):
        self.alice.send(f"<message to='{room}' type='groupchat'><body>{body}</body>{extra}</message>")

    def answer(self, room, body):
        """Waits for the bot's echo of `body` in `room`."""
        return self.alice.expect(lambda s: s.attr.get("from") == f"{room}/Helper"
                                 and s.body == f"Did you say {body}?")

    def request_of(self, body):
        return self.ws.wait_for(lambda r: r["json"].get("body") == body)["json"]

    def test_a_mentions_only_room_posts_what_mentions_the_bot(self):
        for body in ("helper, what time is it", "hey @Helper", "HELPER: status"):
            with self.subTest(body=body):
                self.say(QUIET, body)
                self.answer(QUIET, body)
                self.assertIs(self.request_of(body)["mentioned"], True)
        ref = (f"<reference xmlns='urn:xmpp:reference:0' type='mention' begin='0' end='2' "
               f"uri='xmpp:{QUIET}/Helper'/>")
        self.say(QUIET, "you there", ref)
        self.answer(QUIET, "you there")
        self.assertIs(self.request_of("you there")["mentioned"], True)
        # Not a mention: not POSTed. A mention after it is the barrier.
        self.say(QUIET, "helpers are nice, says nobody")
        self.say(QUIET, "thanks helper")
        self.answer(QUIET, "thanks helper")
        self.assertEqual([r for r in self.ws.requests if r["json"].get("body") == "helpers are nice, says nobody"],
                         [])

    def test_other_rooms_post_everything_and_say_mentioned(self):
        self.say(CHATTY, "just chatting")
        self.answer(CHATTY, "just chatting")
        self.assertNotIn("mentioned", self.request_of("just chatting"))
        self.say(CHATTY, "@Helper hi")
        self.answer(CHATTY, "@Helper hi")
        self.assertIs(self.request_of("@Helper hi")["mentioned"], True)

    def test_private_messages_through_the_room_are_always_posted(self):
        self.alice.send(f"<message to='{QUIET}/Helper' type='chat'><body>a secret</body>"
                        "<x xmlns='http://jabber.org/protocol/muc#user'/></message>")
        self.alice.expect(lambda s: s.attr.get("from") == f"{QUIET}/Helper" and s.body == "Did you say a secret?")
        self.assertNotIn("mentioned", self.request_of("a secret"))

    def test_a_pushed_join_may_ask_for_mentions_only(self):
        room = f"pushed@{MUC_DOMAIN}"
        status, answer, _ = self.push({"kind": "presence", "to": f"{room}/Helper", "join": True,
                                       "mentions_only": True})
        self.assertEqual(status, 202, answer)
        self.prosody_log_wait(f"Joined room {room} as Helper")
        self.alice.send(f"<presence to='{room}/alice'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>")
        self.alice.expect(lambda s: s.name == "presence" and s.attr.get("from") == f"{room}/alice")
        self.say(room, "nobody mentions")
        self.say(room, "Helper?")
        self.answer(room, "Helper?")
        self.assertEqual([r for r in self.ws.requests if r["json"].get("body") == "nobody mentions"], [])
        self.assertNotIn("urn:x-mod-component-http", self.prosody.log())
        # Remembered as it was joined, across a reload.
        self.prosody.reload_module("bot.localhost")
        self.wait_log(f"Joined room {room} as Helper", 2)
        self.say(room, "still nobody")
        self.say(room, "Helper, again?")
        self.answer(room, "Helper, again?")
        self.assertEqual([r for r in self.ws.requests if r["json"].get("body") == "still nobody"], [])


NS_CHATSTATES = "http://jabber.org/protocol/chatstates"


def thinking_bot(request):
    """Thinks 1.5 s before answering "slow …", and before failing "fail"."""
    body = (request["json"] or {}).get("body") or ""
    if body.startswith("slow") or body == "fail" or body == "paused":
        time.sleep(1.5)
    if body == "fail":
        return 500, {}, b"oops"
    if body == "paused":
        return json_reply({"body": "hmm", "state": "paused"})
    return echo_handler(request)


def state_of(stanza):
    return next((c.tag.split("}")[1] for c in stanza.el if c.tag.startswith(f"{{{NS_CHATSTATES}}}")), None)


class TypingTest(ProsodyTestCase):
    @classmethod
    def setUpClass(cls):
        cls.ws = cls.web_service(thinking_bot)
        cls.start_prosody({"bot.localhost": {"component_post_url": cls.ws.url + "/", "component_post_typing": 0.5,
                                             "component_post_retries": 0,
                                             "component_post_rooms": [f"{LOBBY}/Bot"]},
                           "quiet.localhost": {"component_post_url": cls.ws.url + "/"}}, muc=True)
        cls.alice = cls.connect("alice")

    def from_bot(self, client, jid):
        return [s for s in client.received(lambda s: s.attr.get("from") == jid)]

    def test_a_slow_answer_shows_composing_then_the_reply_with_active(self):
        to = "slow@bot.localhost"
        self.alice.message(to, "slow question")
        composing = self.alice.expect(lambda s: s.attr.get("from") == to)
        self.assertEqual((state_of(composing), composing.body, composing.attr.get("type")), ("composing", None, "chat"))
        reply = self.alice.expect(lambda s: s.attr.get("from") == to)
        self.assertEqual((reply.body, state_of(reply)), ("Did you say slow question?", "active"))
        self.barrier(self.alice, to=to)
        self.assertEqual(self.from_bot(self.alice, to), [], "composing once, active once")

    def test_a_fast_answer_shows_neither(self):
        to = "fast@bot.localhost"
        self.alice.message(to, "quick")
        reply = self.alice.expect(lambda s: s.attr.get("from") == to)
        self.assertEqual((reply.body, state_of(reply)), ("Did you say quick?", None))

    def test_an_error_after_composing_is_followed_by_active(self):
        to = "err@bot.localhost"
        id_ = self.alice.message(to, "fail")
        first = self.alice.expect(lambda s: s.attr.get("from") == to)
        self.assertEqual(state_of(first), "composing")
        error = self.alice.expect(lambda s: s.attr.get("from") == to)
        self.assertEqual((error.attr.get("type"), error.attr.get("id")), ("error", id_))
        active = self.alice.expect(lambda s: s.attr.get("from") == to)
        self.assertEqual((state_of(active), active.body), ("active", None))

    def test_a_reply_with_its_own_state_keeps_it(self):
        to = "own@bot.localhost"
        self.alice.message(to, "paused")
        self.assertEqual(state_of(self.alice.expect(lambda s: s.attr.get("from") == to)), "composing")
        reply = self.alice.expect(lambda s: s.attr.get("from") == to)
        self.assertEqual((reply.body, state_of(reply)), ("hmm", "paused"))
        self.barrier(self.alice, to=to)
        self.assertEqual(self.from_bot(self.alice, to), [])

    def test_without_the_option_no_chat_states(self):
        to = "slow@quiet.localhost"
        self.alice.message(to, "slow too")
        reply = self.alice.expect(lambda s: s.attr.get("from") == to)
        self.assertEqual((reply.body, state_of(reply)), ("Did you say slow too?", None))

    def test_a_room_sees_the_bot_typing(self):
        self.wait_log(f"Joined room {LOBBY} as Bot")
        self.alice.send(f"<presence to='{LOBBY}/alice'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>")
        self.alice.expect(lambda s: s.name == "presence" and s.attr.get("from") == f"{LOBBY}/alice")
        self.alice.send(f"<message to='{LOBBY}' type='groupchat'><body>slow room</body></message>")
        said = lambda s: s.name == "message" and s.attr.get("from") == f"{LOBBY}/Bot"  # noqa: E731
        typing = self.alice.expect(said)
        self.assertEqual((state_of(typing), typing.attr.get("type")), ("composing", "groupchat"))
        reply = self.alice.expect(said)
        self.assertEqual((reply.body, state_of(reply)), ("Did you say slow room?", "active"))


NS_CORRECTION = "urn:xmpp:message-correct:0"
WORDS = [f"word{i}" for i in range(1, 21)]


def story(n):
    return " ".join(WORDS[:n])


def streaming_bot(request):
    """Streams a story of 20 words over 2 s for "story"; cuts it after 5
    lines for "cut"; a first line not JSON for "garbage"; streams to IQs."""
    payload = request["json"] or {}
    body = payload.get("body")
    lines = [{"body": story(n)} for n in range(1, 21)]
    if payload.get("kind") == "iq":
        return ndjson_stream(lines[:2])
    if body in ("story", "slow story") or (body or "").startswith("@Bot"):
        return ndjson_stream(lines)
    if body == "cut":
        return ndjson_stream(lines, cut_after=5)
    if body == "garbage":
        return ndjson_stream([b"this is not json\n"] + lines)
    return echo_handler(request)


class StreamTest(ProsodyTestCase):
    @classmethod
    def setUpClass(cls):
        cls.ws = cls.web_service(streaming_bot)
        url = cls.ws.url + "/"
        cls.start_prosody({
            "bot.localhost": {"component_post_url": url, "component_post_stream_interval": 0.5,
                              "component_post_stanzas": ["message", "iq"],
                              "component_post_rooms": [f"{LOBBY}/Bot"]},
            "short.localhost": {"component_post_url": url, "component_post_timeout": 1,
                                "component_post_stream_interval": 0.5},
            "brief.localhost": {"component_post_url": url, "component_post_stream_timeout": 1},
        }, muc=True)
        cls.alice = cls.connect("alice")

    def messages_until_final(self, client, frm, final):
        """Every message from `frm` until one whose body is `final`."""
        got = []
        while not got or got[-1].body != final:
            got.append(client.expect(lambda s: s.name == "message" and s.attr.get("from") == frm))
        return got

    def check_stream(self, got, interval=0.5):
        states = [state_of(m) for m in got]
        self.assertEqual(states[0], "composing", "typing first")
        texts = [m for m in got if m.body is not None]
        first, corrections = texts[0], texts[1:]
        self.assertIsNone(first.child("replace", NS_CORRECTION))
        self.assertEqual(first.body, story(1))
        self.assertTrue(first.attr.get("id"))
        for c in corrections:
            self.assertEqual(c.child("replace", NS_CORRECTION).get("id"), first.attr["id"])
            self.assertNotEqual(c.attr.get("id"), first.attr["id"])
        self.assertEqual(texts[-1].body, story(20), "the final text is exactly the last line")
        # 20 lines over about 2 s, at most one correction per 0.5 s: the
        # first message, a handful of corrections, the last; never all.
        self.assertLessEqual(len(corrections), 2 / interval + 2, [c.body for c in corrections])
        self.assertGreaterEqual(len(corrections), 2)
        if state_of(got[-1]) != "active":  # then on its own, right after
            active = self.alice.expect(lambda s: s.name == "message" and s.attr.get("from") == got[-1].attr["from"])
            self.assertEqual((state_of(active), active.body), ("active", None))
        return first, corrections

    def test_a_stream_is_a_message_then_corrections_no_more_often_than_the_interval(self):
        to = "storyteller@bot.localhost"
        self.alice.message(to, "story")
        got = self.messages_until_final(self.alice, to, story(20))
        self.check_stream(got)
        print(f"\n  stream of 20 lines over 2 s, interval 0.5 s: {len([m for m in got if m.body]) - 1} corrections")

    def test_a_stream_may_last_longer_than_the_timeout(self):
        to = "storyteller@short.localhost"
        self.alice.message(to, "story")
        got = self.messages_until_final(self.alice, to, story(20))
        self.check_stream(got)

    def test_the_next_message_of_the_conversation_waits_for_the_stream(self):
        to = "ordered@bot.localhost"
        self.alice.message(to, "story")
        self.alice.message(to, "after the story")
        got = self.messages_until_final(self.alice, to, story(20))
        self.check_stream(got)
        after = self.alice.expect(lambda s: s.attr.get("from") == to and s.body == "Did you say after the story?")
        self.assertIsNotNone(after)
        posted = [r for r in self.ws.requests if r["json"].get("body") == "after the story"]
        story_post = [r for r in self.ws.requests if r["json"].get("body") == "story"
                      and r["json"]["to"] == to][0]
        self.assertGreater(posted[0]["time"] - story_post["time"], 1.5, "POSTed once the stream ended")

    def test_a_stream_cut_off_keeps_what_was_sent(self):
        to = "cut@bot.localhost"
        id_ = self.alice.message(to, "cut")
        self.wait_log(r"The stream answering message id=%s .* broke off after \d+ messages, which stay" % id_)
        self.barrier(self.alice, to=to)
        got = self.alice.received(lambda s: s.attr.get("from") == to)
        texts = [m.body for m in got if m.body is not None and m.body != "Did you say barrier?"]
        self.assertEqual(texts[0], story(1))
        self.assertIn(texts[-1], [story(n) for n in range(2, 6)], "the last line read is sent")
        self.assertEqual([m for m in got if m.attr.get("type") == "error"], [], "nothing more but a log line")

    def test_a_stream_past_its_stream_timeout_is_cut_off_keeping_what_was_sent(self):
        to = "long@brief.localhost"
        id_ = self.alice.message(to, "story")
        self.wait_log(r"The stream answering message id=%s .* broke off .* component_post_stream_timeout was reached"
                      % id_)
        self.barrier(self.alice, to=to)
        texts = [m.body for m in self.alice.received(lambda s: s.attr.get("from") == to) if m.body]
        self.assertEqual(texts[0], story(1))
        self.assertNotIn(story(20), texts, "cut off before its end")

    def test_a_stream_invalid_before_its_first_message_is_an_invalid_reply(self):
        to = "garbage@bot.localhost"
        id_ = self.alice.message(to, "garbage")
        error = self.alice.expect_id(id_)
        self.assertEqual(error.error()[:2], ("cancel", "internal-server-error"))
        self.assertIn("invalid reply: a line is not valid JSON", error.error()[2])

    def test_a_stream_answering_an_iq_is_an_invalid_reply(self):
        answer = self.alice.expect_id(self.alice.iq("bot.localhost", "get", "<q xmlns='urn:example:q'/>"))
        self.assertEqual(answer.attr.get("type"), "error")
        self.assertIn("answers messages only", answer.error()[2])

    def test_a_room_sees_the_stream_as_corrections_of_the_bots_message(self):
        self.wait_log(f"Joined room {LOBBY} as Bot")
        self.alice.send(f"<presence to='{LOBBY}/alice'><x xmlns='{NS_MUC}'><history maxstanzas='0'/></x></presence>")
        self.alice.expect(lambda s: s.name == "presence" and s.attr.get("from") == f"{LOBBY}/alice")
        self.alice.send(f"<message to='{LOBBY}' type='groupchat'><body>@Bot tell a story</body></message>")
        got = self.messages_until_final(self.alice, f"{LOBBY}/Bot", story(20))
        first, _ = self.check_stream(got)
        self.assertEqual(first.attr.get("type"), "groupchat")


if __name__ == "__main__":
    unittest.main()
