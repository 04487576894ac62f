"""JWT verification against a real Better Auth server, and the agent API key format.

Nothing here mocks Better Auth: tokens come from its real endpoints, keys from its real JWKS.
Forged tokens are signed with keys generated here, as an attacker would. JWKS requests are
counted with an httpx event hook on the client the cache uses.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
import string
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import httpx
import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa

from taskflow.core.auth import keys
from taskflow.core.auth.jwks import JwksCache
from taskflow.core.auth.jwt import JwtClaims, JwtVerifier
from taskflow.core.config import Settings
from taskflow.core.errors import Unauthenticated, Unavailable

if TYPE_CHECKING:
    from tests.better_auth import BetterAuthServer

pytest_plugins = ["tests.better_auth"]  # harmless if tests/conftest.py loads it too


# ---------------------------------------------------------------- helpers


class FakeClock:
    """A monotonic clock the test moves by hand, to age the JWKS cache without sleeping."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingClient:
    """An httpx.AsyncClient whose requests to the JWKS are counted (a real client, real I/O)."""

    def __init__(self) -> None:
        self.fetches = 0

        async def count(request: httpx.Request) -> None:
            self.fetches += 1

        self.client = httpx.AsyncClient(event_hooks={"request": [count]})


@pytest.fixture
async def counting() -> AsyncIterator[CountingClient]:
    counter = CountingClient()
    yield counter
    await counter.client.aclose()


def make_verifier(
    server: BetterAuthServer,
    client: httpx.AsyncClient,
    *,
    issuer: str | None = None,
    audience: str | None = None,
    leeway: float = 30.0,
    jwks_url: str | None = None,
    **cache_options: Any,
) -> JwtVerifier:
    cache = JwksCache(jwks_url or server.jwks_url, client=client, **cache_options)
    return JwtVerifier(
        cache,
        issuer=issuer or server.issuer,
        audience=audience or server.audience,
        leeway=leeway,
    )


@pytest.fixture
def verifier(better_auth: BetterAuthServer, counting: CountingClient) -> JwtVerifier:
    return make_verifier(better_auth, counting.client)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def forge(header: dict[str, Any], payload: dict[str, Any], sign: Callable[[bytes], bytes]) -> str:
    """A compact JWS built by hand, for headers a library refuses to produce."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{b64(sign(signing_input.encode()))}"


def parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    head, body, _ = token.split(".")
    return json.loads(unb64(head)), json.loads(unb64(body))


def new_user(server: BetterAuthServer) -> tuple[str, str]:
    """Sign up a fresh user; return (email, JWT)."""
    email = f"user-{uuid.uuid4().hex[:12]}@example.com"
    session = server.sign_up(email, "correct horse battery", "Ada Lovelace")
    return email, server.get_jwt(session)


@pytest.fixture(scope="module")
def user(better_auth: BetterAuthServer) -> tuple[str, str]:
    return new_user(better_auth)


# ---------------------------------------------------------------- real tokens


async def test_real_better_auth_jwt_verifies(verifier: JwtVerifier, user: tuple[str, str]) -> None:
    email, token = user
    claims = await verifier.verify(token)
    assert isinstance(claims, JwtClaims)
    assert claims.sub == parts(token)[1]["sub"] and claims.sub
    assert claims.email == email
    assert claims.name == "Ada Lovelace"
    assert claims.role is None  # Better Auth adds `role` only with its admin plugin
    assert claims.claims["iss"] == verifier.issuer
    with pytest.raises(TypeError):
        claims.claims["sub"] = "someone else"  # type: ignore[index]


async def test_rs256_server_tokens_verify(
    better_auth_rs256: BetterAuthServer, counting: CountingClient
) -> None:
    email, token = new_user(better_auth_rs256)
    assert parts(token)[0]["alg"] == "RS256"
    verifier = make_verifier(better_auth_rs256, counting.client)
    assert (await verifier.verify(token)).email == email

    header, claims = parts(token)  # the JWK says alg RS256: PS256 with it is refused
    attacker = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = pyjwt.encode(claims, attacker, algorithm="PS256", headers={"kid": header["kid"]})
    with pytest.raises(Unauthenticated, match="does not fit key"):
        await verifier.verify(forged)


async def test_verifier_from_settings(better_auth: BetterAuthServer, user: tuple[str, str]) -> None:
    settings = Settings(_env_file=None, auth_server_url=better_auth.base_url)
    verifier = JwtVerifier.from_settings(settings)
    try:
        assert (await verifier.verify(user[1])).email == user[0]
    finally:
        await verifier.jwks.aclose()


async def test_cache_serves_repeat_verifications_without_fetching(
    verifier: JwtVerifier, counting: CountingClient, user: tuple[str, str]
) -> None:
    for _ in range(20):
        await verifier.verify(user[1])
    assert counting.fetches == 1


async def test_key_rotation_is_picked_up_without_restart(
    better_auth_factory: Callable[..., BetterAuthServer], counting: CountingClient
) -> None:
    server = better_auth_factory("EdDSA", rotation_interval=1)
    session = server.sign_up("rotate@example.com", "correct horse battery", "Rot")
    old = server.get_jwt(session)
    verifier = make_verifier(
        server, counting.client, refetch_cooldown=0.5, min_refetch_interval=0.5
    )
    await verifier.verify(old)

    await asyncio.sleep(1.2)  # the signing key is now past its rotation interval
    new = server.get_jwt(session)
    assert parts(new)[0]["kid"] != parts(old)[0]["kid"], "Better Auth did not rotate its key"

    assert (await verifier.verify(new)).email == "rotate@example.com"
    assert (await verifier.verify(old)).email == "rotate@example.com"  # still in grace period
    assert counting.fetches == 2


# ---------------------------------------------------------------- claims


async def test_expired_token_is_refused(
    verifier: JwtVerifier, better_auth: BetterAuthServer
) -> None:
    now = int(time.time())
    token = better_auth.sign_jwt({"sub": "u1", "iat": now - 7200, "exp": now - 3600})
    with pytest.raises(Unauthenticated, match="expired"):
        await verifier.verify(token)


async def test_leeway_tolerates_small_clock_skew(
    verifier: JwtVerifier, better_auth: BetterAuthServer
) -> None:
    now = int(time.time())
    token = better_auth.sign_jwt({"sub": "u1", "iat": now - 600, "exp": now - 5})
    assert (await verifier.verify(token)).sub == "u1"


async def test_not_yet_valid_token_is_refused(
    verifier: JwtVerifier, better_auth: BetterAuthServer
) -> None:
    now = int(time.time())
    token = better_auth.sign_jwt({"sub": "u1", "nbf": now + 3600, "exp": now + 7200})
    with pytest.raises(Unauthenticated, match="not valid yet"):
        await verifier.verify(token)


async def test_wrong_issuer_is_refused(
    verifier: JwtVerifier,
    better_auth: BetterAuthServer,
    counting: CountingClient,
    user: tuple[str, str],
) -> None:
    token = better_auth.sign_jwt({"sub": "u1", "iss": "https://evil.example"})
    with pytest.raises(Unauthenticated, match="not issued by"):
        await verifier.verify(token)
    other = make_verifier(better_auth, counting.client, issuer="https://auth.example.com")
    with pytest.raises(Unauthenticated, match="not issued by"):
        await other.verify(user[1])


async def test_wrong_audience_is_refused(
    verifier: JwtVerifier,
    better_auth: BetterAuthServer,
    counting: CountingClient,
    user: tuple[str, str],
) -> None:
    token = better_auth.sign_jwt({"sub": "u1", "aud": "https://another-service.example"})
    with pytest.raises(Unauthenticated, match="another service"):
        await verifier.verify(token)
    other = make_verifier(better_auth, counting.client, audience="https://taskflow.example")
    with pytest.raises(Unauthenticated, match="another service"):
        await other.verify(user[1])


async def test_token_without_subject_is_refused(
    verifier: JwtVerifier, better_auth: BetterAuthServer
) -> None:
    for claims in ({"email": "nobody@example.com"}, {"sub": ""}):
        with pytest.raises(Unauthenticated, match="'sub'"):
            await verifier.verify(better_auth.sign_jwt(claims))


# ---------------------------------------------------------------- forgeries


async def test_tampered_payload_is_refused(verifier: JwtVerifier, user: tuple[str, str]) -> None:
    head, body, signature = user[1].split(".")
    claims = json.loads(unb64(body))
    claims["sub"], claims["email"] = "admin", "admin@example.com"
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        await verifier.verify(f"{head}.{b64(json.dumps(claims).encode())}.{signature}")


async def test_tampered_signature_is_refused(verifier: JwtVerifier, user: tuple[str, str]) -> None:
    head, body, signature = user[1].split(".")
    raw = bytearray(unb64(signature))
    raw[len(raw) // 2] ^= 0x01
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        await verifier.verify(f"{head}.{body}.{b64(bytes(raw))}")


async def test_alg_none_is_refused(verifier: JwtVerifier, user: tuple[str, str]) -> None:
    header, claims = parts(user[1])
    for alg in ("none", "None", "NONE"):
        token = forge({**header, "alg": alg}, claims, lambda _: b"")
        with pytest.raises(Unauthenticated, match=r"algorithm .* is not accepted"):
            await verifier.verify(token)
        with pytest.raises(Unauthenticated):
            await verifier.verify(token.rstrip("."))


async def test_hs256_signed_with_the_public_key_is_refused(
    verifier: JwtVerifier, better_auth: BetterAuthServer, user: tuple[str, str]
) -> None:
    header, claims = parts(user[1])
    jwk = next(k for k in better_auth.jwks()["keys"] if k["kid"] == header["kid"])
    public = pyjwt.PyJWK(jwk).key
    secrets_an_attacker_tries = [
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw),
        json.dumps(jwk).encode(),
    ]
    for secret in secrets_an_attacker_tries:
        for alg, digest in (("HS256", hashlib.sha256), ("HS512", hashlib.sha512)):
            token = forge(
                {**header, "alg": alg},
                claims,
                lambda data, s=secret, d=digest: hmac.new(s, data, d).digest(),
            )
            with pytest.raises(Unauthenticated, match="is not accepted"):
                await verifier.verify(token)


async def test_algorithm_that_does_not_fit_the_key_is_refused(
    verifier: JwtVerifier, user: tuple[str, str]
) -> None:
    header, claims = parts(user[1])  # the server's key is Ed25519 (kty OKP)
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    for alg, key in (("RS256", rsa_key), ("PS256", rsa_key), ("ES256", ec_key)):
        token = pyjwt.encode(claims, key, algorithm=alg, headers={"kid": header["kid"]})
        with pytest.raises(Unauthenticated, match="does not fit key"):
            await verifier.verify(token)


async def test_attacker_key_under_the_servers_kid_is_refused(
    verifier: JwtVerifier, user: tuple[str, str]
) -> None:
    header, claims = parts(user[1])
    token = pyjwt.encode(
        claims, ed25519.Ed25519PrivateKey.generate(), algorithm="EdDSA", headers=header
    )
    with pytest.raises(Unauthenticated, match="signature does not verify"):
        await verifier.verify(token)


def attacker_token(claims: dict[str, Any], kid: str) -> str:
    key = ed25519.Ed25519PrivateKey.generate()
    return pyjwt.encode(claims, key, algorithm="EdDSA", headers={"kid": kid})


async def test_unknown_kid_is_refused(verifier: JwtVerifier, user: tuple[str, str]) -> None:
    token = attacker_token(parts(user[1])[1], "attacker-key-1")
    with pytest.raises(Unauthenticated, match="does not publish"):
        await verifier.verify(token)


async def test_garbage_and_missing_kid_are_refused(
    verifier: JwtVerifier, user: tuple[str, str]
) -> None:
    for junk in ("", "not a jwt", "a.b.c", "x" * 20_000):
        with pytest.raises(Unauthenticated):
            await verifier.verify(junk)
    header, claims = parts(user[1])
    with pytest.raises(Unauthenticated, match="critical"):
        await verifier.verify(forge({**header, "crit": ["x-ext"], "x-ext": 1}, claims, bytes))
    del header["kid"]
    with pytest.raises(Unauthenticated, match="'kid'"):
        await verifier.verify(forge(header, claims, lambda _: b"\0" * 64))


async def test_flood_of_unknown_kids_fetches_the_jwks_at_most_once_per_cooldown(
    better_auth: BetterAuthServer, counting: CountingClient, user: tuple[str, str]
) -> None:
    clock = FakeClock()
    verifier = make_verifier(better_auth, counting.client, refetch_cooldown=30, clock=clock)
    await verifier.verify(user[1])  # warm: one fetch
    clock.advance(31)  # cooldown over: the next unknown kid may trigger a refetch
    claims = parts(user[1])[1]
    forged = [attacker_token(claims, f"kid-{i}") for i in range(1000)]

    async def attempt(token: str) -> BaseException | None:
        try:
            await verifier.verify(token)
        except BaseException as exc:
            return exc
        return None

    results = await asyncio.gather(*(attempt(t) for t in forged))
    assert all(isinstance(r, Unauthenticated) for r in results)
    assert counting.fetches == 2, "1,000 concurrent bad kids: one coalesced refetch"

    clock.advance(10)  # still within the cooldown
    for token in forged[:200]:
        assert isinstance(await attempt(token), Unauthenticated)
    assert counting.fetches == 2, "bad kids within the cooldown fetch nothing"

    clock.advance(30)
    assert isinstance(await attempt(forged[0]), Unauthenticated)
    assert counting.fetches == 3, "after the cooldown, one refetch again"


async def test_an_attackers_refetch_does_not_hold_back_a_rotated_key(
    better_auth_factory: Callable[..., BetterAuthServer], counting: CountingClient
) -> None:
    """Before: a made-up kid's refetch started a 30 s cooldown in which a freshly rotated,
    genuine key was refused as unknown (401). Now the genuine one waits at most the short
    minimum between fetches, and is told to retry (503), not that it is signed out."""
    server = better_auth_factory("EdDSA", rotation_interval=1)
    session = server.sign_up("rot2@example.com", "correct horse battery", "Rot")
    old = server.get_jwt(session)
    clock = FakeClock()
    verifier = make_verifier(
        server, counting.client, refetch_cooldown=30, min_refetch_interval=2, clock=clock
    )
    await verifier.verify(old)  # fetch 1
    clock.advance(5)
    with pytest.raises(Unauthenticated):  # the attacker's kid: fetch 2, then refused
        await verifier.verify(attacker_token(parts(old)[1], "made-up"))
    await asyncio.sleep(1.2)  # the auth server's key is now past its rotation interval
    new = server.get_jwt(session)
    assert parts(new)[0]["kid"] != parts(old)[0]["kid"], "Better Auth did not rotate its key"
    clock.advance(1)  # within the minimum gap since the attacker's fetch
    with pytest.raises(Unavailable, match="retry"):
        await verifier.verify(new)
    assert counting.fetches == 2
    clock.advance(1.5)  # past the minimum gap, far inside the old 30 s cooldown
    assert (await verifier.verify(new)).email == "rot2@example.com"
    assert counting.fetches == 3


async def test_concurrent_cold_start_fetches_once(
    verifier: JwtVerifier, counting: CountingClient, user: tuple[str, str]
) -> None:
    results = await asyncio.gather(*(verifier.verify(user[1]) for _ in range(200)))
    assert {r.sub for r in results} == {parts(user[1])[1]["sub"]}
    assert counting.fetches == 1


# ---------------------------------------------------------------- auth server down


async def test_server_down_with_warm_cache_keeps_verifying(
    better_auth_factory: Callable[..., BetterAuthServer], counting: CountingClient
) -> None:
    server = better_auth_factory()
    _, token = new_user(server)
    clock = FakeClock()
    verifier = make_verifier(server, counting.client, ttl=300, max_stale=3600, clock=clock)
    await verifier.verify(token)
    server.stop()

    assert (await verifier.verify(token)).sub  # within TTL: no fetch at all
    clock.advance(600)  # past TTL: the refresh fails, the stale set still serves
    assert (await verifier.verify(token)).sub
    for _ in range(50):  # and the dead server is not hammered meanwhile
        await verifier.verify(token)
    assert counting.fetches == 2

    claims = parts(token)[1]
    with pytest.raises(Unavailable):  # a new kid cannot be checked while the server is down
        await verifier.verify(attacker_token(claims, "rotated-during-outage"))

    clock.advance(3600)  # past the stale limit: no keys we may trust any more
    with pytest.raises(Unavailable, match="auth server unavailable"):
        await verifier.verify(token)


async def test_server_down_with_empty_cache_is_unavailable_not_unauthenticated(
    better_auth_factory: Callable[..., BetterAuthServer], counting: CountingClient
) -> None:
    server = better_auth_factory()
    _, token = new_user(server)
    server.stop()
    verifier = make_verifier(server, counting.client)
    with pytest.raises(Unavailable, match="auth server unavailable") as caught:
        await verifier.verify(token)
    assert not isinstance(caught.value, Unauthenticated)
    assert caught.value.status == 503
    for _ in range(20):  # retries are rate-limited too
        with pytest.raises(Unavailable):
            await verifier.verify(token)
    assert counting.fetches == 1


async def test_jwks_url_that_is_not_a_jwks_is_unavailable(
    better_auth: BetterAuthServer, counting: CountingClient, user: tuple[str, str]
) -> None:
    for path in ("/api/auth/no-such-endpoint", "/api/auth/ok"):
        verifier = make_verifier(better_auth, counting.client, jwks_url=better_auth.base_url + path)
        with pytest.raises(Unavailable, match="auth server unavailable"):
            await verifier.verify(user[1])


async def test_verifier_refuses_a_symmetric_allow_list(counting: CountingClient) -> None:
    cache = JwksCache("http://127.0.0.1:9/jwks", client=counting.client)
    for algorithms in (["HS256"], ["EdDSA", "none"], []):
        with pytest.raises(ValueError, match="asymmetric"):
            JwtVerifier(cache, issuer="i", audience="a", algorithms=algorithms)


# ---------------------------------------------------------------- agent API keys


def test_api_key_format() -> None:
    key, key_id = keys.generate_api_key()
    assert re.fullmatch(r"tf_[0-9A-Za-z]{36}", key)
    assert key_id == key[:11] and key.startswith(key_id)
    assert keys.is_api_key(key) and keys.looks_like_api_key(key) and keys.checksum_ok(key)
    assert keys.hash_api_key(key) != key_id


def test_api_keys_carry_at_least_128_random_bits() -> None:
    assert keys.RANDOM_BITS >= 128
    generated = {keys.generate_api_key()[0] for _ in range(2000)}
    assert len(generated) == 2000
    random_parts = "".join(k[3 : 3 + keys.RANDOM_LENGTH] for k in generated)
    assert set(random_parts) == set(keys.ALPHABET)  # the whole alphabet is used


def test_checksum_catches_every_one_character_change() -> None:
    key, _ = keys.generate_api_key()
    body_start = len(keys.API_KEY_PREFIX)
    for position in range(body_start, len(key)):
        for replacement in keys.ALPHABET:
            if replacement != key[position]:
                typo = key[:position] + replacement + key[position + 1 :]
                assert not keys.checksum_ok(typo), (position, replacement)
    for position in range(body_start, len(key) - 1):  # swapped neighbours
        if key[position] != key[position + 1]:
            swapped = key[:position] + key[position + 1] + key[position] + key[position + 2 :]
            assert not keys.looks_like_api_key(swapped)


def test_malformed_keys_are_caught_offline() -> None:
    key, _ = keys.generate_api_key()
    for bad in (key[:-1], key + "a", key.replace("tf_", "tk_"), key[:10] + "-" + key[11:], ""):
        assert not keys.looks_like_api_key(bad)
    assert keys.is_api_key("tf_whatever")  # routed to the key path, refused precisely there
    assert not keys.is_api_key("eyJhbGciOiJFZERTQSJ9.e30.sig")


def test_hash_is_sha256_hex_and_comparison_is_constant_time() -> None:
    key, _ = keys.generate_api_key()
    digest = keys.hash_api_key(key)
    assert digest == hashlib.sha256(key.encode()).hexdigest()
    assert len(digest) == 64 and set(digest) <= set(string.hexdigits.lower())
    assert keys.api_key_matches(key, digest)
    assert not keys.api_key_matches(keys.generate_api_key()[0], digest)
    assert keys.constant_time_equals("abc", "abc") and not keys.constant_time_equals("abc", "abd")
