"""Schemathesis hooks of tests/schemathesis/check.sh.

X-Callback-Url names where gitfaas POSTs a request's outcome. Left to
schemathesis, it would be any URL at all, and gitfaas would deliver to a
public address; this machine may send traffic to loopback only. So every
generated value is replaced, right before the request is sent, by the
loopback address of GITFAAS_CALLBACK_SINK (which gitfaas is started to
allow), and deliveries stay on this machine.

A generated topic is almost never one that exists, and a publish to an
unknown topic stops at its first check; so three topics in four become
the served one (`note`), chosen from a checksum of the generated name so
that a seed still replays.
"""

import os
import zlib

import schemathesis

SINK = os.environ["GITFAAS_CALLBACK_SINK"]
TOPIC = "note"


@schemathesis.hook
def before_call(context, case, **kwargs):
    if not case.headers:
        return
    for name in list(case.headers):
        if name.lower() == "x-callback-url":
            case.headers[name] = SINK


@schemathesis.hook
def map_path_parameters(context, path_parameters):
    topic = (path_parameters or {}).get("topic")
    if isinstance(topic, str) and zlib.crc32(topic.encode("utf-8", "surrogatepass")) % 4:
        path_parameters["topic"] = TOPIC
    return path_parameters
