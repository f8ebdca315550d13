"""End-to-end: files (docs/contract.md §14). A reply or push with `file` is
uploaded to Prosody's own XEP-0363 service (mod_http_file_share, on
loopback HTTP) and arrives as a message whose body and oob URL are the GET
URL; a real client receives it, and an HTTP GET returns the bytes."""

import base64
import os
import re
import threading
import unittest
import urllib.request

from harness import UPLOAD_DOMAIN, ComponentClient, ProsodyTestCase, echo_handler, json_reply, once_per_prosody

TOKEN = "files-push-token-0123456789"

NS_OOB = "jabber:x:oob"
SERVICE_LIMIT = 100_000
MAX_UPLOAD = 300_000
PNG = bytes.fromhex("89504e470d0a1a0a") + os.urandom(2000)


def b64(data):
    return base64.b64encode(data).decode()


def file_bot(request):
    """Answers some words with a file, others as the echo bot; as the
    upload service's PUT URL, /put, it fails."""
    if request["path"] == "/put":
        return 500, {}, b"disk full"
    body = (request["json"] or {}).get("body")
    chart = {"data": b64(PNG), "name": "chart.png", "content_type": "image/png", "desc": "CPU last 24 h"}
    answers = {
        "chart": {"body": "Here is your chart", "thread": "t1", "file": chart},
        "bare": {"file": {"data": b64(b"just bytes")}},
        "badb64": {"body": "Before the file", "file": {"data": "not base64!"}},
        "badname": {"file": {"data": b64(b"x"), "name": "../etc/passwd"}},
        "ours": {"file": {"data": b64(os.urandom(MAX_UPLOAD + 1))}},
        "theirs": {"file": {"data": b64(os.urandom(SERVICE_LIMIT + 1000))}},
        "oob": {"oob": "https://example.com/x", "file": {"data": b64(b"x")}},
        "presence": {"kind": "presence", "file": {"data": b64(b"x")}},
    }
    if body in answers:
        return json_reply(answers[body])
    return echo_handler(request)


WEB_SECRET = "the-web-services-own-secret"
FAKE = "fakeupload.localhost"
FAKE_SECRET = "fake-upload-secret"


def fake_upload_service(component, put_url):
    """An upload service that gives slots whose PUT URL is `put_url`, but
    answers nothing for a file named "silent" (XEP-0114 component)."""
    def serve():
        data = b""
        while True:
            chunk = component.sock.recv(65536)
            if not chunk:
                return
            data += chunk
            for iq in re.findall(rb"<iq[^>]*>.*?</iq>", data, re.S):
                text = iq.decode()
                id_ = re.search(r"id=['\"]([^'\"]+)", text)[1]
                sender = re.search(r"from=['\"]([^'\"]+)", text)[1]
                if "filename='silent'" in text or 'filename="silent"' in text:
                    continue
                component.sock.sendall(
                    f"<iq type='result' from='{FAKE}' to='{sender}' id='{id_}'>"
                    f"<slot xmlns='urn:xmpp:http:upload:0'><put url='{put_url}'/>"
                    f"<get url='{put_url}/get'/></slot></iq>".encode())
            data = data[data.rfind(b"</iq>") + 5:] if b"</iq>" in data else data
    threading.Thread(target=serve, daemon=True).start()


def fetch(url):
    with urllib.request.urlopen(url, timeout=10) as response:
        return response.read(), response.headers.get("Content-Type")


class FilesTest(ProsodyTestCase):
    SECRETS = (TOKEN, WEB_SECRET)
    TOKEN = TOKEN

    @classmethod
    def setUpClass(cls):
        cls.ws = cls.web_service(file_bot)
        url = cls.ws.url + "/"
        allowed = ["bot.localhost", "direct.localhost", "lost.nowhere.localhost"]
        cls.start_prosody({
            "bot.localhost": {"component_post_url": url, "component_post_max_upload": MAX_UPLOAD,
                              "component_push_token": TOKEN, "component_push_max_size": 1000},
            "direct.localhost": {"component_post_url": url, "component_post_upload_service": UPLOAD_DOMAIN},
            "denied.localhost": {"component_post_url": url, "component_push_token": TOKEN},
            "lost.nowhere.localhost": {"component_post_url": url, "component_push_token": TOKEN},
            "putfail.localhost": {"component_post_url": url, "component_push_token": TOKEN,
                                  "component_post_upload_service": FAKE, "component_post_timeout": 2,
                                  "component_post_retries": 0,
                                  "component_post_headers": {"Authorization": "Bearer " + WEB_SECRET}},
        }, upload={"http_file_share_size_limit": SERVICE_LIMIT, "http_file_share_access": allowed}, metrics=True,
            external={FAKE: FAKE_SECRET})
        component = ComponentClient(cls.prosody.component_port, FAKE, FAKE_SECRET).connect()
        cls.addClassCleanup(component.sock.close)
        fake_upload_service(component, cls.ws.url + "/put")
        cls.alice = cls.connect("alice")

    def file_message(self, client, to):
        return client.expect(lambda s: s.attr.get("from") == to and s.child("x", NS_OOB) is not None)

    def test_a_reply_with_a_file_arrives_after_its_body_and_the_url_serves_the_bytes(self):
        for to in ("chart@bot.localhost", "chart@direct.localhost"):
            with self.subTest(to=to):
                self.alice.message(to, "chart")
                first = self.alice.expect(lambda s: s.attr.get("from") == to)
                self.assertEqual(first.body, "Here is your chart")
                self.assertIsNone(first.child("x", NS_OOB), "the body comes as a message of its own, first")
                self.assertEqual(first.child("thread").text, "t1")
                message = self.file_message(self.alice, to)
                oob = message.child("x", NS_OOB)
                url = oob.find(f"{{{NS_OOB}}}url").text
                self.assertEqual(message.body, url)
                self.assertEqual(oob.find(f"{{{NS_OOB}}}desc").text, "CPU last 24 h")
                self.assertEqual(message.child("thread").text, "t1")
                self.assertTrue(url.startswith("http://127.0.0.1:"), url)
                self.assertTrue(url.endswith("/chart.png"), url)
                self.assertEqual(fetch(url), (PNG, "image/png"))
        self.assertGreaterEqual(self.metric("uploads_total", host="bot.localhost",
                                            outcome="done"), 1)
        self.assertGreaterEqual(self.metric("uploaded_bytes_total", host="bot.localhost"),
                                len(PNG))

    def test_a_file_alone_is_named_file_and_typed_octet_stream(self):
        self.alice.message("x@bot.localhost", "bare")
        message = self.file_message(self.alice, "x@bot.localhost")
        self.assertTrue(message.body.endswith("/file"), message.body)
        self.assertEqual(fetch(message.body), (b"just bytes", "application/octet-stream"))

    def test_a_file_reply_is_not_overtaken_by_the_next_text_reply(self):
        self.alice.message("order@bot.localhost", "bare")
        self.alice.message("order@bot.localhost", "after")
        first = self.alice.expect(lambda s: s.attr.get("from") == "order@bot.localhost")
        second = self.alice.expect(lambda s: s.attr.get("from") == "order@bot.localhost")
        self.assertIsNotNone(first.child("x", NS_OOB), (first, second))
        self.assertEqual(second.body, "Did you say after?")

    def test_a_file_that_cannot_be_sent_gives_the_sender_the_reason(self):
        for to, word, reason in [
            ("x@bot.localhost", "badb64", "'file.data' is not standard base64"),
            ("x@bot.localhost", "badname", "'file.name' must be a file name"),
            ("x@bot.localhost", "ours", "larger than component_post_max_upload"),
            ("x@bot.localhost", "oob", "'oob' cannot go with 'file'"),
            ("x@bot.localhost", "theirs", "the upload service refused the slot"),
            ("x@denied.localhost", "bare", "the upload service refused the slot (forbidden"),
            ("x@lost.nowhere.localhost", "bare", "no XEP-0363 upload service"),
            ("x@putfail.localhost", "bare", "the upload service answered the PUT with HTTP 500"),
        ]:
            with self.subTest(word=word, to=to):
                id_ = self.alice.message(to, word)
                if word == "badb64":
                    before = self.alice.expect(lambda s: s.attr.get("from") == to)
                    self.assertEqual(before.body, "Before the file", "the body still goes, first")
                error = self.alice.expect_id(id_)
                self.assertEqual(error.error()[:2], ("cancel", "internal-server-error"), error)
                self.assertIn("the bot's file could not be sent", error.error()[2])
                self.assertIn(reason, error.error()[2])
                self.barrier(self.alice, to=f"barrier@{to.split('@')[1]}")
                self.assertEqual(self.alice.received(lambda s: s.child("x", NS_OOB) is not None), [])
        put = self.ws.wait_for(lambda r: r["method"] == "PUT")
        self.assertEqual(put["body"], b"just bytes")
        self.assertEqual(put["headers"]["content-type"], "application/octet-stream")
        self.assertNotIn("authorization", put["headers"], "the web service's headers are its own")
        self.wait_log(r"http_file_share_access must list denied\.localhost")
        self.wait_log(r"Files cannot be sent: no XEP-0363 upload service")

    def test_a_file_that_no_message_would_carry_makes_the_reply_invalid(self):
        id_ = self.alice.message("x@bot.localhost", "presence")
        error = self.alice.expect_id(id_)
        self.assertEqual(error.error()[:2], ("cancel", "internal-server-error"), error)
        self.assertIn("invalid reply: 'kind' must be message with 'file'", error.error()[2])
        self.barrier(self.alice, to="barrier@bot.localhost")
        self.assertEqual(self.alice.received(lambda s: s.name == "presence"
                                             and s.attr.get("from") == "x@bot.localhost"), [])

    def test_a_push_with_a_file_answers_its_url_once_the_message_is_sent(self):
        alice = self.connect("alice", "push")
        to = "alice@localhost/push"
        status, answer, _ = self.push({"to": to, "from": "reports@bot.localhost", "body": "Your report",
                                       "file": {"data": b64(PNG), "name": "report.png",
                                                "content_type": "image/png", "desc": "Daily"}})
        self.assertEqual(status, 200, answer)
        first = alice.expect(lambda s: s.attr.get("from") == "reports@bot.localhost")
        self.assertEqual(first.body, "Your report")
        message = self.file_message(alice, "reports@bot.localhost")
        self.assertEqual(answer["url"], message.body)
        self.assertEqual(answer["id"], message.attr.get("id"))
        self.assertEqual(fetch(answer["url"]), (PNG, "image/png"))
        # Larger than component_push_max_size (1000 bytes here): allowed
        # for a file, read off Prosody's thread.
        status, answer, _ = self.push({"to": to, "file": {"data": b64(bytes(range(256)) * 20)}})
        self.assertEqual(status, 200, answer)
        self.assertEqual(fetch(answer["url"])[0], bytes(range(256)) * 20)
        self.file_message(alice, "bot.localhost")

    def test_a_push_whose_file_cannot_be_sent_says_why_and_sends_nothing(self):
        alice = self.connect("alice", "refused")
        to = "alice@localhost/refused"
        for host, body, status, reason in [
            ("bot.localhost", {"to": to, "body": "x", "file": {"data": "not base64!"}}, 400, "'file.data'"),
            ("bot.localhost", {"to": to, "file": {"data": b64(b"x"), "name": "a/b"}}, 400, "'file.name'"),
            ("bot.localhost", {"to": to, "kind": "presence", "file": {"data": b64(b"x")}}, 400, "'kind'"),
            ("bot.localhost", {"to": to, "file": {"data": b64(os.urandom(MAX_UPLOAD + 1))}}, 413,
             "component_post_max_upload"),
            ("bot.localhost", {"to": to, "file": {"data": b64(os.urandom(SERVICE_LIMIT + 1))}}, 413,
             "refused the slot"),
            ("bot.localhost", {"to": to, "body": "x" * 2000}, 413, "larger than 1000 bytes"),
            ("denied.localhost", {"to": to, "file": {"data": b64(b"x")}}, 502, "forbidden"),
            ("lost.nowhere.localhost", {"to": to, "file": {"data": b64(b"x")}}, 502, "no XEP-0363 upload service"),
            ("putfail.localhost", {"to": to, "file": {"data": b64(b"x")}}, 502, "PUT with HTTP 500"),
            ("putfail.localhost", {"to": to, "file": {"data": b64(b"x"), "name": "silent"}}, 504, "timed out"),
        ]:
            with self.subTest(host=host, status=status, reason=reason):
                got, answer, _ = self.push(body, host=host)
                self.assertEqual(got, status, answer)
                self.assertIn(reason, answer["error"])
        self.barrier(alice)
        self.assertEqual(alice.received(lambda s: s.name == "message" and s.attr.get("type") != "error"), [],
                         "nothing half-sent")
        self.assertGreaterEqual(self.metric("uploads_total", host="bot.localhost", outcome="too_large"), 2)


@once_per_prosody
class BigFileTest(ProsodyTestCase):
    """A 5 MiB file (the default limit) pushed while messages flow, to an
    upload service with its default limits (10 MiB)."""
    SECRETS = (TOKEN,)
    TOKEN = TOKEN

    @classmethod
    def setUpClass(cls):
        cls.ws = cls.web_service()
        cls.start_prosody({"bot.localhost": {"component_post_url": cls.ws.url + "/", "component_push_token": TOKEN}},
                          upload={"http_file_share_access": ["bot.localhost"]})

    def test_a_5_mib_file_pushed_while_messages_flow_arrives_intact(self):
        alice = self.connect("alice")
        data = os.urandom(5 * 1024 * 1024)
        answers = {}
        pusher = threading.Thread(target=lambda: answers.update(
            push=self.push({"to": "alice@localhost/test", "file": {"data": b64(data), "name": "big.bin"}})))
        pusher.start()
        sent = 0
        while pusher.is_alive() and sent < 500:
            sent += 1
            alice.message("echo@bot.localhost", f"m{sent}")
            alice.expect(lambda s: s.body == f"Did you say m{sent}?")
        pusher.join()
        status, answer, _ = answers["push"]
        self.assertEqual(status, 200, answer)
        self.assertGreater(sent, 1, "messages flowed during the upload")
        message = alice.expect(lambda s: s.child("x", NS_OOB) is not None)
        self.assertEqual(message.body, answer["url"])
        self.assertEqual(fetch(answer["url"])[0], data)


if __name__ == "__main__":
    unittest.main()
