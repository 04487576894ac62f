"""The auth server's public keys (JWKS), fetched over HTTP and cached.

Why a cache with these particular rules:
- Fetching the key set on every request would make the auth server a hard dependency of
  every call and add a round trip; keys change rarely, so they are kept for `ttl` seconds.
- A token signed with a key we have not seen (`kid` unknown) usually means the server rotated
  its keys, so the set is fetched again at once, unless the last fetch began less than
  `min_refetch_interval` ago (then the answer is "retry shortly", 503: the token may be fine) or
  this same `kid` was already looked for within `refetch_cooldown` (then it is unknown, 401).
  So a flood of made-up key ids costs the auth server one request per `min_refetch_interval`,
  and an attacker's fetch never holds a legitimately rotated key back for longer than that.
- A token whose `kid` is missing from a set fetched after the token arrived is refused (401):
  that set is the server's answer about it.
- When the auth server is down, the last good set keeps working (past `ttl`, up to `max_stale`)
  so a short outage does not log everybody out; failed fetches are retried at most once per
  `failure_backoff`, so requests do not pile up waiting on a dead server.
- Without any usable key set the caller gets `Unavailable` (503), never `Unauthenticated`
  (401): the token may be fine, and a client told "401" would throw away a good session.
- One `asyncio.Lock` coalesces concurrent fetches: a thousand requests arriving together with
  a cold cache make one request to the auth server, not a thousand.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self

import httpx
from jwt import PyJWK
from jwt.exceptions import PyJWKError

from taskflow.core.errors import Unavailable

log = logging.getLogger(__name__)

_MAX_REMEMBERED_KIDS = 4096
DEFAULT_MAX_STALE_SECONDS = 24 * 3600.0
"""How long an outage of the auth server can be ridden out on the last good key set."""


class UnknownKeyId(LookupError):
    """The key set, even freshly fetched, has no key with this `kid`."""


@dataclass(frozen=True, slots=True)
class PublicKey:
    """One verification key with the JWK fields that decide which algorithm may use it."""

    kid: str
    kty: str
    crv: str | None
    alg: str | None  # as declared by the JWK; None when it declares none
    key: Any  # a `cryptography` public key object, as PyJWT's `decode` takes it


class JwksCache:
    """Keys of one JWKS URL by `kid`, refreshed by the rules in the module docstring.

    Pass a shared `httpx.AsyncClient` to reuse its connection pool (and, in tests, its event
    hooks); without one, the cache makes its own and closes it in `aclose()`.
    """

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        ttl: float = 300.0,
        refetch_cooldown: float = 30.0,
        min_refetch_interval: float = 2.0,
        failure_backoff: float = 5.0,
        max_stale: float = DEFAULT_MAX_STALE_SECONDS,
        timeout: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self._client = client if client is not None else httpx.AsyncClient()
        self._owns_client = client is None
        self._ttl = ttl
        self._cooldown = refetch_cooldown
        self._min_interval = min_refetch_interval
        self._failure_backoff = failure_backoff
        self._max_stale = max_stale
        self._timeout = timeout
        self._clock = clock
        self._lock = asyncio.Lock()
        self._keys: dict[str, PublicKey] = {}
        self._fetched_at: float | None = None  # clock() of the last successful fetch
        self._started_at = float("-inf")  # clock() when the last fetch attempt began
        self._failed_until = float("-inf")  # after a failure, no fetch before this
        self._looked_for: dict[str, float] = {}  # unknown kid -> clock() of the fetch for it
        self._last_error: str | None = None

    async def get_key(self, kid: str) -> PublicKey:
        """The key with this `kid`.

        Raises `UnknownKeyId` when the auth server does not publish it, and `Unavailable`
        when no usable key set can be had (never fetched, or the last one too old) or when
        the key is unknown and the server cannot be asked about it.
        """
        arrived = self._clock()
        if self._wants_fetch(kid) or self._lock.locked():  # a fetch under way answers us too
            async with self._lock:  # one fetch at a time; the others wait for its result
                if self._wants_fetch(kid):  # still needed after waiting?
                    await self._refresh()
        if not self._usable():
            raise Unavailable(
                f"auth server unavailable: cannot fetch its signing keys from {self.url} "
                f"({self._last_error or 'no keys fetched yet'}). "
                "Retry shortly; if it persists, check that the auth server is running.",
            )
        key = self._keys.get(kid)
        if key is not None:
            return key
        if self._last_error is not None:
            # Perhaps a key the server rotated in during the outage: we cannot tell a new
            # key from a forged one, so say "try again" rather than "you are not signed in".
            raise Unavailable(
                f"auth server unavailable: token key {kid!r} is not in the cached key set and "
                f"{self.url} cannot be reached to refresh it ({self._last_error}). Retry shortly.",
            )
        if self._started_at >= arrived or self._recently_looked_for(kid):
            self._remember_looked_for(kid)
            raise UnknownKeyId(kid)
        raise Unavailable(  # the set predates the token and was fetched a moment ago
            f"token key {kid!r} is not in the key set fetched a moment ago: retry in a few "
            "seconds (the auth server may have just rotated its keys)"
        )

    def _usable(self) -> bool:
        """Is there a key set young enough to trust (fresh, or stale within `max_stale`)?"""
        if self._fetched_at is None or not self._keys:
            return False
        return self._clock() - self._fetched_at < self._max_stale

    def _wants_fetch(self, kid: str) -> bool:
        """Fetch if the set is old, or lacks a `kid` not looked for lately, unless a fetch began
        too recently (or failed too recently)."""
        now = self._clock()
        if now < self._failed_until or now - self._started_at < self._min_interval:
            return False
        fresh = self._fetched_at is not None and now - self._fetched_at < self._ttl
        if not fresh:
            return True
        return kid not in self._keys and not self._recently_looked_for(kid)

    def _recently_looked_for(self, kid: str) -> bool:
        looked = self._looked_for.get(kid)
        return looked is not None and self._clock() - looked < self._cooldown

    def _remember_looked_for(self, kid: str) -> None:
        """Remember an unknown kid (bounded: a flood of made-up ids cannot grow memory)."""
        self._looked_for.pop(kid, None)
        self._looked_for[kid] = self._started_at
        while len(self._looked_for) > _MAX_REMEMBERED_KIDS:
            self._looked_for.pop(next(iter(self._looked_for)))

    async def _refresh(self) -> None:
        """Fetch the set; on failure keep the old one and back off (call with the lock held)."""
        self._started_at = self._clock()
        try:
            keys = await self._fetch()
        except Exception as exc:  # any failure: keep the old set and back off
            self._last_error = f"{type(exc).__name__}: {exc}" if str(exc) else repr(exc)
            self._failed_until = self._clock() + self._failure_backoff
            log.warning("JWKS fetch from %s failed: %s", self.url, self._last_error)
            return
        self._keys, self._fetched_at, self._last_error = keys, self._clock(), None

    async def _fetch(self) -> dict[str, PublicKey]:
        """GET the JWKS and parse its signing keys; a set with none usable is a failure."""
        response = await self._client.get(
            self.url, timeout=self._timeout, headers={"accept": "application/json"}
        )
        response.raise_for_status()
        document = response.json()
        raw_keys = document.get("keys") if isinstance(document, Mapping) else None
        if not isinstance(raw_keys, list):
            raise ValueError("response is not a JWKS (no 'keys' list)")
        keys = {}
        for raw in raw_keys:
            parsed = _parse_key(raw)
            if parsed is not None:
                keys[parsed.kid] = parsed
        if not keys:
            raise ValueError("JWKS has no usable signing keys")
        return keys

    async def aclose(self) -> None:
        """Close the HTTP client if this cache created it."""
        if self._owns_client:
            await self._client.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


def _parse_key(raw: Any) -> PublicKey | None:
    """One JWK as a verification key, or None (with a log line) if it cannot be one.

    Keys without a `kid`, keys meant for encryption, and keys of types we cannot load are
    skipped rather than failing the whole set, so one odd key cannot lock everybody out.
    """
    if not isinstance(raw, Mapping) or not isinstance(raw.get("kid"), str):
        log.warning("JWKS entry without a string 'kid' skipped")
        return None
    if raw.get("use", "sig") != "sig":
        return None
    if raw.get("d") is not None:
        log.error("JWKS key %r skipped: it contains private key material", raw["kid"])
        return None
    try:
        parsed = PyJWK(dict(raw))
    except PyJWKError as exc:
        log.warning("JWKS key %r skipped: %s", raw["kid"], exc)
        return None
    alg, crv = raw.get("alg"), raw.get("crv")
    return PublicKey(
        kid=raw["kid"],
        kty=str(raw.get("kty")),
        crv=crv if isinstance(crv, str) else None,
        alg=alg if isinstance(alg, str) else None,
        key=parsed.key,
    )
