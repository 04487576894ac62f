"""Faults under load: PostgreSQL crashes mid-run and comes back; the auth server goes away. A
bench, not a test (tests/prod/test_prod_quick.py runs `--quick`).

The script starts its own PostgreSQL (pgserver, in a temp dir), a real Better Auth server, and
two `taskflow serve` processes on that database: the production shape (API keys and Better Auth
JWTs) and a local-mode one (`serve --no-auth`: token-less requests act as the local user). The
team of bench/_team.py works through the first (every change with an idempotency key) while a
probe calls the second, token-less, over REST and MCP. The schedule:

1. the auth server is stopped (for good); the humans keep using their JWTs, and a third human
   whose token was issued before signs in for the first time;
2. PostgreSQL is killed (`pg_ctl stop -m immediate`), left down for a while, started again.

Asserted, as `INVARIANT` lines:
- never a 5xx other than 503, never a 401, every request answered, no tracebacks logged;
- while the database is down: REST answers 503 problem+json (`unavailable`, Retry-After: 5);
  MCP answers 503 with Retry-After where the token cannot be checked (API keys live in the
  database) and an isError result "the database is unavailable" (code `unavailable`) where the
  caller is known without it (local mode); no request takes longer than --latency-bound;
- after the restart, the same server processes answer again by themselves within
  --recovery-bound seconds, and keep doing so;
- with the auth server gone, cached signing keys keep every JWT working;
- the audit log has, request by request, all the entries of each successful change and none
  of a refused one, and for a request whose answer was lost to the crash all of them or none
  (never a part); every task's version equals its audit entries; the chains verify;
- each change that failed during the outage, retried after it with the same idempotency key,
  either runs once or replays the first answer (it never stays stuck).

    uv run python bench/faults.py                    # ~40 s of load, 6 s outage
    uv run python bench/faults.py --quick            # seconds (CI)
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._calls import (
    NO_ANSWER,
    OK,
    REFUSED,
    SERVER_ERROR,
    UNAVAILABLE,
    Call,
    Recorder,
    Speaker,
)
from bench._harness import (
    Checks,
    EmbeddedPostgres,
    Server,
    better_auth,
    finish,
    fresh_database,
    machine,
    postgres,
    serve,
    server_version,
)
from bench._team import (
    Member,
    Team,
    add_members,
    provision,
    run_team,
    seed_team,
    sign_in_humans,
)
from bench._verdicts import (
    audit_accounting,
    database_invariants,
    last_audit_id,
    latency_rows,
    print_latency_table,
    refusal_codes,
)
from taskflow.core.domain import Role

STILL_RUNNING = "still being processed"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--agents", type=int, default=8)
    p.add_argument("--humans", type=int, default=2)
    p.add_argument("--auth-stop-at", type=float, default=5.0, help="s into the run")
    p.add_argument("--before", type=float, default=15.0, help="s of load before the crash")
    p.add_argument("--down", type=float, default=6.0, help="s the database stays down")
    p.add_argument("--after", type=float, default=20.0, help="s of load after the restart")
    p.add_argument("--timeout", type=float, default=15.0, help="client timeout per request")
    p.add_argument("--latency-bound", type=float, default=10.0, help="max s of any request")
    p.add_argument("--recovery-bound", type=float, default=10.0, help="max s to recover")
    p.add_argument("--jwks-ttl", type=float, default=2.0, help="AUTH_JWKS_TTL_SECONDS")
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--quick", action="store_true", help="3 agents, ~10 s: proves it still works")
    p.add_argument("--no-write", action="store_true", help="do not write bench/results")
    args = p.parse_args(argv)
    if args.quick:
        args.agents = min(args.agents, 3)
        args.auth_stop_at, args.before, args.down, args.after = 1.0, 4.0, 1.5, 3.0
    return args


async def schedule(
    args: argparse.Namespace,
    pg: EmbeddedPostgres,
    auth: Any,
    late: Speaker,
    timeline: dict[str, float],
    recorder: Recorder,
) -> None:
    """Stop the auth server, sign a new human in without it, then crash and restart PostgreSQL."""

    async def until(t: float) -> None:
        await asyncio.sleep(max(0.0, t - recorder.now()))

    await until(args.auth_stop_at)
    await asyncio.to_thread(auth.stop)
    timeline["auth_stopped"] = recorder.now()
    await asyncio.sleep(args.jwks_ttl + 0.5)  # the cached key set is now past its TTL
    timeline["late_sign_in"] = recorder.now()
    await late.rest("first_sign_in", "GET", "/api/me", audits={"created": 1})
    await until(args.before)
    timeline["db_stop"] = recorder.now()
    await asyncio.to_thread(pg.stop_immediate)
    timeline["db_stopped"] = recorder.now()
    await asyncio.sleep(args.down)
    timeline["db_start"] = recorder.now()
    await asyncio.to_thread(pg.start)
    timeline["db_started"] = recorder.now()


async def probe(local: Speaker, project: str, stop: asyncio.Event) -> None:
    """Token-less calls to the local-mode server, REST and MCP, ten times a second."""
    while not stop.is_set():
        await local.mcp("probe", "list_tasks", {"project": project, "limit": 5})
        await local.rest("probe", "GET", "/api/tasks", params={"project": project, "limit": 5})
        await asyncio.sleep(0.1)


async def retry_failed(
    calls: list[Call], tokens: dict[str, str], base_url: str, recorder: Recorder
) -> list[Call]:
    """Send every change the outage refused again, with its idempotency key and body."""
    failed = [
        c
        for c in calls
        if c.audits and c.outcome in (UNAVAILABLE, NO_ANSWER) and c.server == "taskflow"
    ]
    speakers: dict[str, Speaker] = {}
    retries = []
    for c in failed:
        if c.who not in speakers:
            speakers[c.who] = Speaker(c.who, "taskflow", base_url, tokens[c.who], recorder)
        retry, _ = await speakers[c.who].resend(c, op=f"retry {c.op}")
        retries.append(retry)
    for sp in speakers.values():
        await sp.aclose()
    for c, r in zip(failed, retries, strict=True):
        if r.outcome not in (OK, REFUSED) or STILL_RUNNING in r.detail or "applied" in r.detail:
            print(
                f"  retry of {c.op}/{c.surface} ({c.outcome} {c.http_status} {c.code} "
                f"{c.detail[:80]!r} at {c.started:.2f}+{c.seconds:.2f}s): "
                f"{'replayed' if r.answer.replayed else r.outcome} {r.code} {r.detail[:80]!r}"
            )
    return retries


async def drive(
    args: argparse.Namespace,
    team: Team,
    pg: EmbeddedPostgres,
    auth: Any,
    main: Server,
    local: Server,
    late_jwt: str,
) -> tuple[Any, list[Call], dict[str, float]]:
    recorder = Recorder()
    timeline: dict[str, float] = {}
    stop = asyncio.Event()
    local_sp = Speaker("@lead-local", "local", local.base_url, None, recorder, timeout=args.timeout)
    late = Speaker(
        "@late-human", "taskflow", main.base_url, late_jwt, recorder, timeout=args.timeout
    )

    async def during(rec: Recorder, stop_: asyncio.Event) -> None:
        await asyncio.gather(
            schedule(args, pg, auth, late, timeline, rec), probe(local_sp, team.project, stop_)
        )

    load = await run_team(
        team,
        {"taskflow": main.base_url},
        duration=args.before + args.down + args.after,
        max_ops=None,
        mcp_share=0.5,
        reject_share=0.2,
        human_lanes=2,
        timeout=args.timeout,
        seed=args.seed,
        idempotent=True,
        recorder=recorder,
        stop=stop,
        during=during,
    )
    await local_sp.aclose()
    await late.aclose()
    tokens = {m.handle: m.token for m in team.agents + team.humans}
    retries = await retry_failed(list(recorder.calls), tokens, main.base_url, recorder)
    return load, retries, timeline


def _first_ok_after(calls: list[Call], t: float, server: str, surface: str) -> float | None:
    oks = [
        c.ended - t
        for c in calls
        if c.server == server and c.surface == surface and c.started >= t and c.outcome == OK
    ]
    return min(oks, default=None)


def analyse(
    args: argparse.Namespace,
    calls: list[Call],
    retries: list[Call],
    timeline: dict[str, float],
    checks: Checks,
) -> dict[str, Any]:
    down0, down1 = timeline["db_stop"], timeline["db_stopped"]
    up0, up1 = timeline["db_start"], timeline["db_started"]
    load_calls = [c for c in calls if not c.op.startswith("retry ")]
    inside = [c for c in load_calls if c.started >= down1 and c.ended <= up0]
    overlapping = [c for c in load_calls if c.started < up1 and c.ended > down0]
    fives = [
        c
        for c in calls
        if (c.http_status >= 500 and c.http_status != 503) or c.outcome == SERVER_ERROR
    ]
    checks.check("no 5xx but 503", not fives, f"{len(fives)} of {len(calls)} calls")
    unanswered = [c for c in calls if c.outcome == NO_ANSWER]
    checks.check(
        "every request answered (no hang, no dropped connection)",
        not unanswered,
        f"{len(unanswered)} without answer",
    )
    four01 = [c for c in calls if c.http_status == 401 or c.code == "unauthenticated"]
    checks.check("never a 401 for a good token", not four01, f"{len(four01)} calls")

    kinds = Counter(
        f"{c.server}/{c.surface}/{'http503' if c.http_status == 503 else 'isError'}"
        for c in inside
        if c.outcome == UNAVAILABLE
    )
    wrong = [c for c in inside if c.outcome != UNAVAILABLE or not c.answer.shape_ok]
    checks.check(
        "while down: every answer is 'unavailable' in the documented shape",
        bool(inside) and not wrong,
        f"{len(inside)} calls while down ({dict(kinds)}); {len(wrong)} otherwise",
    )
    checks.check(
        "while down: REST 503 problem+json",
        kinds["taskflow/rest/http503"] > 0 and kinds["local/rest/http503"] > 0,
        "",
    )
    checks.check(
        "while down: MCP isError 'database unavailable' (caller known without the database)",
        kinds["local/mcp/isError"] > 0,
        f"{kinds['local/mcp/isError']} results; API-key callers got HTTP 503: "
        f"{kinds['taskflow/mcp/http503']}",
    )
    slowest = max((c.seconds for c in overlapping), default=0.0)
    checks.check(
        f"no request around the outage took longer than {args.latency_bound:g} s",
        slowest < args.latency_bound,
        f"max {slowest * 1000:.0f} ms over {len(overlapping)} calls",
    )
    recovery = {
        f"{server}/{surface}": _first_ok_after(load_calls, up1, server, surface)
        for server in ("taskflow", "local")
        for surface in ("rest", "mcp")
    }
    late_fail = [
        c for c in load_calls if c.started > up1 + args.recovery_bound and c.outcome == UNAVAILABLE
    ]
    checks.check(
        f"the same server processes recover by themselves within {args.recovery_bound:g} s",
        all(v is not None and v <= args.recovery_bound for v in recovery.values())
        and not late_fail,
        ", ".join(
            f"{k} {v * 1000:.0f} ms" if v is not None else f"{k} never" for k, v in recovery.items()
        )
        + f"; {len(late_fail)} failures afterwards",
    )
    auth_gone = timeline["auth_stopped"]
    humans_no_auth = [
        c
        for c in load_calls
        if c.who.startswith("@reviewer")
        and c.started > auth_gone
        and not down0 - 0.5 < c.started < up1 + 2
    ]
    human_fail = [c for c in humans_no_auth if c.outcome not in (OK, REFUSED)]
    late = [c for c in calls if c.op == "first_sign_in"]
    checks.check(
        "auth server gone: cached keys keep JWTs working",
        bool(humans_no_auth) and not human_fail and bool(late) and late[0].outcome == OK,
        f"{len(humans_no_auth)} human calls after the auth server stopped, "
        f"{len(human_fail)} failed; first sign-in of a new human: "
        f"{late[0].outcome if late else 'not made'}",
    )
    retry_kinds = Counter(
        "replayed"
        if r.answer.replayed
        else "ran"
        if r.outcome == OK
        else "stuck"
        if STILL_RUNNING in r.detail
        else "applied before the crash"
        if "was applied" in r.detail
        else f"refused ({r.code})"
        if r.outcome == REFUSED
        else r.outcome
        for r in retries
    )
    checks.check(
        "changes failed by the outage retry cleanly with their idempotency keys",
        retry_kinds["stuck"] == 0
        and not any(r.outcome in (UNAVAILABLE, SERVER_ERROR, NO_ANSWER) for r in retries),
        f"{len(retries)} retries: {dict(retry_kinds)}",
    )
    return {
        "timeline_s": {k: round(v, 3) for k, v in timeline.items()},
        "calls_while_down": len(inside),
        "while_down_by_kind": dict(kinds),
        "max_latency_around_outage_ms": round(slowest * 1000, 1),
        "recovery_ms": {k: round(v * 1000) if v is not None else None for k, v in recovery.items()},
        "human_calls_after_auth_stopped": len(humans_no_auth),
        "retries": dict(retry_kinds),
    }


def run(args: argparse.Namespace) -> tuple[Checks, dict[str, Any]]:
    checks = Checks()
    with (
        postgres(None) as (server_url, pg),
        fresh_database(server_url, "tf_faults") as url,
        better_auth() as auth,
    ):
        assert pg is not None
        team = asyncio.run(
            seed_team(url, project="load", agents=args.agents, seed_tasks=5 * args.agents)
        )
        version = asyncio.run(server_version(url))
        env = {"AUTH_JWKS_TTL_SECONDS": str(args.jwks_ttl)}
        with (
            serve("taskflow", url, auth_server_url=auth.base_url, env=env) as main,
            serve("local", url, local_user="@lead") as local,
        ):
            signed = sign_in_humans(auth, args.humans + 1)
            late_jwt = signed.pop()[1]  # first used only once the auth server is gone
            handles = [provision(main.base_url, jwt) for _, jwt in signed]
            asyncio.run(add_members(url, team, handles, Role.MEMBER))
            team.humans = [Member(h, j, "human") for h, (_, j) in zip(handles, signed, strict=True)]
            baseline = asyncio.run(last_audit_id(url))
            total = args.before + args.down + args.after
            print(
                f"load: {args.agents} agents + {args.humans} humans for {total:g} s; auth "
                f"server stops at {args.auth_stop_at:g} s, PostgreSQL is killed at "
                f"{args.before:g} s for {args.down:g} s ...",
                flush=True,
            )
            load, retries, timeline = asyncio.run(
                drive(args, team, pg, auth, main, local, late_jwt)
            )
            tracebacks = main.tracebacks() + local.tracebacks()
        calls = load.recorder.calls
        accounting = asyncio.run(audit_accounting(url, baseline, calls))
        invariants = asyncio.run(database_invariants(url))

    rows = latency_rows(calls)
    print()
    print_latency_table(rows)
    print()
    print("timeline (s): " + ", ".join(f"{k} {v:.2f}" for k, v in timeline.items()))
    print(f"refusals: {refusal_codes(calls)}")
    slow = sorted(calls, key=lambda c: -c.seconds)[:8]
    print(
        "slowest calls: "
        + "; ".join(
            f"{c.op}/{c.surface}@{c.server} {c.started:.2f}+{c.seconds:.2f}s {c.outcome} {c.code}"
            for c in slow
        )
    )
    print()
    summary = analyse(args, calls, retries, timeline, checks)
    checks.check("no tracebacks in the server logs", tracebacks == 0, f"{tracebacks} tracebacks")
    checks.check(
        "audit: all of each change or none of it",
        accounting.lost == 0
        and accounting.duplicated == 0
        and accounting.unexplained == 0
        and accounting.refused_wrote == 0
        and accounting.partial == 0,
        f"lost {accounting.lost}, duplicated {accounting.duplicated}, unexplained "
        f"{accounting.unexplained}, refused-but-wrote {accounting.refused_wrote}, partial "
        f"{accounting.partial}; {accounting.committed_without_answer} committed whose answer "
        "the crash lost",
    )
    checks.check(
        "no task change without its audit entry",
        invariants.versions_without_entry == 0,
        f"{invariants.versions_without_entry} of {invariants.tasks} tasks disagree",
    )
    checks.check(
        "audit chain verifies after the crash",
        invariants.verify_ok,
        f"{invariants.verify_entries} entries, {invariants.verify_chains} chains",
    )
    checks.check("no task claimed twice", invariants.claimed_twice == 0, "")
    for line in accounting.examples + invariants.examples:
        print(f"  example: {line}")
    result = {
        "machine": machine(f"embedded PostgreSQL (pgserver) {version}"),
        "command": " ".join(["uv run python bench/faults.py", *sys.argv[1:]]),
        "args": vars(args),
        "seconds": round(load.seconds, 2),
        "calls": len(calls),
        "outcomes": dict(Counter(c.outcome for c in calls)),
        **summary,
        "latency": rows,
        "audit": asdict(accounting),
        "database_invariants": asdict(invariants),
        "server_tracebacks": tracebacks,
        "invariants": checks.results,
    }
    return checks, result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    checks, result = run(args)
    return finish("faults", args, checks, result)


if __name__ == "__main__":
    sys.exit(main())
