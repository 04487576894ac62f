"""Verifying Better Auth's JWTs: who the caller is, without a database.

Why the checks are the ones below (RFC 8725, JWT best current practice):
- Only asymmetric algorithms from an allow-list are accepted. `alg: none` would accept an
  unsigned token, and HS256 "signed" with the server's *public* key (which anyone can fetch)
  is the classic algorithm-confusion forgery; both are refused before any key is touched.
- The key must fit the algorithm: its type (`kty`, and curve) must be the one the header's
  `alg` needs, and if the JWK names an `alg` it must be that one. A key is never used with an
  algorithm it was not made for.
- Signature, `exp`, `nbf`/`iat`, `iss` and `aud` are checked, with a small leeway for clock
  skew; `sub`, `exp`, `iss` and `aud` must be present, and `sub` must be a non-empty string.
- Keys come only from the configured JWKS URL: header fields that point elsewhere (`jku`,
  `x5u`, an embedded `jwk`) are ignored, and a `crit` header is refused because we implement
  no JWS extensions.

Every refusal is `Unauthenticated` (401) with a message saying what was wrong and what to do;
an auth server that cannot be reached is `Unavailable` (503) instead (see `jwks.py`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import httpx
import jwt
from jwt.exceptions import (
    DecodeError,
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAudienceError,
    InvalidIssuerError,
    InvalidSignatureError,
    InvalidTokenError,
    MissingRequiredClaimError,
)

from taskflow.core.auth.jwks import JwksCache, PublicKey, UnknownKeyId
from taskflow.core.config import Settings
from taskflow.core.errors import Unauthenticated

DEFAULT_ALGORITHMS = frozenset({"EdDSA", "RS256", "PS256", "ES256"})
"""Better Auth signs with EdDSA (Ed25519) by default; RS256, PS256 and ES256 are configurable."""

KEY_TYPES: Mapping[str, tuple[str, frozenset[str] | None]] = {
    "EdDSA": ("OKP", frozenset({"Ed25519", "Ed448"})),
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", frozenset({"P-256"})),
    "ES384": ("EC", frozenset({"P-384"})),
    "ES512": ("EC", frozenset({"P-521"})),
}
"""Which key type (and curves) each asymmetric algorithm needs; nothing else can be allowed."""

REQUIRED_CLAIMS = ("sub", "exp", "iss", "aud")
MAX_TOKEN_LENGTH = 16 * 1024
"""Bigger than any real session JWT; refusing early keeps parsing cheap for junk input."""

_SIGN_IN_AGAIN = "Sign in again to get a new token."


@dataclass(frozen=True, slots=True)
class JwtClaims:
    """The verified identity in a token. `claims` holds every claim, read-only."""

    sub: str
    email: str | None
    name: str | None
    role: str | None
    claims: Mapping[str, Any] = field(repr=False)

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> JwtClaims:
        def text(name: str) -> str | None:
            value = payload.get(name)
            return value if isinstance(value, str) else None

        return cls(
            sub=str(payload["sub"]),
            email=text("email"),
            name=text("name"),
            role=text("role"),
            claims=MappingProxyType(dict(payload)),
        )


class JwtVerifier:
    """Checks a bearer JWT against the auth server's JWKS and returns its claims."""

    def __init__(
        self,
        jwks: JwksCache,
        *,
        issuer: str,
        audience: str | Sequence[str],
        leeway: float = 30.0,
        algorithms: Iterable[str] = DEFAULT_ALGORITHMS,
    ) -> None:
        allowed = frozenset(algorithms)
        not_asymmetric = allowed - KEY_TYPES.keys()
        if not allowed or not_asymmetric:
            raise ValueError(
                f"algorithms must be asymmetric ones from {sorted(KEY_TYPES)}; "
                f"got {sorted(not_asymmetric) or 'none'}"
            )
        self.jwks = jwks
        self.issuer = issuer
        self.audience = audience if isinstance(audience, str) else list(audience)
        self.leeway = leeway
        self.algorithms = allowed

    @classmethod
    def from_settings(
        cls, settings: Settings, *, client: httpx.AsyncClient | None = None
    ) -> JwtVerifier:
        """The verifier for the configured auth server (`AUTH_SERVER_URL` and friends)."""
        if not (settings.jwks_url and settings.issuer and settings.audience):
            raise ValueError("AUTH_SERVER_URL (or AUTH_JWKS_URL, AUTH_ISSUER, AUTH_AUDIENCE) unset")
        jwks = JwksCache(
            settings.jwks_url,
            client=client,
            ttl=settings.auth_jwks_ttl_seconds,
            refetch_cooldown=settings.auth_jwks_refetch_cooldown_seconds,
            min_refetch_interval=settings.auth_jwks_min_refetch_seconds,
        )
        return cls(
            jwks,
            issuer=settings.issuer,
            audience=settings.audience,
            leeway=settings.auth_leeway_seconds,
        )

    async def verify(self, token: str) -> JwtClaims:
        """The claims of a valid token; otherwise `Unauthenticated` saying why.

        Raises `Unavailable` when the auth server's keys cannot be had at all.
        """
        header = self._header(token)
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in self.algorithms:
            raise Unauthenticated(
                f"token refused: its algorithm {_show(alg)} is not accepted (TaskFlow accepts only "
                f"{', '.join(sorted(self.algorithms))} signed by the auth server). "
                + _SIGN_IN_AGAIN
            )
        if "crit" in header:
            raise Unauthenticated(
                "token refused: it marks header extensions as critical ('crit'), which TaskFlow "
                "does not implement. " + _SIGN_IN_AGAIN
            )
        if not isinstance(kid, str) or not kid:
            raise Unauthenticated(
                "token refused: its header names no signing key ('kid'), so it was not issued "
                "by the auth server. " + _SIGN_IN_AGAIN
            )
        try:
            key = await self.jwks.get_key(kid)
        except UnknownKeyId:
            raise Unauthenticated(
                f"token refused: it was signed with key {_show(kid)}, which the auth server "
                "does not publish (a token from another server, or a retired key). "
                + _SIGN_IN_AGAIN
            ) from None
        _check_key_fits(key, alg)
        payload = self._decode(token, key, alg)
        if not isinstance(payload.get("sub"), str) or not payload["sub"]:
            raise Unauthenticated("token refused: its subject ('sub') is empty. " + _SIGN_IN_AGAIN)
        return JwtClaims.from_payload(payload)

    @staticmethod
    def _header(token: str) -> dict[str, Any]:
        """The unverified header, only to pick the key; nothing in it is trusted yet."""
        if not isinstance(token, str) or not token:
            raise Unauthenticated("no token given: send 'Authorization: Bearer <token>'.")
        if len(token) > MAX_TOKEN_LENGTH:
            raise Unauthenticated(f"token refused: longer than {MAX_TOKEN_LENGTH} characters.")
        try:
            return jwt.get_unverified_header(token)
        except DecodeError:
            raise Unauthenticated(
                "token refused: it is not a well-formed JWT (three base64url parts joined by "
                "dots). Send the token exactly as the auth server issued it."
            ) from None
        except InvalidTokenError as exc:  # e.g. an unsupported critical extension
            raise Unauthenticated(f"token refused: {exc}. " + _SIGN_IN_AGAIN) from None

    def _decode(self, token: str, key: PublicKey, alg: str) -> dict[str, Any]:
        """Verify signature and claims; turn each PyJWT error into an actionable 401."""
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=[alg],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway,
                options={"require": list(REQUIRED_CLAIMS)},
            )
        except ExpiredSignatureError:
            reason = "it has expired. Fetch a new token from the auth server"
        except ImmatureSignatureError:
            reason = (
                "it is not valid yet ('nbf' or 'iat' lies in the future). Check this machine's "
                "clock, then fetch a new token"
            )
        except InvalidIssuerError:
            reason = f"it was not issued by {self.issuer!r}. Get a token from that server"
        except InvalidAudienceError:
            reason = f"it is meant for another service, not {self.audience!r}. Sign in again"
        except InvalidSignatureError:
            reason = "its signature does not verify (altered or forged). Sign in again"
        except MissingRequiredClaimError as exc:
            reason = f"it lacks the required claim {exc.claim!r}. Sign in again"
        except InvalidTokenError as exc:
            reason = f"{exc}. Sign in again"
        raise Unauthenticated(f"token refused: {reason}.")


def _show(value: object, limit: int = 40) -> str:
    """repr() of an untrusted header value, cut short so a hostile token cannot flood logs."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_key_fits(key: PublicKey, alg: str) -> None:
    """Refuse a key whose type, curve or declared algorithm differs from the token's `alg`."""
    kty, curves = KEY_TYPES[alg]
    if (
        key.kty != kty
        or (curves is not None and key.crv not in curves)
        or (key.alg is not None and key.alg != alg)
    ):
        raise Unauthenticated(
            f"token refused: its algorithm {alg!r} does not fit key {key.kid!r} "
            f"(type {key.kty!r}, algorithm {key.alg!r}), so its header was tampered with. "
            + _SIGN_IN_AGAIN
        )
