"""End-to-end: the structured keys of docs/contract.md §3.1 and §4.1. A real
client sends stanzas with chat states, files, reactions, replies, receipts,
markers and more, and the web service sees each as a JSON key; the service
answers (or pushes) with those keys, and the client gets the right XML."""

import unittest

from harness import DOMAIN, ProsodyTestCase, json_reply, schema_errors

TOKEN = "rich-push-token-01"
NS = {
    "chatstates": "http://jabber.org/protocol/chatstates",
    "oob": "jabber:x:oob",
    "correct": "urn:xmpp:message-correct:0",
    "reactions": "urn:xmpp:reactions:0",
    "reply": "urn:xmpp:reply:0",
    "receipts": "urn:xmpp:receipts",
    "markers": "urn:xmpp:chat-markers:0",
    "nick": "http://jabber.org/protocol/nick",
    "conference": "jabber:x:conference",
}


class RichJsonTest(ProsodyTestCase):
    TOKEN = TOKEN

    @classmethod
    def setUpClass(cls):
        cls.ws = cls.web_service()
        cls.start_prosody({
            "bot.localhost": {"component_post_url": cls.ws.url + "/",
                              "component_post_stanzas": ["message", "presence"],
                              "component_push_token": TOKEN},
        }, http=True)
        cls.alice = cls.connect("alice")

    def posted(self, id_):
        return self.ws.wait_for(lambda r: (r["json"] or {}).get("id") == id_)["json"]

    def answer_with(self, reply, conforms=True):
        """The web service answers with `reply` (checked against the
        schema's `reply`: conforming, or not when `conforms` is False), and
        the barrier with an echo."""
        self.assertEqual(not schema_errors(reply, "reply"), conforms, schema_errors(reply, "reply"))
        self.ws.handler = lambda r: json_reply(reply) if (r["json"] or {}).get("body") != "barrier" \
            else json_reply({"body": "Did you say barrier?"})

    def push_json(self, body, conforms=True):
        """A push whose body is (or, `conforms=False`, is not) a push of the
        contract's schema: its status and JSON answer."""
        self.assertEqual(not schema_errors(body, "push"), conforms, schema_errors(body, "push"))
        status, answer, _ = self.push(body)
        return status, answer

    # §3.1: request keys from real stanzas ------------------------------------

    def test_message_keys_reach_the_service(self):
        self.answer_with({})
        id_ = self.alice.message("r@bot.localhost", "see this", extra=(
            "<subject>topic</subject><thread parent='p1'>t1</thread>"
            f"<composing xmlns='{NS['chatstates']}'/>"
            f"<x xmlns='{NS['oob']}'><url>https://example.com/a.png</url><desc>a cat</desc></x>"
            f"<replace xmlns='{NS['correct']}' id='m0'/>"
            f"<reply xmlns='{NS['reply']}' id='m8' to='bob@{DOMAIN}/x'/>"
            f"<request xmlns='{NS['receipts']}'/><markable xmlns='{NS['markers']}'/>"
            f"<nick xmlns='{NS['nick']}'>Alice</nick>"
            "<delay xmlns='urn:xmpp:delay' stamp='2026-12-01T10:00:00Z'/>"))
        posted = self.posted(id_)
        self.assertEqual(posted["body"], "see this")
        self.assertEqual(posted["subject"], "topic")
        self.assertEqual(posted["thread"], {"id": "t1", "parent": "p1"})
        self.assertEqual(posted["state"], "composing")
        self.assertEqual(posted["oob"], {"url": "https://example.com/a.png", "desc": "a cat"})
        self.assertEqual(posted["replace"], "m0")
        self.assertEqual(posted["reply"], {"id": "m8", "to": f"bob@{DOMAIN}/x"})
        self.assertIs(posted["request_receipt"], True)
        self.assertIs(posted["markable"], True)
        self.assertEqual(posted["nick"], "Alice")
        self.assertEqual(posted["delay"], "2026-12-01T10:00:00Z")
        self.assertIn("<subject>topic</subject>", posted["stanza"], "stanza stays")

    def test_acknowledgements_reactions_and_invitations_reach_the_service(self):
        self.answer_with({})
        ids = [
            self.alice.message("r@bot.localhost", None, extra=f"<received xmlns='{NS['receipts']}' id='b1'/>"),
            self.alice.message("r@bot.localhost", None, extra=f"<displayed xmlns='{NS['markers']}' id='b2'/>"),
            self.alice.message("r@bot.localhost", None, extra=(
                f"<reactions xmlns='{NS['reactions']}' id='b3'><reaction>👍</reaction></reactions>")),
            self.alice.message("r@bot.localhost", None, type_="normal", extra=(
                f"<x xmlns='{NS['conference']}' jid='room@conference.{DOMAIN}' reason='join us'/>")),
        ]
        posted = [self.posted(id_) for id_ in ids]
        self.assertEqual(posted[0]["received"], "b1")
        self.assertEqual(posted[1]["displayed"], "b2")
        self.assertEqual(posted[2]["reactions"], {"id": "b3", "reactions": ["👍"]})
        self.assertEqual(posted[3]["invite"], {"room": f"room@conference.{DOMAIN}",
                                               "from": self.alice.jid, "reason": "join us"})
        for p in posted:
            self.assertNotIn("body", p)

    def test_presence_keys_and_errors_reach_the_service(self):
        self.alice.send("<presence to='p@bot.localhost'><show>dnd</show><status>busy</status>"
                        "<priority>3</priority></presence>")
        posted = self.ws.wait_for(lambda r: (r["json"] or {}).get("kind") == "presence"
                                  and (r["json"] or {}).get("show") == "dnd")["json"]
        self.assertEqual((posted["status"], posted["priority"]), ("busy", 3))
        id_ = self.alice.message("r@bot.localhost", None, type_="error", extra=(
            "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "<text xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'>no such message</text></error>"))
        self.assertEqual(self.posted(id_)["error"],
                         {"type": "cancel", "condition": "item-not-found", "text": "no such message"})

    def test_a_plain_message_has_no_extra_keys(self):
        self.answer_with({})
        id_ = self.alice.message("r@bot.localhost", "plain")
        self.assertEqual(sorted(self.posted(id_)), ["body", "from", "id", "kind", "stanza", "to", "type"])

    def test_the_schema_check_catches_keys_it_does_not_describe(self):
        """Every request a test's web service gets is checked against the
        schema (harness.WebService); the check itself fails on what the
        schema does not describe."""
        id_ = self.alice.message("r@bot.localhost", "checked")
        posted = self.posted(id_)
        self.assertEqual(schema_errors(posted, "request"), [])
        self.assertEqual(self.ws.violations, [])
        self.assertEqual(schema_errors({**posted, "surprise": 1}, "request"),
                         ["$: 'surprise' is not described by the schema"])
        self.assertTrue(schema_errors({**posted, "state": "dancing"}, "request"))
        self.assertTrue(schema_errors({"body": "no to"}, "push"))

    # §4.1: reply keys arrive as XML ----------------------------------------

    def test_reply_keys_arrive_as_xml(self):
        self.answer_with({
            "body": "here", "subject": "s", "thread": {"id": "t1", "parent": "p1"}, "state": "active",
            "oob": {"url": "https://example.com/a.png", "desc": "a cat"}, "replace": "old",
            "reactions": {"id": "m9", "reactions": ["👍", "🎉"]}, "reply": {"id": "m8"},
            "request_receipt": True, "received": "m7", "markable": True, "displayed": "m6", "nick": "Bot",
        })
        self.alice.message("r@bot.localhost", "go")
        got = self.alice.expect(lambda s: s.attr.get("from") == "r@bot.localhost")
        self.assertEqual(got.body, "here")
        self.assertEqual(got.child("subject").text, "s")
        thread = got.child("thread")
        self.assertEqual((thread.text, thread.get("parent")), ("t1", "p1"))
        self.assertIsNotNone(got.child("active", NS["chatstates"]))
        oob = got.child("x", NS["oob"])
        self.assertEqual([c.text for c in oob], ["https://example.com/a.png", "a cat"])
        self.assertEqual(got.child("replace", NS["correct"]).get("id"), "old")
        reactions = got.child("reactions", NS["reactions"])
        self.assertEqual((reactions.get("id"), [c.text for c in reactions]), ("m9", ["👍", "🎉"]))
        self.assertEqual(got.child("reply", NS["reply"]).get("id"), "m8")
        self.assertIsNotNone(got.child("request", NS["receipts"]))
        self.assertEqual(got.child("received", NS["receipts"]).get("id"), "m7")
        self.assertIsNotNone(got.child("markable", NS["markers"]))
        self.assertEqual(got.child("displayed", NS["markers"]).get("id"), "m6")
        self.assertEqual(got.child("nick", NS["nick"]).text, "Bot")

    def test_a_bare_chat_state_is_a_message_without_body(self):
        self.answer_with({"state": "composing"})
        self.alice.message("r@bot.localhost", "think")
        got = self.alice.expect(lambda s: s.attr.get("from") == "r@bot.localhost")
        self.assertIsNone(got.body)
        self.assertIsNotNone(got.child("composing", NS["chatstates"]))
        self.assertEqual(got.attr.get("type"), "chat")

    def test_presence_reply_keys(self):
        self.answer_with({"kind": "presence", "show": "away", "status": "thinking", "priority": -1})
        self.alice.message("r@bot.localhost", "presence please")
        got = self.alice.expect(lambda s: s.name == "presence" and s.attr.get("from") == "r@bot.localhost")
        self.assertEqual([got.child(n).text for n in ("show", "status", "priority")], ["away", "thinking", "-1"])

    def test_a_key_of_the_wrong_type_refuses_the_reply(self):
        for reply, why in [({"body": "half", "oob": 5}, "'oob' must be"),
                           ({"state": "dancing"}, "'state' must be one of"),
                           ({"body": "x", "reactions": {"id": "m", "reactions": [1]}}, "'reactions.reactions'")]:
            with self.subTest(reply=reply):
                self.answer_with(reply, conforms=False)
                id_ = self.alice.message("r@bot.localhost", "bad")
                error = self.alice.expect_id(id_).error()
                self.assertEqual(error[:2], ("cancel", "internal-server-error"))
                self.assertIn(why, error[2])
                self.barrier(self.alice, "r@bot.localhost")
                self.assertEqual(self.alice.received(lambda s: s.attr.get("from") == "r@bot.localhost"
                                                     and s.attr.get("type") != "error"), [],
                                 "nothing half-built is sent")

    # §4.1 through the push endpoint ----------------------------------------

    def test_push_keys_and_a_wrong_one(self):
        status, _ = self.push_json({"to": self.alice.jid, "body": "pushed", "oob": "https://example.com/f.pdf",
                               "state": "active"})
        self.assertEqual(status, 202)
        got = self.alice.expect(lambda s: s.body == "pushed")
        self.assertEqual(got.child("x", NS["oob"])[0].text, "https://example.com/f.pdf")
        self.assertIsNotNone(got.child("active", NS["chatstates"]))
        status, answer = self.push_json({"to": self.alice.jid, "body": "never", "priority": 1, "state": 5},
                                   conforms=False)
        self.assertEqual(status, 400)
        self.assertIn("'state' must be one of", answer["error"])
        self.barrier(self.alice, "r@bot.localhost")
        self.assertEqual(self.alice.received(lambda s: s.body == "never"), [])


if __name__ == "__main__":
    unittest.main()
