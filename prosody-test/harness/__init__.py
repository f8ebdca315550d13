"""The Prosody test environment, one module per concern: `env` (which
Prosody and backend, paths, ports, waits), `prosody` (a real Prosody from a
temp config on 127.0.0.1), `web` (web services the module POSTs to),
`xmpp` (real XMPP clients), `keys` (keys and certificates), `storage` (a
PostgreSQL server of the tests' own), `schema` (the contract's JSON
Schema), `push` (POSTing to the push endpoint), `slix` (a slixmpp client,
for a real client library's XEP plugins; imported on its own, as
`harness.slix`), and `case` (ProsodyTestCase, the base of every end-to-end
test, with the helpers tests share).

Which Prosody and which network backend every test runs on is chosen in
`env`, from the environment: PROSODY=0.12 (Debian 12's package, the
default) or PROSODY=13 (`make prosody13`), NETWORK_BACKEND=epoll (default),
select or event.

Standard library only (and Debian's python3-cryptography for ed25519),
but for `slix`: slixmpp, from PyPI, in the venv of `make deps-examples`,
which `make test` runs the end-to-end tests with.
Every process started here is ended here, by its PID.
"""

from .case import ProsodyTestCase, stop_process
from .env import (BACKEND, DOMAIN, MUC_DOMAIN, UPLOAD_DOMAIN, PASSWORD, PROSODY, PROSODY_CMD, PROSODY_ROOTS, PROSODYCTL,
                  ROOT, SHELL_UNRELIABLE, SHELL_UNRELIABLE_WHY, SIGTERM_IGNORED, WAIT, free_port, memory_mib,
                  once_per_prosody, wait_for_port)
from .keys import Certificates, Ed25519Keys
from .prosody import Prosody, metric_value
from .push import post_push
from .schema import CONTRACT_SCHEMA, schema_errors
from .storage import PostgresServer
from .web import H2WebService, WebService, echo_handler, json_reply, ndjson_stream, reset_mid_body
from .xmpp import NS_CLIENT, NS_STANZAS, ComponentClient, Stanza, XmppClient, escape

__all__ = [
    "BACKEND", "CONTRACT_SCHEMA", "Certificates", "ComponentClient", "DOMAIN", "Ed25519Keys", "H2WebService",
    "MUC_DOMAIN", "NS_CLIENT", "NS_STANZAS", "PASSWORD", "PROSODY", "PROSODYCTL", "PROSODY_CMD", "PROSODY_ROOTS",
    "PostgresServer", "Prosody", "ProsodyTestCase", "ROOT", "SHELL_UNRELIABLE", "SHELL_UNRELIABLE_WHY",
    "SIGTERM_IGNORED", "Stanza", "WAIT", "WebService", "XmppClient", "echo_handler", "escape", "free_port",
    "json_reply", "memory_mib", "metric_value", "ndjson_stream", "once_per_prosody", "post_push", "reset_mid_body", "schema_errors",
    "stop_process",
    "wait_for_port",
]
