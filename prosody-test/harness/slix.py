"""A slixmpp client (PyPI; `make deps-examples` puts it in the venv the
end-to-end tests run with): a real client library, with its XEP plugins,
on an asyncio loop of its own in a thread, so that tests call it plainly."""

import asyncio
import threading

import slixmpp

from .env import DOMAIN, PASSWORD, WAIT


class SlixClient:
    """`user`@DOMAIN/`resource` logged in to the c2s `port` (plain: the test
    Prosody offers no TLS), with the disco, data forms and ad-hoc commands
    plugins. `run(coroutine)` runs on its loop and returns the result."""

    PLUGINS = ("xep_0030", "xep_0004", "xep_0050")

    def __init__(self, port, user, resource="slixmpp"):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.xmpp = self.run(self._connect(port, f"{user}@{DOMAIN}/{resource}"))

    def run(self, awaitable, timeout=WAIT):
        """Awaits `awaitable` (a coroutine, or a future such as a sent
        IQ's) on the client's loop; its result."""
        async def wait():
            return await awaitable
        return asyncio.run_coroutine_threadsafe(wait(), self.loop).result(timeout)

    async def _connect(self, port, jid):
        xmpp = slixmpp.ClientXMPP(jid, PASSWORD, plugin_config={
            "feature_mechanisms": {"unencrypted_plain": True}})
        xmpp.enable_starttls = False
        xmpp.enable_direct_tls = False
        xmpp.enable_plaintext = True
        for plugin in self.PLUGINS:
            xmpp.register_plugin(plugin)
        started = self.loop.create_future()
        xmpp.add_event_handler("session_start", lambda _: started.done() or started.set_result(True))
        xmpp.add_event_handler("failed_auth", lambda _: started.done() or started.set_exception(
            AssertionError("slixmpp could not log in")))
        xmpp.connect("127.0.0.1", port)
        await asyncio.wait_for(started, WAIT)
        return xmpp

    def close(self):
        async def disconnect():
            await self.xmpp.disconnect(wait=1.0)
            # slixmpp's own tasks end here, not at the interpreter's exit
            # (where they would complain that their loop is gone).
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        try:
            self.run(disconnect())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(WAIT)
