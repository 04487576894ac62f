"""Many agents at once: a team working through `taskflow serve` over real HTTP. A bench, not a
test (tests/prod/test_prod_quick.py runs `--quick` so it cannot rot).

N agents (default 32), each with its own API key, and 2 human reviewers with Better Auth JWTs
work one review-required project through a real `taskflow serve` subprocess, every call a REST
request or an MCP tool call (about half each): agents claim, report progress, add subtasks,
start their own subtask, and ask for review; humans approve most and reject some (agents then
finish and ask again). See bench/_team.py for the exact cycle.

At the end it asserts, and prints as `INVARIANT` lines:
- zero 5xx answers (and no tracebacks in the server log), zero calls without an answer;
- the audit log holds exactly the entries the successful requests must have written, request
  by request and action by action (none lost, none duplicated), and none for refused requests;
- every task's version equals its number of audit entries; the hash chains verify;
- no task was claimed twice.
It prints throughput and p50/p95/p99 per operation and surface, and writes
bench/results/agents.json.

    uv run python bench/agents.py                    # 32 agents, 60 s
    uv run python bench/agents.py --agents 64 --duration 120
    uv run python bench/agents.py --ops 5000         # stop after 5,000 calls
    uv run python bench/agents.py --quick            # a few seconds (CI)
    uv run python bench/agents.py --database-url postgresql://user:pw@host/postgres

Without --database-url an embedded PostgreSQL (pgserver) runs in a temp dir; with it, a fresh
database is created on that server for the run and dropped afterwards (needs CREATEDB).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._calls import NO_ANSWER, OK, SERVER_ERROR
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
from bench._team import Member, add_members, provision, run_team, seed_team, sign_in_humans
from bench._verdicts import (
    audit_accounting,
    claims_per_task,
    database_invariants,
    last_audit_id,
    latency_rows,
    print_latency_table,
    refusal_codes,
)
from taskflow.core.domain import Role


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--agents", type=int, default=32)
    p.add_argument("--humans", type=int, default=2)
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    p.add_argument("--ops", type=int, default=None, help="stop after this many calls instead")
    p.add_argument("--seed-tasks", type=int, default=None, help="open tasks (default 5/agent)")
    p.add_argument("--mcp-share", type=float, default=0.5, help="share of calls made over MCP")
    p.add_argument("--reject-share", type=float, default=0.2, help="share of reviews rejected")
    p.add_argument("--human-lanes", type=int, default=4, help="concurrent requests per human")
    p.add_argument("--timeout", type=float, default=30.0, help="client timeout per request (s)")
    p.add_argument("--seed", type=int, default=7, help="random seed of the workers' choices")
    p.add_argument("--database-url", default=None, help="a server to create the database on")
    p.add_argument("--quick", action="store_true", help="4 agents, 5 s: proves it still works")
    p.add_argument("--no-write", action="store_true", help="do not write bench/results")
    args = p.parse_args(argv)
    if args.quick:
        args.agents, args.duration = min(args.agents, 4), min(args.duration, 5.0)
        args.human_lanes = min(args.human_lanes, 2)
    if args.seed_tasks is None:
        args.seed_tasks = 5 * args.agents
    return args


def run(args: argparse.Namespace) -> tuple[Checks, dict[str, Any]]:
    checks = Checks()
    with (
        postgres(args.database_url) as (server_url, embedded),
        fresh_database(server_url, "tf_agents") as url,
        better_auth() as auth,
    ):
        print(f"seeding: {args.agents} agents, {args.seed_tasks} open tasks ...", flush=True)
        team = asyncio.run(
            seed_team(url, project="load", agents=args.agents, seed_tasks=args.seed_tasks)
        )
        with serve("taskflow", url, auth_server_url=auth.base_url) as server:
            humans = sign_in_humans(auth, args.humans)
            handles = [provision(server.base_url, jwt) for _, jwt in humans]
            asyncio.run(add_members(url, team, handles, Role.MEMBER))
            team.humans = [
                Member(h, jwt, "human") for h, (_, jwt) in zip(handles, humans, strict=True)
            ]
            baseline = asyncio.run(last_audit_id(url))
            cpu_before = _cpu(server, embedded)
            print(
                f"load: {args.agents} agents + {args.humans} humans against {server.base_url} "
                f"for {args.ops or ''}{' calls' if args.ops else f'{args.duration:g} s'} ...",
                flush=True,
            )
            load = asyncio.run(
                run_team(
                    team,
                    {"taskflow": server.base_url},
                    duration=args.duration if not args.ops else 3600.0,
                    max_ops=args.ops,
                    mcp_share=args.mcp_share,
                    reject_share=args.reject_share,
                    human_lanes=args.human_lanes,
                    timeout=args.timeout,
                    seed=args.seed,
                )
            )
            cpu = {k: v - cpu_before[k] for k, v in _cpu(server, embedded).items()}
            tracebacks = server.tracebacks()
        calls = load.recorder.calls
        accounting = asyncio.run(audit_accounting(url, baseline, calls))
        invariants = asyncio.run(database_invariants(url))
        claims = asyncio.run(claims_per_task(url, baseline))
        database = "embedded PostgreSQL (pgserver)" if embedded else "--database-url"
        database += " " + asyncio.run(server_version(url))

    rows = latency_rows(calls)
    outcomes = Counter(c.outcome for c in calls)
    ok = [c for c in calls if c.outcome == OK]
    mutations = [c for c in ok if c.audits]
    print()
    print_latency_table(rows)
    print()
    print(
        f"{len(calls)} calls in {load.seconds:.1f} s: {len(calls) / load.seconds:.1f} calls/s, "
        f"{len(ok) / load.seconds:.1f} successful/s, {len(mutations) / load.seconds:.1f} "
        f"state changes/s; MCP {sum(c.surface == 'mcp' for c in calls)}, "
        f"REST {sum(c.surface == 'rest' for c in calls)}"
    )
    print(f"refusals (expected: races, empty queue): {refusal_codes(calls)}")
    share = {k: f"{v / load.seconds:.0%}" for k, v in cpu.items()}
    print(f"CPU used, as a share of one core: {share} ({os.cpu_count()} cores)")
    print(
        f"audit entries by action, expected vs written: {accounting.expected_by_action} vs "
        f"{accounting.actual_by_action}"
    )
    print(
        f"tasks {invariants.tasks}, audit entries {invariants.audit_entries}; verify "
        f"{invariants.verify_entries} entries / {invariants.verify_chains} chains in "
        f"{invariants.verify_seconds:.2f} s"
    )
    print()

    fives = [c for c in calls if c.http_status >= 500 or c.outcome == SERVER_ERROR]
    checks.check("zero 5xx", not fives, f"{len(fives)} of {len(calls)} calls")
    checks.check(
        "every call answered", outcomes[NO_ANSWER] == 0, f"{outcomes[NO_ANSWER]} without answer"
    )
    checks.check("no tracebacks in the server log", tracebacks == 0, f"{tracebacks} tracebacks")
    checks.check(
        "work got done",
        len(mutations) > 0 and any(c.op == "approve" for c in ok),
        f"{len(mutations)} successful state changes",
    )
    checks.check("zero lost audit entries", accounting.lost == 0, f"{accounting.lost} missing")
    checks.check(
        "zero duplicated audit entries",
        accounting.duplicated == 0 and accounting.unexplained == 0,
        f"{accounting.duplicated} duplicated, {accounting.unexplained} unexplained",
    )
    checks.check(
        "audit entries equal successful operations, per action",
        accounting.expected_by_action == accounting.actual_by_action,
        f"{sum(accounting.actual_by_action.values())} entries for {len(mutations)} operations",
    )
    checks.check(
        "refused requests wrote nothing",
        accounting.refused_wrote == 0,
        f"{accounting.refused_wrote} entries",
    )
    checks.check(
        "every task change has its audit entry",
        invariants.versions_without_entry == 0,
        f"{invariants.versions_without_entry} of {invariants.tasks} tasks disagree",
    )
    checks.check(
        "audit chain verifies",
        invariants.verify_ok,
        f"{invariants.verify_entries} entries, {invariants.verify_chains} chains",
    )
    twice = [t for t, n in claims.items() if n > 1]
    checks.check(
        "no task claimed twice",
        not twice and invariants.claimed_twice == 0,
        f"{sum(claims.values())} claims of {len(claims)} tasks",
    )
    for line in accounting.examples + invariants.examples:
        print(f"  example: {line}")

    result = {
        "machine": machine(database),
        "command": " ".join(["uv run python bench/agents.py", *sys.argv[1:]]),
        "args": vars(args),
        "seconds": round(load.seconds, 2),
        "calls": len(calls),
        "calls_per_second": round(len(calls) / load.seconds, 1),
        "successful_per_second": round(len(ok) / load.seconds, 1),
        "state_changes_per_second": round(len(mutations) / load.seconds, 1),
        "outcomes": dict(outcomes),
        "by_surface": dict(Counter(c.surface for c in calls)),
        "refusals": refusal_codes(calls),
        "latency": rows,
        "audit": asdict(accounting),
        "database_invariants": asdict(invariants),
        "tasks_claimed": len(claims),
        "cpu_seconds": {k: round(v, 1) for k, v in cpu.items()},
        "server_tracebacks": tracebacks,
        "invariants": checks.results,
    }
    return checks, result


def _cpu(server: Server, embedded: EmbeddedPostgres | None) -> dict[str, float]:
    """CPU seconds so far of the server process, PostgreSQL (embedded only) and this process."""
    out = {"taskflow serve": server.cpu_seconds(), "load generator": time.process_time()}
    if embedded is not None:
        out["postgres"] = embedded.cpu_seconds()
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    checks, result = run(args)
    return finish("agents", args, checks, result)


if __name__ == "__main__":
    sys.exit(main())
