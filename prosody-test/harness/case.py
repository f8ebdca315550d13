"""ProsodyTestCase, the base of every end-to-end test, and the helpers tests
share."""

import functools
import re
import time
import unittest

from .env import WAIT
from .keys import Certificates
from .web import WebService
from .prosody import Prosody
from .push import post_push


class either:
    """A method that gets the class when called on it (in setUpClass) and the
    instance when called on one (in a test or setUp)."""

    def __init__(self, method):
        self.method = method

    def __get__(self, obj, cls):
        return functools.partial(self.method, cls if obj is None else obj)


def _on_teardown(owner, stop, *args):
    """Stops what a class (at its end) or a test (at its end) started."""
    if isinstance(owner, type):
        owner.addClassCleanup(stop, *args)
    else:
        owner.addCleanup(stop, *args)


def _stop_prosody(prosody, secrets):
    started, alive = prosody.proc is not None, prosody.alive()
    log = prosody.log()
    prosody.cleanup()
    assert alive or not started, "Prosody died during the tests"
    for secret in secrets:
        assert secret not in log, "a secret reached Prosody's log"


def stop_process(proc):
    """Ends a process a test started (a bot, a web service), by its PID."""
    proc.terminate()
    proc.wait(timeout=WAIT)


# push()'s default: the test class's TOKEN.
_CLASS_TOKEN = object()


class ErrorReply(tuple):
    """An error reply's (type, condition, text), with `id`, the id of the
    stanza it answers."""

    def __new__(cls, error, id_):
        reply = super().__new__(cls, error)
        reply.id = id_
        return reply


def _stop_web_service(service):
    service.stop()
    assert not service.violations, f"requests outside the contract's schema: {service.violations[:5]}"


class ProsodyTestCase(unittest.TestCase):
    """The base of every end-to-end test: a Prosody (the harness's PROSODY and
    NETWORK_BACKEND), web services, XMPP clients, and readers of Prosody's
    log, metrics, admin shell and module status. What a class starts in
    setUpClass lives until the class ends; what a test starts, until the test
    ends. A Prosody that died fails its tests, and so does a secret (one of
    SECRETS) found in its log."""

    SECRETS = ()
    prosody = None

    @either
    def start_prosody(owner, components, start=True, **options):
        """A Prosody with these components (`start=False`: configured only)."""
        owner.prosody = Prosody(components, **options)
        _on_teardown(owner, _stop_prosody, owner.prosody, owner.SECRETS)
        return owner.prosody.start() if start else owner.prosody

    @either
    def web_service(owner, handler=None, port=0, certificate=None):
        """A web service; every request it gets must match the contract's
        JSON Schema (docs/contract.schema.json), or the test fails."""
        service = WebService(handler=handler, port=port, certificate=certificate)
        _on_teardown(owner, _stop_web_service, service)
        return service

    @either
    def web_services(owner):
        """`ws` (HTTP), and with `certs`, `https` (trusted through the
        private CA) and `untrusted`."""
        owner.ws = owner.web_service()
        owner.certs = Certificates()
        owner.https, owner.untrusted = owner.certs.services()
        for service in (owner.https, owner.untrusted):
            _on_teardown(owner, _stop_web_service, service)
        _on_teardown(owner, owner.certs.cleanup)

    @either
    def connect(owner, user, resource="test"):
        client = owner.prosody.client(user, resource)
        _on_teardown(owner, client.close)
        return client

    def log(self):
        return self.prosody.log()

    def wait_log(self, pattern, count=1, timeout=WAIT):
        """Waits (bounded) until Prosody's log has `count` lines matching."""
        deadline = time.monotonic() + timeout
        while True:
            found = len(re.findall(pattern, self.prosody.log()))
            if found >= count:
                return found
            if time.monotonic() > deadline:
                raise AssertionError(f"log has {found} of {count} x {pattern!r}")
            time.sleep(0.05)

    def metric(self, name, text=None, **labels):
        return self.prosody.metric(name, text, **labels)

    def shell(self, *args):
        return self.prosody.shell(*args)

    def barrier(self, client, to="barrier@bot.localhost"):
        """A round trip through the same path: a message to `to` (answered
        "Did you say barrier?"), sent to the JID of the stanzas it fences,
        is POSTed only after their answers are in (one conversation goes in
        order), so whatever the component was going to send for them has
        arrived when it returns."""
        client.message(to, "barrier")
        client.expect(lambda s: s.body == "Did you say barrier?" and s.attr.get("from") == to)

    def error_to(self, client, to, body="hi"):
        """Sends a message that must be answered with an error; its
        (type, condition, text), with `.id`."""
        id_ = client.message(to, body)
        stanza = client.expect_id(id_)
        self.assertEqual(stanza.attr.get("type"), "error", stanza)
        return ErrorReply(stanza.error(), id_)

    def push(self, body, host="bot.localhost", token=_CLASS_TOKEN, **options):
        """POSTs to the push endpoint of this test's Prosody, with the
        class's TOKEN unless `token` says another (None: no credentials);
        see harness.push.post_push."""
        if token is _CLASS_TOKEN:
            token = getattr(self, "TOKEN", None)
        return post_push(self.prosody.http_port, body, host=host, token=token, **options)

    def status(self, host):
        """The module's status on `host` (module:set_status), as (level, text)."""
        info = self.shell(f"module:info('component_http', '{host}')")
        match = re.search(r"status: \[(\w+)\] (.*)", info)
        return match.groups() if match else None
