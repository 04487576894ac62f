"""Webhook secrets and signatures, as the Standard Webhooks specification defines them.

A secret is `whsec_` and base64 (32 random bytes here); its HMAC key is the decoded base64 part.
A delivery carries `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature`:
`v1,` and the base64 HMAC-SHA256 of `"{id}.{timestamp}.{body}"`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from datetime import UTC, datetime

SECRET_PREFIX = "whsec_"
USER_AGENT = "TaskFlow-Webhooks/2"
MESSAGE_PREFIX = "msg_"


def message_id(delivery_id: int) -> str:
    """A delivery's `webhook-id` (`msg_<row id>`): the same on every retry and redelivery."""
    return f"{MESSAGE_PREFIX}{delivery_id}"


def delivery_of(msg_id: str) -> int:
    """The delivery row id of a `webhook-id` that `message_id` made."""
    return int(msg_id.removeprefix(MESSAGE_PREFIX))


def still_signing(previous: str | None, until: datetime | None) -> str | None:
    """The secret a rotation replaced, while its overlap lasts (it signs beside the new one)."""
    if previous is None or until is None or until <= datetime.now(UTC):
        return None
    return previous


def new_secret() -> str:
    """`whsec_` and 32 random bytes in base64, as Standard Webhooks spells secrets."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    """The HMAC key of a `whsec_...` secret: its base64 part, decoded."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 over "{id}.{timestamp}.{body}">`."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def signed_headers(
    secret: str,
    msg_id: str,
    body: bytes,
    timestamp: int | None = None,
    *,
    also: str | None = None,
) -> dict:
    """A delivery's headers. `also`, a rotated-out secret still in its overlap, signs too: the
    specification's `webhook-signature` is a space-separated list, and a receiver accepts the
    delivery when any signature it can check matches."""
    when = int(time.time()) if timestamp is None else timestamp
    signatures = [sign(s, msg_id, when, body) for s in (secret, also) if s is not None]
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": msg_id,
        "webhook-timestamp": str(when),
        "webhook-signature": " ".join(signatures),
    }
