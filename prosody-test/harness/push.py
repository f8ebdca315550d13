"""POSTing to the module's push endpoint (docs/contract.md §10), as a web
service would."""

import http.client
import json

PATH = "/component_http"


def post_push(port, body, host="bot.localhost", token=None, content_type="application/json", headers=None,
              source="127.0.0.1", timeout=30):
    """POSTs `body` (a dict as JSON, or text or bytes as they are) to the push
    endpoint of `host` on Prosody's HTTP `port`, from `source`, with `token`
    as a bearer token. Returns the status, the answer (JSON, or the raw body
    when it is not JSON) and the headers (lower-case names)."""
    if isinstance(body, (dict, list)):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    all_headers = {"Host": host, "Content-Type": content_type}
    if token:
        all_headers["Authorization"] = f"Bearer {token}"
    all_headers.update(headers or {})
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, source_address=(source, 0))
    try:
        conn.request("POST", PATH, body=body, headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
        try:
            answer = json.loads(raw)
        except ValueError:
            answer = raw
        return response.status, answer, {k.lower(): v for k, v in response.getheaders()}
    finally:
        conn.close()
