"""Agent API keys: format, checksum and hashing, with no database.

An agent authenticates with a long-lived key instead of a Better Auth JWT. The format is

    tf_<30 random base62 characters><6 base62 characters of CRC32 over the random part>

Why each part:
- The `tf_` prefix tells a key from a JWT at a glance (`is_api_key`), lets secret scanners
  recognise a leaked TaskFlow key, and tells a human what the string is.
- 30 characters drawn from 62 by `secrets` carry about 178 bits, well above the 128 needed
  to make guessing hopeless, so a fast hash (SHA-256) is enough to store it: no salt or slow
  KDF is needed for a value with that much entropy.
- The CRC32 suffix (the same idea as GitHub's tokens) catches a mistyped or truncated key
  offline, before any database lookup, so a typo gets "this is not a valid key" instead of a
  lookup and a confusing "unknown key". It is not a security feature: anyone can compute it.

The database half stores only `hash_api_key(key)` and the display id from `key_id(key)`;
the full key is shown once at creation and never again.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
import secrets
import string
import zlib

API_KEY_PREFIX = "tf_"
"""Every agent key starts with this; anything else is treated as a JWT."""

ALPHABET = string.digits + string.ascii_letters
"""Base62: URL-safe, shell-safe, and double-click selects the whole key."""

RANDOM_LENGTH = 30
CHECKSUM_LENGTH = 6
"""62**6 > 2**32, so any CRC32 value fits in six characters."""
KEY_ID_LENGTH = 8
"""Random characters kept in the display id: enough to tell a user's keys apart."""

RANDOM_BITS = RANDOM_LENGTH * math.log2(len(ALPHABET))
"""About 178 bits of randomness per key."""
_KEY_RE = re.compile(
    rf"^{re.escape(API_KEY_PREFIX)}[0-9A-Za-z]{{{RANDOM_LENGTH + CHECKSUM_LENGTH}}}$"
)


def _base62(number: int, width: int) -> str:
    """Encode a non-negative integer in exactly `width` base62 digits (zero-padded)."""
    digits = []
    for _ in range(width):
        number, remainder = divmod(number, 62)
        digits.append(ALPHABET[remainder])
    if number:
        raise ValueError("number does not fit the width")
    return "".join(reversed(digits))


def _checksum(random_part: str) -> str:
    """CRC32 of the random part in base62: detects every single-character typo."""
    return _base62(zlib.crc32(random_part.encode("ascii")), CHECKSUM_LENGTH)


def generate_api_key() -> tuple[str, str]:
    """Make a new agent key; returns `(full_key, key_id)`.

    Show `full_key` once and store only `hash_api_key(full_key)`; `key_id` (the prefix and the
    first random characters) is safe to store and display so users can tell keys apart.
    """
    random_part = "".join(secrets.choice(ALPHABET) for _ in range(RANDOM_LENGTH))
    key = API_KEY_PREFIX + random_part + _checksum(random_part)
    return key, key_id(key)


def key_id(key: str) -> str:
    """The non-secret display id of a key, e.g. `tf_3kTz9QaB` (about 47 of its 178 bits)."""
    return key[: len(API_KEY_PREFIX) + KEY_ID_LENGTH]


def is_api_key(token: str) -> bool:
    """Is this bearer token meant to be an agent key (rather than a JWT)?

    Only the prefix is tested, so a malformed key is still routed to the key path and gets a
    precise error there instead of a baffling "malformed JWT".
    """
    return token.startswith(API_KEY_PREFIX)


def checksum_ok(token: str) -> bool:
    """Does the token have the key layout and a matching checksum? Offline; no lookup."""
    if not _KEY_RE.match(token):
        return False
    body = token[len(API_KEY_PREFIX) :]
    random_part, checksum = body[:RANDOM_LENGTH], body[RANDOM_LENGTH:]
    return constant_time_equals(_checksum(random_part), checksum)


def looks_like_api_key(token: str) -> bool:
    """Prefix, length, alphabet and checksum all right: worth a database lookup."""
    return is_api_key(token) and checksum_ok(token)


def hash_api_key(key: str) -> str:
    """SHA-256 hex digest: what the database stores and looks keys up by.

    A plain hash suffices (see the module docstring): the key's entropy makes brute force
    infeasible, and a deterministic hash can be indexed for a single-row lookup.
    """
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def constant_time_equals(a: str, b: str) -> bool:
    """Compare secrets (or their hashes) without leaking, through timing, how much matched."""
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def api_key_matches(key: str, stored_hash: str) -> bool:
    """Does `key` hash to `stored_hash`? Constant-time, for a row fetched by another column."""
    return constant_time_equals(hash_api_key(key), stored_hash)
