"""An independent verifier of Copernica-signed web calls, for the black-box tests: it follows
Copernica's checklist for receivers (webhook security; the copernica/webhook-security verifier)
and draft-cavage-http-signatures-11, using Python's `cryptography` package and nothing of the
service's own signing code.

Reads one JSON object on stdin: method, target (path and query as received), headers (lower-case
names), body (base64), txt (the TXT record published at the key id) and copernica_id (the value
X-Copernica-ID must have). Prints {"ok": true, "signing_string": ...} and exits 0 when the call
verifies; otherwise prints {"ok": false, "error": ...} and exits 1.
"""

import base64
import email.utils
import hashlib
import json
import re
import sys
import time

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import load_der_public_key

REQUIRED = ["(request-target)", "host", "date", "content-length", "content-type", "x-copernica-id", "digest"]


class Refused(Exception):
    pass


def dkim_key(txt):
    tags = {}
    for part in txt.split(";"):
        if "=" in part:
            name, value = part.split("=", 1)
            tags[name.strip()] = value.strip()
    if tags.get("v") != "DKIM1" or tags.get("k", "rsa") != "rsa" or not tags.get("p"):
        raise Refused("the TXT record is not an RSA DKIM key")
    return load_der_public_key(base64.b64decode(tags["p"]))


def verify(call):
    headers = {name.lower(): value for name, value in call["headers"].items()}
    body = base64.b64decode(call["body"])
    if "signature" not in headers:
        raise Refused("no Signature header")
    params = dict(re.findall(r'(\w+)="([^"]*)"', headers["signature"]))
    if params.get("algorithm") != "rsa-sha256":
        raise Refused("the algorithm is not rsa-sha256")
    signed = params.get("headers", "date").split(" ")
    for name in REQUIRED:
        if name not in signed:
            raise Refused(f"the signature does not cover {name}")
    if not params.get("keyId"):
        raise Refused("no keyId")
    digest = headers.get("digest", "")
    if not digest.startswith("SHA-256="):
        raise Refused("no SHA-256 digest")
    if base64.b64decode(digest[len("SHA-256="):]) != hashlib.sha256(body).digest():
        raise Refused("the digest does not match the body")
    if headers.get("content-length") != str(len(body)):
        raise Refused("the content length does not match the body")
    if headers.get("x-copernica-id") != call["copernica_id"]:
        raise Refused("X-Copernica-ID is not the expected account")
    lines = []
    for name in signed:
        if name == "(request-target)":
            lines.append(f"(request-target): {call['method'].lower()} {call['target']}")
        elif name in headers:
            lines.append(f"{name}: {headers[name].strip()}")
        else:
            raise Refused(f"the signed header {name} is missing")
    signing_string = "\n".join(lines)
    sent = email.utils.parsedate_to_datetime(headers["date"]).timestamp()
    if abs(time.time() - sent) > 300:
        raise Refused("the date is not recent")
    try:
        dkim_key(call["txt"]).verify(
            base64.b64decode(params["signature"]), signing_string.encode(), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        raise Refused("the signature does not verify") from None
    return signing_string


def main():
    try:
        signing_string = verify(json.load(sys.stdin))
    except Refused as refused:
        print(json.dumps({"ok": False, "error": str(refused)}))
        return 1
    print(json.dumps({"ok": True, "signing_string": signing_string}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
