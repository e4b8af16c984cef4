"""Checks callbacks a real gitfaas sent against the receiver code README.md
documents, and against the Standard Webhooks reference library.

    verify.py README.md SECRET_FILE REQUEST_FILE...

Each REQUEST_FILE is one POST as a receiver read it off the socket (head,
blank line, body). The Python between the README's `callback-verify:begin`
and `callback-verify:end` markers is run exactly as written (its one fenced
block, nothing added), then for every request:
- the documented function accepts it, and refuses it altered: another body,
  another webhook-id, another timestamp, no signature, a signature under
  another key, a correct signature of a time beyond the tolerance;
- standardwebhooks' Webhook(secret).verify accepts it unchanged (and
  returns the body's JSON), and refuses the altered body.
Prints one line per check; exits 1 at the first that fails.
"""

import base64
import hashlib
import hmac
import json
import os
import re
import sys
import time

import standardwebhooks


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def documented_code(readme):
    text = open(readme, encoding="utf-8").read()
    block = re.search(r"<!-- callback-verify:begin[^>]*-->\s*```python\n(.*?)```\s*<!-- callback-verify:end -->", text, re.S)
    if not block:
        fail(f"no ```python block between the callback-verify markers in {readme}")
    namespace = {}
    exec(compile(block.group(1), f"{readme} (callback-verify)", "exec"), namespace)
    verify = namespace.get("verify_gitfaas_callback")
    if not callable(verify):
        fail("the documented code defines no verify_gitfaas_callback")
    return verify


def parse_request(path):
    raw = open(path, "rb").read()
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        fail(f"{path}: not an HTTP request")
    headers = {}
    for line in head.decode("latin-1").split("\r\n")[1:]:
        name, _, value = line.partition(":")
        headers[name.strip()] = value.strip()
    return headers, body


def with_header(headers, name, value):
    out = {k: v for k, v in headers.items() if k.lower() != name}
    if value is not None:
        out[name] = value
    return out


def flip_a_bit(body):
    middle = len(body) // 2
    return body[:middle] + bytes([body[middle] ^ 1]) + body[middle + 1 :]


def sign(key, msg_id, timestamp, body):
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def main():
    readme, secret_file, requests = sys.argv[1], sys.argv[2], sys.argv[3:]
    if not requests:
        fail("no request to check")
    secret = open(secret_file, encoding="utf-8").read().strip()
    verify = documented_code(readme)
    reference = standardwebhooks.Webhook(secret)
    other_key = os.urandom(32)
    for path in requests:
        headers, body = parse_request(path)
        lower = {k.lower(): v for k, v in headers.items()}
        for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
            if name not in lower:
                fail(f"{path}: no {name} header")
        msg_id = lower["webhook-id"]
        timestamp = int(lower["webhook-timestamp"])

        if not verify(secret, headers, body):
            fail(f"{path}: the documented code refuses a real callback")
        print(f"ok: the documented code verifies {msg_id} at {timestamp}")
        key = base64.b64decode(secret.removeprefix("whsec_"))
        stale = timestamp - 3600
        altered = {
            "another body": (headers, body + b" "),
            "a body with one bit flipped": (headers, flip_a_bit(body)),
            "another webhook-id": (with_header(headers, "webhook-id", msg_id + "x"), body),
            "another timestamp": (with_header(headers, "webhook-timestamp", str(timestamp + 1)), body),
            "no signature": (with_header(headers, "webhook-signature", None), body),
            "a signature under another key": (with_header(headers, "webhook-signature", sign(other_key, msg_id, timestamp, body)), body),
            "a signature of an hour ago": (
                with_header(with_header(headers, "webhook-timestamp", str(stale)), "webhook-signature", sign(key, msg_id, stale, body)),
                body,
            ),
        }
        for what, (h, b) in altered.items():
            if verify(secret, h, b):
                fail(f"{path}: the documented code accepts {what}")
            print(f"ok: the documented code refuses {what}")

        try:
            parsed = reference.verify(body, headers)
        except standardwebhooks.webhooks.WebhookVerificationError as e:
            fail(f"{path}: standardwebhooks refuses a real callback: {e}")
        if parsed != json.loads(body):
            fail(f"{path}: standardwebhooks returned another body")
        print(f"ok: standardwebhooks {standardwebhooks_version()} verifies {msg_id}")
        try:
            reference.verify(body + b" ", headers)
            fail(f"{path}: standardwebhooks accepts another body")
        except standardwebhooks.webhooks.WebhookVerificationError:
            print("ok: standardwebhooks refuses another body")
    print(f"all {len(requests)} callbacks verified (checked at {int(time.time())})")


def standardwebhooks_version():
    from importlib.metadata import version

    return version("standardwebhooks")


if __name__ == "__main__":
    main()
