"""Keys and certificates made for a test: an ed25519 pair in the Standard
Webhooks form, and a private CA with the certificates it signs."""

import base64
import os
import shutil
import subprocess
import tempfile

from .web import WebService


class Ed25519Keys:
    """A fresh ed25519 key pair in the Standard Webhooks form, made and used
    with Python's `cryptography`, independently of the module's own crate:
    `signing_key` (whsk_), `public_key` (whpk_), `sign` and `verifies`."""

    def __init__(self):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PrivateFormat, PublicFormat, NoEncryption
        self.private = Ed25519PrivateKey.generate()
        seed = self.private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        public = self.private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.signing_key = "whsk_" + base64.b64encode(seed).decode()
        self.public_key = "whpk_" + base64.b64encode(public).decode()

    @staticmethod
    def content(webhook_id, timestamp, body):
        return f"{webhook_id}.{timestamp}.".encode() + body

    def sign(self, webhook_id, timestamp, body):
        """A `v1a,<base64>` signature over `id.timestamp.body`."""
        return "v1a," + base64.b64encode(self.private.sign(self.content(webhook_id, timestamp, body))).decode()

    def verifies(self, request):
        """Whether a recorded request carries a `v1a` signature by this key."""
        from cryptography.exceptions import InvalidSignature
        headers = request["headers"]
        content = self.content(headers["webhook-id"], headers["webhook-timestamp"], request["body"])
        for given in headers.get("webhook-signature", "").split(" "):
            if given.startswith("v1a,"):
                try:
                    self.private.public_key().verify(base64.b64decode(given[4:]), content)
                    return True
                except (InvalidSignature, ValueError):
                    pass
        return False


class Certificates:
    """A private CA with a server certificate for 127.0.0.1, and a
    self-signed certificate that nothing trusts. Made with openssl."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="certs-")
        self.ca = self.path("ca.pem")
        self.trusted = (self.path("server.pem"), self.path("server.key"))
        self.untrusted = (self.path("self.pem"), self.path("self.key"))
        san = self.path("san.ext")
        with open(san, "w") as f:
            f.write("subjectAltName=IP:127.0.0.1\n")
        for command in [
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.path("ca.key"),
             "-out", self.ca, "-days", "2", "-subj", "/CN=Test CA"],
            ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", self.trusted[1],
             "-out", self.path("server.csr"), "-subj", "/CN=127.0.0.1"],
            ["x509", "-req", "-in", self.path("server.csr"), "-CA", self.ca,
             "-CAkey", self.path("ca.key"), "-CAcreateserial", "-out", self.trusted[0],
             "-days", "2", "-extfile", san],
            ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", self.untrusted[1],
             "-out", self.untrusted[0], "-days", "2", "-subj", "/CN=127.0.0.1",
             "-addext", "subjectAltName=IP:127.0.0.1", "-addext", "basicConstraints=critical,CA:FALSE"],
        ]:
            subprocess.run(["openssl", *command], check=True, capture_output=True, timeout=60)

    def path(self, name):
        return os.path.join(self.dir, name)

    def services(self):
        """Two HTTPS web services: one with the CA's certificate, one
        self-signed."""
        return WebService(certificate=self.trusted), WebService(certificate=self.untrusted)


    def cleanup(self):
        shutil.rmtree(self.dir, ignore_errors=True)
