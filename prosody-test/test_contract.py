"""End-to-end: every rule of docs/contract.md §1–§7 against a real Prosody,
a real web service and a real XMPP client (Prosody and network backend
from the harness)."""

import threading
import time
import unittest

from harness import (BACKEND, PROSODY, DOMAIN, SHELL_UNRELIABLE, SHELL_UNRELIABLE_WHY, ProsodyTestCase,
                     echo_handler, free_port, json_reply)

# A signing key too short to be one: the error names the option, never the key.
BAD_KEY = "whsk_c2hvcnQta2V5LW5ldmVyLWxvZ2dlZA=="
BAD_WHSEC = "whsec_not%base64%never-logged"
URL_PASSWORD = "url-password-never-logged"
USERS = ["alice", "bob", "carol"] + [f"user{i}" for i in range(10)]


def answering(handler):
    """`handler`, except that the barrier message is always echoed."""
    def wrapped(request):
        if (request["json"] or {}).get("body") == "barrier":
            return echo_handler(request)
        return handler(request)
    return wrapped


class ContractTest(ProsodyTestCase):
    SECRETS = (BAD_KEY, BAD_WHSEC, URL_PASSWORD, "a cleartext secret")

    @classmethod
    def setUpClass(cls):
        cls.web_services()
        url = cls.ws.url
        cls.components = {
            "bot.localhost": {"component_post_url": url + "/bot"},
            "all.localhost": {"component_post_url": url + "/all",
                              "component_post_stanzas": ["message", "presence", "iq"]},
            "legacy.localhost": {"component_post_url": url + "/legacy",
                                 "post_stanza_types": ["message", "iq"]},
            "quick.localhost": {"component_post_url": url + "/quick",
                                "component_post_timeout": 1,
                                "component_post_stanzas": ["message", "iq"]},
            # Prosody 13 reads periods; 0.12 refuses them with one line.
            "period.localhost": {"component_post_url": url + "/period",
                                 "component_post_timeout": "1s",
                                 "component_post_connect_timeout": "2 seconds"},
            "refused.localhost": {"component_post_url": f"http://127.0.0.1:{free_port()}/",
                                  "component_post_stanzas": ["message", "iq"]},
            "iqonly.localhost": {"component_post_url": url + "/iqonly",
                                 "component_post_stanzas": ["iq"]},
            "tls.localhost": {"component_post_url": cls.https.url + "/tls",
                              "component_post_ca_file": cls.certs.ca},
            "untrusted.localhost": {"component_post_url": cls.untrusted.url + "/untrusted"},
            "badurl.localhost": {"component_post_url": "ftp://example.com/x"},
            "nourl.localhost": {},
            "badtimeout.localhost": {"component_post_url": url, "component_post_timeout": "soon"},
            "badkind.localhost": {"component_post_url": url, "component_post_stanzas": ["mesage"]},
            "badorder.localhost": {"component_post_url": url, "component_post_ordering": "fifo"},
            "badca.localhost": {"component_post_url": url, "component_post_ca_file": "/nonexistent.pem"},
            "badheaders.localhost": {"component_post_url": url, "component_post_headers": "X-A: b"},
            "badsecret.localhost": {"component_post_url": url, "component_post_secret": "whsec_%%%"},
            "badinflight.localhost": {"component_post_url": url, "component_post_max_inflight": 0},
            "badmenu.localhost": {"component_post_url": url, "component_post_commands": ["ok", {"name": "x"}]},
            "badkey.localhost": {"component_post_url": url, "component_post_signing_key": BAD_KEY},
            "badpublic.localhost": {"component_post_url": url, "component_push_public_key": "whpk_AAAA"},
            "shorttoken.localhost": {"component_post_url": url, "component_push_token": "2short"},
            "badwhsec.localhost": {"component_post_url": url, "component_push_token": BAD_WHSEC},
            "badage.localhost": {"component_post_url": url, "component_post_max_age": 1e19},
            "userinfo.localhost": {"component_post_url": f"http://bot:{URL_PASSWORD}@exa mple.com/"},
            # Never contacted: only configured, to be warned of.
            "cleartext.localhost": {"component_post_url": "http://bot-service.example/hook",
                                    "component_post_secret": "a cleartext secret"},
        }
        cls.start_prosody(cls.components, users=USERS)
        name = "libevent" if BACKEND == "event" else BACKEND
        assert f"using the {name} " in cls.prosody.log(), f"Prosody is not on the {BACKEND} backend"
        cls.alice = cls.connect("alice")
        cls.bob = cls.connect("bob")

    def setUp(self):
        self.ws.handler = echo_handler

    def script(self, handler):
        self.ws.handler = answering(handler)

    def assert_nothing_from(self, client, jid):
        got = client.received(lambda s: s.attr.get("from") == jid)
        self.assertEqual(got, [], f"expected nothing from {jid}")

    def reply_to(self, client, to, body="hi", **kw):
        client.message(to, body, **kw)
        return client.expect(lambda s: s.attr.get("from") == to and s.name == "message")

    # §1 Loading, §3 request --------------------------------------------------

    def test_domain_bare_and_full_jids_are_handled(self):
        for to in ["bot.localhost", "echo@bot.localhost", "echo@bot.localhost/res"]:
            reply = self.reply_to(self.alice, to, "x " + to)
            self.assertEqual(reply.body, f"Did you say x {to}?")
            self.assertEqual(reply.attr["to"], self.alice.jid)
            self.assertEqual(reply.attr["type"], "chat")

    def test_request_is_json_with_every_key(self):
        id_ = self.alice.message("keys@bot.localhost", "payload")
        self.alice.expect(lambda s: s.attr.get("from") == "keys@bot.localhost")
        request = self.ws.wait_for(lambda r: (r["json"] or {}).get("id") == id_)
        self.assertEqual(request["headers"]["content-type"], "application/json")
        self.assertEqual(request["path"], "/bot")
        body = request["json"]
        self.assertEqual(body["to"], "keys@bot.localhost")
        self.assertEqual(body["from"], self.alice.jid)
        self.assertEqual(body["kind"], "message")
        self.assertEqual(body["type"], "chat")
        self.assertEqual(body["body"], "payload")
        self.assertTrue(body["stanza"].startswith("<message"), body["stanza"])
        self.assertIn("<body>payload</body>", body["stanza"])
        self.assertIn(f"id='{id_}'", body["stanza"])

    def test_special_characters_are_escaped_like_prosody(self):
        text = "a<b & 'c' \"d\" > é ☺"
        id_ = self.alice.message("esc@bot.localhost", text)
        reply = self.alice.expect(lambda s: s.attr.get("from") == "esc@bot.localhost")
        self.assertEqual(reply.body, f"Did you say {text}?")
        body = self.ws.wait_for(lambda r: (r["json"] or {}).get("id") == id_)["json"]
        self.assertEqual(body["body"], text)
        self.assertIn("<body>a&lt;b &amp; &apos;c&apos; &quot;d&quot; &gt; é ☺</body>", body["stanza"])

    def test_body_less_message_has_no_body_key(self):
        id_ = self.alice.message("nobody@bot.localhost", None)
        self.barrier(self.alice)
        body = self.ws.wait_for(lambda r: (r["json"] or {}).get("id") == id_)["json"]
        self.assertNotIn("body", body)

    # §4 response -------------------------------------------------------------

    def test_explicit_fields_and_defaults(self):
        self.script(lambda r: json_reply({"to": self.bob.jid, "from": "alias@bot.localhost",
                                          "body": "for bob", "type": "normal"}))
        self.alice.message("fields@bot.localhost", "x")
        got = self.bob.expect(lambda s: s.attr.get("from") == "alias@bot.localhost")
        self.assertEqual(got.body, "for bob")
        self.assertEqual(got.attr["type"], "normal")

    def test_number_and_boolean_bodies_become_text(self):
        for value, text in [(42, "42"), (1.5, "1.5"), (True, "true")]:
            self.script(lambda r, v=value: json_reply({"body": v}))
            self.assertEqual(self.reply_to(self.alice, "num@bot.localhost").body, text)

    def test_stanza_is_sent_as_is(self):
        xml = ("<message type='headline'><body>raw</body>"
               "<x xmlns='urn:test:extra'>payload</x></message>")
        self.script(lambda r: json_reply({"stanza": xml, "body": "ignored"}))
        reply = self.reply_to(self.alice, "raw@bot.localhost")
        self.assertEqual(reply.attr["type"], "headline")
        self.assertEqual(reply.body, "raw")
        self.assertEqual(reply.child("x", "urn:test:extra").text, "payload")
        self.assertEqual(reply.attr["to"], self.alice.jid)

    def test_json_content_type_with_parameters(self):
        self.script(lambda r: json_reply({"body": "charset ok"},
                                         content_type="application/json; charset=utf-8"))
        self.assertEqual(self.reply_to(self.alice, "cs@bot.localhost").body, "charset ok")

    def test_answers_that_send_nothing(self):
        cases = [
            (200, {"Content-Type": "text/plain"}, '{"body": "no"}'),
            (200, {"Content-Type": "application/json"}, ""),
            (200, {"Content-Type": "application/json"}, "{}"),
            (200, {"Content-Type": "application/json"}, "null"),
            (201, {"Content-Type": "application/json"}, '{"body": "no"}'),
            (202, {"Content-Type": "application/json"}, '{"body": "no"}'),
            (204, {}, ""),
        ]
        for answer in cases:
            with self.subTest(answer=answer):
                self.script(lambda r, a=answer: a)
                id_ = self.alice.message("quiet@bot.localhost", "x")
                self.ws.wait_for(lambda r: (r["json"] or {}).get("id") == id_)
                # Same conversation: the barrier is POSTed only once the
                # first stanza's answer is in, so it is drained first.
                self.barrier(self.alice, "quiet@bot.localhost")
                self.assert_nothing_from(self.alice, "quiet@bot.localhost")

    def test_invalid_replies_give_an_error_and_a_log_line(self):
        cases = [
            ("not valid JSON", (200, {"Content-Type": "application/json"}, "{oops")),
            ("expected a JSON object", json_reply([1, 2])),
            ("'stanza' is not well-formed", json_reply({"stanza": "<message><body></message>"})),
        ]
        for reason, answer in cases:
            with self.subTest(reason=reason):
                self.script(lambda r, a=answer: a)
                error = self.error_to(self.alice, "invalid@bot.localhost")
                self.assertEqual(error[:2], ("cancel", "internal-server-error"))
                self.assertIn(reason, error[2])
                self.assertIn(reason, self.log())
        self.assertNotIn("stack traceback", self.log())

    def test_a_stanza_the_module_cannot_read_gets_an_error(self):
        """Nested deeper than the native side reads (64): the sender gets
        internal-server-error, the admin one line, the service nothing; an
        error stanza that deep is not answered (loop guard)."""
        deep = "<x>" * 70 + "</x>" * 70
        id_ = self.alice.message("deep@bot.localhost", "deep", extra=deep)
        stanza = self.alice.expect_id(id_)
        self.assertEqual(stanza.attr.get("type"), "error")
        self.assertEqual(stanza.error(), ("cancel", "internal-server-error", "could not forward the stanza"))
        self.assertIn("Could not forward <message", self.log())
        self.assertIn("nested too deeply", self.log())
        self.alice.message("deep@bot.localhost", "deep", type_="error", extra=deep)
        self.barrier(self.alice, "deep@bot.localhost")
        self.assert_nothing_from(self.alice, "deep@bot.localhost")
        self.assertFalse(any((r["json"] or {}).get("body") == "deep" for r in self.ws.requests))

    def test_reply_from_outside_the_domain_is_refused(self):
        self.script(lambda r: json_reply({"from": f"admin@{DOMAIN}", "to": f"bob@{DOMAIN}",
                                          "body": "spoofed"}))
        error = self.error_to(self.alice, "spoof@bot.localhost")
        self.assertEqual(error[1], "internal-server-error")
        self.assertIn(f"admin@{DOMAIN}", error[2])
        self.barrier(self.bob)
        self.assertEqual(self.bob.received(lambda s: s.body == "spoofed"), [])
        self.assertIn("reply refused", self.log())

    def test_replies_to_invalid_jids_are_refused(self):
        # Split at the last '@', the first was once taken for a JID at
        # localhost; a bidi override would show bob's name reversed.
        for to in ["bob@localhost@bot.localhost", "@bot.localhost", "\u202ebob@localhost", "bob@localhost/"]:
            with self.subTest(to=to):
                self.script(lambda r, to=to: json_reply({"to": to, "body": "misaddressed"}))
                error = self.error_to(self.alice, "jids@bot.localhost")
                self.assertEqual(error[1], "internal-server-error")
                self.assertIn("'to' is not a valid JID", error[2])
        self.script(lambda r: json_reply({"from": "x@y@bot.localhost", "body": "misaddressed"}))
        self.assertIn("'from' is not a valid JID", self.error_to(self.alice, "jids@bot.localhost")[2])
        self.script(echo_handler)
        self.barrier(self.bob)
        self.assertEqual(self.bob.received(lambda s: s.body == "misaddressed"), [])

    def test_addresses_of_a_reply_are_prepared(self):
        self.script(lambda r: json_reply({"to": self.bob.jid.replace("bob@", "Bob@").replace(DOMAIN, DOMAIN.upper()),
                                          "from": "Echo@BOT.localhost", "body": "prepared"}))
        self.alice.message("prep@bot.localhost", "hi")
        got = self.bob.expect(lambda s: s.body == "prepared")
        self.assertEqual(got.attr["from"], "echo@bot.localhost")

    def test_a_reply_to_the_component_itself_is_refused(self):
        self.script(lambda r: json_reply({"to": "other@bot.localhost", "body": "talking to myself"}))
        error = self.error_to(self.alice, "self@bot.localhost")
        self.assertIn("at the component itself: a loop", error[2])
        time.sleep(0.5)  # a loop would POST again and again
        looped = [r for r in self.ws.requests if (r["json"] or {}).get("body") == "talking to myself"]
        self.assertEqual(looped, [])

    @unittest.skipIf(SHELL_UNRELIABLE, SHELL_UNRELIABLE_WHY)
    def test_a_stanza_from_the_component_itself_is_not_posted(self):
        # As another module of the host would send it: through the router.
        self.shell("> local h = prosody.hosts['bot.localhost']; h.events.fire_event('message/bare', {origin = h, stanza = "
                   "require'util.stanza'.message({from='other@bot.localhost', to='echo@bot.localhost', "
                   "id='selfsent'}):tag('body'):text('from myself')})")
        self.wait_log(r"Not forwarding message id=selfsent from other@bot.localhost: .*a loop")
        self.assertFalse(any((r["json"] or {}).get("body") == "from myself" for r in self.ws.requests))

    # §5 errors ---------------------------------------------------------------

    def test_http_statuses_map_to_stanza_errors(self):
        table = {
            400: ("modify", "bad-request", None),
            401: ("auth", "not-authorized", None),
            402: ("auth", "forbidden", "Payment required"),
            403: ("auth", "forbidden", None),
            404: ("cancel", "item-not-found", None),
            405: ("cancel", "not-allowed", None),
            408: ("wait", "remote-server-timeout", None),
            409: ("cancel", "conflict", None),
            410: ("cancel", "gone", None),
            413: ("modify", "resource-constraint", None),
            429: ("wait", "resource-constraint", None),
            500: ("cancel", "internal-server-error", None),
            501: ("cancel", "feature-not-implemented", None),
            502: ("cancel", "remote-server-timeout", "Bad gateway"),
            503: ("wait", "remote-server-timeout", None),
            504: ("wait", "remote-server-timeout", None),
            302: ("cancel", "service-unavailable", None),
            418: ("cancel", "service-unavailable", None),
        }
        for status, expected in table.items():
            with self.subTest(status=status):
                self.script(lambda r, s=status: (s, {"Location": "http://127.0.0.1:1/"}, b""))
                self.assertEqual(self.error_to(self.alice, "status@bot.localhost"), expected)

    def test_error_text_comes_from_the_body(self):
        self.script(lambda r: json_reply({"error": "down for maintenance"}, status=503))
        self.assertEqual(self.error_to(self.alice, "text@bot.localhost")[2], "down for maintenance")
        self.script(lambda r: (400, {"Content-Type": "text/plain"}, "say please"))
        self.assertEqual(self.error_to(self.alice, "text@bot.localhost"),
                         ("modify", "bad-request", "say please"))

    def test_connection_refused(self):
        kind, condition, text = self.error_to(self.alice, "x@refused.localhost")
        self.assertEqual((kind, condition), ("cancel", "remote-server-timeout"))
        self.assertIn("connection", text.lower())

    def test_https_with_certificate_checks(self):
        self.assertEqual(self.reply_to(self.alice, "s@tls.localhost", "secure").body,
                         "Did you say secure?")
        kind, condition, text = self.error_to(self.alice, "s@untrusted.localhost")
        self.assertEqual((kind, condition), ("cancel", "remote-server-timeout"))
        self.assertIn("certificate", text.lower())
        self.assertEqual(self.untrusted.requests, [])

    def assert_times_out(self, host):
        """A service slower than `host`'s timeout (1 s): the sender hears so."""
        release = threading.Event()

        def slow(request):
            release.wait(10)
            return echo_handler(request)
        self.script(slow)
        try:
            self.assertEqual(self.error_to(self.alice, f"slow@{host}"),
                             ("wait", "remote-server-timeout", "timed out"))
        finally:
            release.set()

    def test_timeout(self):
        self.assert_times_out("quick.localhost")

    @unittest.skipIf(PROSODY == "0.12", "Prosody 0.12 reads durations as numbers only")
    def test_durations_as_periods(self):
        self.assert_times_out("period.localhost")

    @unittest.skipIf(PROSODY != "0.12", "Prosody 13 reads periods")
    def test_durations_as_periods_are_refused_by_prosody_0_12(self):
        lines = [l for l in self.log().splitlines()
                 if "on 'period.localhost'" in l and "Error initializing" in l]
        self.assertEqual(len(lines), 1, lines)
        self.assertIn('component_post_timeout = "1s" must be a number of seconds', lines[0])

    def test_errors_are_posted_but_never_answered(self):
        self.script(lambda r: json_reply({"body": "answer to an error"}))
        id_ = self.alice.message("loop@bot.localhost", "bounce", type_="error",
                                 extra="<error type='cancel'><gone xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error>")
        self.ws.wait_for(lambda r: (r["json"] or {}).get("id") == id_)
        self.script(lambda r: (500, {}, b""))
        id2 = self.alice.message("loop@bot.localhost", "bounce", type_="error")
        self.ws.wait_for(lambda r: (r["json"] or {}).get("id") == id2)
        self.barrier(self.alice, "loop@bot.localhost")
        self.assert_nothing_from(self.alice, "loop@bot.localhost")

    # §6 IQ -------------------------------------------------------------------

    def iq(self, to, payload="<query xmlns='urn:test:q'/>", type_="get", client=None):
        client = client or self.alice
        id_ = client.iq(to, type_, payload)
        return id_, client.expect_id(id_)

    def test_iq_reply_of_kind_iq_gets_the_request_id(self):
        self.script(lambda r: json_reply({"kind": "iq", "id": "bot-chose-this"}))
        id_, answer = self.iq("q@all.localhost")
        self.assertEqual(answer.attr["type"], "result")
        self.assertEqual(answer.attr["from"], "q@all.localhost")

    def test_iq_stanza_reply_keeps_its_payload(self):
        self.script(lambda r: json_reply(
            {"stanza": "<iq><query xmlns='urn:test:q'><item>1</item></query></iq>"}))
        id_, answer = self.iq("q@all.localhost")
        self.assertEqual(answer.attr["type"], "result")
        self.assertEqual(answer.child("query", "urn:test:q")[0].text, "1")

    def test_iq_without_usable_reply_gets_an_empty_result(self):
        for answer in [(204, {}, b""), json_reply({}), (202, {}, b"accepted")]:
            self.script(lambda r, a=answer: a)
            id_, got = self.iq("q@all.localhost", type_="set")
            self.assertEqual(got.attr["type"], "result")
            self.assertEqual(len(list(got.el)), 0)
        request = self.ws.wait_for(lambda r: (r["json"] or {}).get("id") == id_)
        self.assertEqual(request["json"]["kind"], "iq")
        self.assertEqual(request["json"]["type"], "set")

    def test_iq_http_error_gets_the_mapped_error(self):
        self.script(lambda r: (404, {}, b""))
        _, answer = self.iq("q@all.localhost")
        self.assertEqual(answer.attr["type"], "error")
        self.assertEqual(answer.error()[:2], ("cancel", "item-not-found"))
        _, answer = self.iq("q@refused.localhost")
        self.assertEqual(answer.error()[:2], ("cancel", "remote-server-timeout"))

    def test_iq_results_are_posted_never_answered(self):
        self.script(lambda r: json_reply({"kind": "iq"}))
        id_ = self.alice.iq("q@all.localhost", "result", "")
        self.ws.wait_for(lambda r: (r["json"] or {}).get("id") == id_)
        self.barrier(self.alice, "q@all.localhost")
        self.assertEqual(self.alice.received(lambda s: s.attr.get("id") == id_), [])

    def test_iq_answered_locally_when_not_forwarded(self):
        before = len(self.ws.requests)
        _, pong = self.iq("bot.localhost", "<ping xmlns='urn:xmpp:ping'/>")
        self.assertEqual(pong.attr["type"], "result")
        _, pong = self.iq("someone@bot.localhost/r", "<ping xmlns='urn:xmpp:ping'/>")
        self.assertEqual(pong.attr["type"], "result")
        _, info = self.iq("bot.localhost", "<query xmlns='http://jabber.org/protocol/disco#info'/>")
        query = info.child("query", "http://jabber.org/protocol/disco#info")
        identity = query.find("{http://jabber.org/protocol/disco#info}identity")
        self.assertEqual(identity.get("category"), "component")
        features = {f.get("var") for f in query.findall("{http://jabber.org/protocol/disco#info}feature")}
        self.assertEqual(features, {"http://jabber.org/protocol/disco#info", "urn:xmpp:ping"})
        _, other = self.iq("x@bot.localhost", "<vCard xmlns='vcard-temp'/>")
        self.assertEqual(other.error()[:2], ("cancel", "service-unavailable"))
        self.assertEqual(len(self.ws.requests), before, "IQs must not be POSTed")

    def test_legacy_option_name_still_works(self):
        self.assertIn("post_stanza_types is deprecated", self.log())
        self.script(lambda r: json_reply({"kind": "iq"}))
        id_, answer = self.iq("q@legacy.localhost")
        self.assertEqual(answer.attr["type"], "result")
        self.ws.wait_for(lambda r: r["path"] == "/legacy" and r["json"]["id"] == id_)

    # §7 presence -------------------------------------------------------------

    def presence(self, to, type_=None, client=None):
        client = client or self.alice
        type_attr = f" type='{type_}'" if type_ else ""
        client.send(f"<presence to='{to}'{type_attr}/>")

    def test_presence_probe_and_subscriptions_are_answered_locally(self):
        # Subscription answers reach, through Prosody's roster logic, only
        # resources that are online and have fetched the roster: carol.
        carol = self.connect("carol")
        carol.send("<iq type='get' id='roster'><query xmlns='jabber:iq:roster'/></iq>")
        carol.expect_id("roster")
        carol.send("<presence/>")
        before = len(self.ws.requests)
        is_presence = lambda s, frm, t=None: (s.name == "presence" and s.attr.get("from") == frm
                                              and s.attr.get("type") == t)
        for to, contact in [("bot.localhost", "bot.localhost"),
                            ("p@bot.localhost", "p@bot.localhost"),
                            ("p@bot.localhost/x", "p@bot.localhost")]:
            with self.subTest(to=to):
                self.presence(to, "probe", client=carol)
                carol.expect(lambda s: is_presence(s, contact + "/default"))

                self.presence(to, "subscribe", client=carol)
                carol.expect(lambda s: is_presence(s, contact, "subscribed"))
                carol.expect(lambda s: is_presence(s, contact + "/default"))

                self.presence(to, "unsubscribe", client=carol)
                carol.expect(lambda s: is_presence(s, contact + "/default", "unavailable"))
                # carol's own unsubscribe already updated her roster, so
                # Prosody takes the component's unsubscribed silently.
                self.assertIn(f"inbound presence unsubscribed from {contact} for carol@{DOMAIN}",
                              self.log())
        self.assertEqual(len(self.ws.requests), before, "presence must not be POSTed")

    def test_other_presence_gets_nothing(self):
        for type_ in [None, "unavailable", "subscribed", "unsubscribed"]:
            self.presence("quiet@bot.localhost/r", type_)
        self.presence("quiet@bot.localhost/r", "probe")  # a barrier: answered in order
        self.alice.expect(lambda s: s.name == "presence" and s.attr["from"] == "quiet@bot.localhost/default")
        self.assertEqual(self.alice.received(lambda s: s.attr.get("from", "").startswith("quiet@")), [])

    def test_presence_is_posted_when_forwarded(self):
        self.script(lambda r: json_reply({"kind": "presence"}) if r["json"]["kind"] == "presence"
                    else echo_handler(r))
        self.presence("p@all.localhost", "probe")
        request = self.ws.wait_for(lambda r: r["path"] == "/all" and r["json"]["kind"] == "presence")
        self.assertEqual(request["json"]["type"], "probe")
        got = self.alice.expect(lambda s: s.name == "presence" and s.attr["from"] == "p@all.localhost")
        self.assertNotIn("type", got.attr)

    # Options and load errors ---------------------------------------------------

    def test_bad_config_fails_to_load_with_one_line(self):
        log = self.log().splitlines()
        for host, needles in [("badurl.localhost", ["component_post_url", "ftp://example.com/x"]),
                              ("nourl.localhost", ["component_post_url is not set"]),
                              ("badtimeout.localhost",
                               ['component_post_timeout = "soon" must be a number of seconds']),
                              ("badkind.localhost", ["component_post_stanzas", "mesage"]),
                              ("badorder.localhost", ["component_post_ordering", "fifo"]),
                              ("badca.localhost", ["component_post_ca_file", "/nonexistent.pem"]),
                              ("badheaders.localhost", ["component_post_headers"]),
                              ("badsecret.localhost", ["component_post_secret"]),
                              ("badinflight.localhost", ["component_post_max_inflight = 0"]),
                              ("badmenu.localhost", ["component_post_commands: item 2 has no node"]),
                              ("badkey.localhost", ["component_post_signing_key must be an ed25519 signing key"]),
                              ("badpublic.localhost", ["component_push_public_key must be an ed25519 public key"]),
                              ("shorttoken.localhost",
                               ["component_push_token = 6 characters long must be at least 16 characters"]),
                              ("badwhsec.localhost", ["component_push_token", "must be whsec_ and valid base64"]),
                              ("badage.localhost", ["component_post_max_age", "at most 1e9"]),
                              ("userinfo.localhost", ["component_post_url", "http://***@exa mple.com/"])]:
            with self.subTest(host=host):
                lines = [l for l in log if f"on '{host}'" in l and "Error initializing" in l]
                self.assertEqual(len(lines), 1, lines)
                for needle in needles:
                    self.assertIn(needle, lines[0])
                self.assertNotIn("traceback", lines[0])
                for secret in (BAD_KEY, BAD_WHSEC, URL_PASSWORD):
                    self.assertNotIn(secret, lines[0])
                # The host has no handler: Prosody answers on its own.
                self.assertEqual(self.error_to(self.alice, f"x@{host}")[:2],
                                 ("cancel", "service-unavailable"))
        self.assertTrue(self.prosody.alive())

    def test_secrets_sent_in_the_clear_are_warned_of_except_on_loopback(self):
        warnings = [l for l in self.log().splitlines() if "unencrypted" in l]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn("cleartext.localhost", warnings[0])
        self.assertIn("component_post_url is http://: component_post_secret goes to bot-service.example "
                      "unencrypted", warnings[0])
        self.assertNotIn("a cleartext secret", self.log())

    def test_only_configured_kinds_are_forwarded(self):
        before = len(self.ws.requests)
        self.assertEqual(self.error_to(self.alice, "m@iqonly.localhost")[:2],
                         ("cancel", "service-unavailable"))
        self.assertEqual(len(self.ws.requests), before, "the message must not be POSTed")
        self.script(lambda r: json_reply({"kind": "iq"}))
        _, answer = self.iq("q@iqonly.localhost")
        self.assertEqual(answer.attr["type"], "result")
        self.ws.wait_for(lambda r: r["path"] == "/iqonly")

    # Concurrency ---------------------------------------------------------------

    def test_two_component_hosts_side_by_side(self):
        for to in ["two@bot.localhost", "two@all.localhost"] * 3:
            self.alice.message(to, "side")
        for to in ["two@bot.localhost", "two@all.localhost"]:
            for _ in range(3):
                self.alice.expect(lambda s: s.attr.get("from") == to and s.body == "Did you say side?")
        paths = {r["path"] for r in self.ws.requests if (r["json"] or {}).get("body") == "side"}
        self.assertEqual(paths, {"/bot", "/all"})

    def test_slow_service_does_not_hold_up_others(self):
        release = threading.Event()

        def handler(request):
            if request["json"].get("body") == "slow":
                release.wait(3)
            return echo_handler(request)
        self.script(handler)
        self.alice.message("slow@bot.localhost", "slow")
        self.ws.wait_for(lambda r: (r["json"] or {}).get("body") == "slow")
        # While the slow request is pending, Prosody answers bob at once:
        # his server ping and his own conversation with the bot.
        self.assertEqual(self.bob.ping_server().attr["type"], "result")
        self.assertEqual(self.reply_to(self.bob, "fast@bot.localhost", "fast").body, "Did you say fast?")
        self.assertEqual(self.alice.received(lambda s: s.attr.get("from") == "slow@bot.localhost"), [])
        release.set()
        self.alice.expect(lambda s: s.attr.get("from") == "slow@bot.localhost")

    def test_fifty_concurrent_conversations(self):
        def handler(request):
            time.sleep(0.2)  # so the conversations overlap
            return echo_handler(request)
        self.script(handler)
        clients = [self.connect(f"user{i}") for i in range(10)]
        for c in clients:
            for j in range(5):
                c.message(f"conv{j}@bot.localhost", f"{c.bare} #{j}")
        for c in clients:
            for j in range(5):
                got = c.expect(lambda s: s.attr.get("from") == f"conv{j}@bot.localhost")
                self.assertEqual(got.body, f"Did you say {c.bare} #{j}?")

if __name__ == "__main__":
    unittest.main()
