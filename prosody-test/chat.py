"""A terminal chat with a JID, for trying `make run` without an XMPP app:

    python3 prosody-test/chat.py --port 5222 echo@bot.localhost
"""

import argparse
import sys
import threading

from harness import XmppClient, DOMAIN


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("to", help="the JID to talk to, e.g. echo@bot.localhost")
    parser.add_argument("--port", type=int, default=5222)
    parser.add_argument("--user", default="me")
    args = parser.parse_args()
    client = XmppClient(args.port, f"{args.user}@{DOMAIN}", "chat").connect()
    print(f"connected as {client.jid}; type a line to send it to {args.to}, Ctrl-D to quit")

    def show():
        while True:
            stanza = client.inbox.get()
            if stanza is None:
                print("[connection closed]")
                return
            if stanza.name == "message":
                error = stanza.error()
                text = f"error: {error}" if error else stanza.body
                print(f"{stanza.attr.get('from')}: {text}", flush=True)

    threading.Thread(target=show, daemon=True).start()
    for line in sys.stdin:
        if line.strip():
            client.message(args.to, line.rstrip("\n"))
    client.close()


if __name__ == "__main__":
    main()
