"""Minimal real XMPP clients: a c2s client (STARTTLS optional) and a
XEP-0114 component, and the stanzas they receive."""

import base64
import hashlib
import queue
import re
import socket
import threading
import time
import xml.etree.ElementTree as ET

from .env import DOMAIN, PASSWORD, WAIT

NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


class Stanza:
    """A received stanza: an ElementTree element with small helpers."""

    def __init__(self, element):
        self.el = element
        self.name = element.tag.split("}")[-1]
        self.attr = element.attrib

    def child(self, name, ns=None):
        for c in self.el:
            tag_ns, _, tag = c.tag[1:].partition("}") if c.tag.startswith("{") else ("", "", c.tag)
            if tag == name and (ns is None or tag_ns == ns):
                return c
        return None

    @property
    def body(self):
        b = self.child("body")
        return b.text if b is not None else None

    def error(self):
        """(type, condition, text) of a stanza error, or None."""
        e = self.child("error")
        if e is None:
            return None
        condition, text = None, None
        for c in e:
            tag = c.tag.split("}")[-1]
            if tag == "text":
                text = c.text
            elif condition is None:
                condition = tag
        return e.get("type"), condition, text

    def __repr__(self):
        return ET.tostring(self.el, encoding="unicode")


class ComponentClient:
    """A XEP-0114 external component (as gateways and bridges connect):
    stream to `host`, handshake with its secret; then `sock` carries
    stanzas from any JID at `host`."""

    def __init__(self, port, host, secret):
        self.port, self.host, self.secret = port, host, secret
        self.sock = None

    def connect(self):
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        self.sock.sendall(
            f"<stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx.jabber.org/streams' "
            f"to='{self.host}'>".encode()
        )
        data = b""
        while b">" not in data.split(b"<stream:stream", 1)[-1]:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("stream closed before its header")
            data += chunk
        stream_id = re.search(rb"\bid=['\"]([^'\"]+)['\"]", data)[1].decode()
        digest = hashlib.sha1((stream_id + self.secret).encode()).hexdigest()
        self.sock.sendall(f"<handshake>{digest}</handshake>".encode())
        data = b""
        while b"<handshake" not in data:
            chunk = self.sock.recv(4096)
            if not chunk or b"<stream:error" in chunk:
                raise ConnectionError(f"handshake refused: {chunk!r}")
            data += chunk
        self.sock.settimeout(None)
        return self


class XmppClient:
    """A minimal XMPP client over plain TCP: SASL PLAIN, bind, send, receive."""

    def __init__(self, port, bare_jid, resource):
        self.port = port
        self.bare = bare_jid
        self.jid = f"{bare_jid}/{resource}"
        self.resource = resource
        self.sock = None
        self.inbox = queue.Queue()
        self.pending = []
        self.counter = 0

    def _open_stream(self):
        self.sock.sendall(
            f"<?xml version='1.0'?><stream:stream to='{DOMAIN}' version='1.0' "
            "xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams'>".encode()
        )
        self.parser = ET.XMLPullParser(events=("start", "end"))
        self.depth = 0

    def _elements(self):
        """The depth-1 elements (stanzas) completed by the data fed so far."""
        for event, el in self.parser.read_events():
            if event == "start":
                self.depth += 1
            else:
                self.depth -= 1
                if self.depth == 1:
                    yield el

    def _read_top(self):
        """Blocking read of the next depth-1 element (handshake only)."""
        while True:
            for el in self._elements():
                return el
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("stream closed during handshake")
            self.parser.feed(data)

    def connect(self, reader=True, tls=None):
        """Logs in and binds; then a reader thread fills `inbox`, unless
        `reader` is false and the caller reads the socket itself. `tls`: an
        ssl.SSLContext to go on over STARTTLS with (verifying the domain)."""
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=WAIT)
        self._open_stream()
        self._read_top()  # features
        if tls is not None:
            self.sock.sendall(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
            proceed = self._read_top()
            if not proceed.tag.endswith("proceed"):
                raise ConnectionError(f"STARTTLS refused: {ET.tostring(proceed)}")
            self.sock = tls.wrap_socket(self.sock, server_hostname=DOMAIN)
            self._open_stream()
            self._read_top()  # features
        user = self.bare.split("@")[0]
        token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
        self.sock.sendall(
            f"<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>{token}</auth>".encode()
        )
        result = self._read_top()
        if not result.tag.endswith("success"):
            raise ConnectionError(f"authentication failed: {ET.tostring(result)}")
        self._open_stream()
        self._read_top()  # features
        self.sock.sendall(
            "<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'>"
            f"<resource>{self.resource}</resource></bind></iq>".encode()
        )
        bound = self._read_top()
        jid = bound.find(".//{urn:ietf:params:xml:ns:xmpp-bind}jid")
        self.jid = jid.text
        self.sock.settimeout(None)
        if reader:
            threading.Thread(target=self._read_loop, daemon=True).start()
        return self

    def _read_loop(self):
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                self.parser.feed(data)
                for el in self._elements():
                    self.inbox.put(Stanza(el))
        except (OSError, ET.ParseError):
            pass
        self.inbox.put(None)

    def next_id(self):
        self.counter += 1
        return f"{self.resource}-{self.counter}"

    def send(self, xml):
        self.sock.sendall(xml.encode() if isinstance(xml, str) else xml)

    def message(self, to, body, type_="chat", id_=None, extra=""):
        id_ = id_ or self.next_id()
        body_xml = f"<body>{escape(body)}</body>" if body is not None else ""
        self.send(f"<message to='{to}' type='{type_}' id='{id_}'>{body_xml}{extra}</message>")
        return id_

    def iq(self, to, type_, payload, id_=None):
        id_ = id_ or self.next_id()
        self.send(f"<iq to='{to}' type='{type_}' id='{id_}'>{payload}</iq>")
        return id_

    def expect(self, predicate=lambda s: True, timeout=WAIT):
        """The next stanza matching `predicate`; others stay for later."""
        for i, stanza in enumerate(self.pending):
            if predicate(stanza):
                return self.pending.pop(i)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no matching stanza for {self.jid}; unmatched: {self.pending}")
            try:
                stanza = self.inbox.get(timeout=remaining)
            except queue.Empty:
                continue
            if stanza is None:
                raise AssertionError("the stream closed")
            if predicate(stanza):
                return stanza
            self.pending.append(stanza)

    def expect_id(self, id_, timeout=WAIT):
        return self.expect(lambda s: s.attr.get("id") == id_, timeout)

    def received(self, predicate=lambda s: True):
        """Everything received so far that matches, without waiting."""
        while True:
            try:
                stanza = self.inbox.get_nowait()
            except queue.Empty:
                break
            if stanza is not None:
                self.pending.append(stanza)
        return [s for s in self.pending if predicate(s)]

    def ping_server(self):
        """Round trip through Prosody's own mod_ping: proves the loop is free."""
        id_ = self.iq(DOMAIN, "get", "<ping xmlns='urn:xmpp:ping'/>")
        return self.expect_id(id_)

    def close(self):
        try:
            self.send("</stream:stream>")
            self.sock.close()
        except OSError:
            pass


def escape(text):
    return (text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
            .replace("'", "&apos;").replace('"', "&quot;"))
