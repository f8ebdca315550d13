"""End-to-end: bots that feel alive (docs/contract.md §15–§16). A face:
the module answers vcard-temp with the configured name and avatar, every
available presence the component sends carries the avatar's hash
(XEP-0153), disco#info names the bot; a bad avatar fails the load."""

import base64
import hashlib
import os
import shutil
import unittest

from harness import MUC_DOMAIN, ProsodyTestCase, echo_handler, json_reply

NS_VCARD = "vcard-temp"
NS_UPDATE = "vcard-temp:x:update"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_MUC = "http://jabber.org/protocol/muc"
LOBBY = f"lobby@{MUC_DOMAIN}"
AVATAR = bytes.fromhex("89504e470d0a1a0a") + os.urandom(3000)
SHA1 = hashlib.sha1(AVATAR).hexdigest()


def face_bot(request):
    """Answers "presence" with an available presence of its own."""
    if (request["json"] or {}).get("body") == "presence":
        return json_reply({"kind": "presence"})
    return echo_handler(request)


def photo_of(stanza):
    update = stanza.child("x", NS_UPDATE)
    photo = update.find(f"{{{NS_UPDATE}}}photo") if update is not None else None
    return None if photo is None else photo.text


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


if __name__ == "__main__":
    unittest.main()
