"""What the load and fault benches conclude from their recorded calls and the database.

- `latency_rows`: per operation and surface, counts by outcome and p50/p95/p99.
- `audit_accounting`: per request id and action, the audit entries written against those each
  recorded request must have written: all of them if it succeeded, none if it was refused,
  all or none (never a part) if its answer was lost to an outage.
- `database_invariants`: every task's version equals its audit entries, no task was claimed
  twice, and the core's `audit.verify` recomputes every hash chain.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from bench._calls import NO_ANSWER, OK, REFUSED, SERVER_ERROR, UNAVAILABLE, Call
from bench._harness import percentile, plain_dsn
from taskflow.core import audit
from taskflow.core.db import Database


def latency_rows(calls: Iterable[Call]) -> list[dict[str, Any]]:
    """Per (operation, surface): counts by outcome and p50/p95/p99 over answered calls."""
    groups: dict[tuple[str, str], list[Call]] = defaultdict(list)
    for c in calls:
        groups[(c.op, c.surface)].append(c)
        groups[("ALL", "both")].append(c)
    rows = []
    for (op, surface), cs in sorted(groups.items(), key=lambda kv: (kv[0][0] == "ALL", kv[0])):
        answered = [c.seconds * 1000 for c in cs if c.outcome != NO_ANSWER]
        outcomes = Counter(c.outcome for c in cs)
        rows.append(
            {
                "op": op,
                "surface": surface,
                "calls": len(cs),
                "ok": outcomes[OK],
                "refused": outcomes[REFUSED],
                "unavailable": outcomes[UNAVAILABLE],
                "server_error": outcomes[SERVER_ERROR],
                "no_answer": outcomes[NO_ANSWER],
                "p50_ms": round(percentile(answered, 50), 1),
                "p95_ms": round(percentile(answered, 95), 1),
                "p99_ms": round(percentile(answered, 99), 1),
                "max_ms": round(max(answered, default=0.0), 1),
            }
        )
    return rows


def print_latency_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'operation':16} {'via':5} {'calls':>6} {'ok':>6} {'4xx':>5} {'503':>5} {'5xx':>4} "
        f"{'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['op']:16} {r['surface']:5} {r['calls']:6} {r['ok']:6} {r['refused']:5} "
            f"{r['unavailable']:5} {r['server_error']:4} {r['p50_ms']:8.1f} {r['p95_ms']:8.1f} "
            f"{r['p99_ms']:8.1f}"
        )


def refusal_codes(calls: Iterable[Call]) -> dict[str, int]:
    return dict(Counter(f"{c.op}: {c.code}" for c in calls if c.outcome == REFUSED).most_common())


# ------------------------------------------------------------------ checks against the database


async def last_audit_id(url: str) -> int:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        return int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM audit_log"))
    finally:
        await conn.close()


@dataclass
class Accounting:
    expected_by_action: dict[str, int]
    actual_by_action: dict[str, int]
    lost: int  # entries a successful request should have written and did not
    duplicated: int  # entries beyond what a successful request writes
    refused_wrote: int  # entries written by requests that were refused
    unexplained: int  # entries no recorded request accounts for
    partial: int  # failed requests whose entries are neither none nor all of them
    committed_without_answer: int  # requests that failed for the client but did commit (whole)
    examples: list[str]


async def audit_accounting(url: str, after_id: int, calls: list[Call]) -> Accounting:
    """Compare, per request id and action, the audit entries written after `after_id` with the
    entries each recorded request must have written: all of them if it succeeded, none if it
    was refused, and either none or all (never part) if its answer was lost to an outage."""
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT request_id, action, count(*) AS n FROM audit_log WHERE id > $1 "
            "GROUP BY request_id, action",
            after_id,
        )
    finally:
        await conn.close()
    actual: dict[str, Counter[str]] = defaultdict(Counter)
    for r in rows:
        actual[r["request_id"] or ""][r["action"]] += r["n"]
    by_id = {c.request_id: c for c in calls}
    lost = duplicated = refused_wrote = unexplained = partial = committed = 0
    examples: list[str] = []
    expected_total: Counter[str] = Counter()
    actual_total: Counter[str] = Counter()
    for rid, got in actual.items():
        actual_total.update(got)
        if rid not in by_id:
            unexplained += sum(got.values())
            examples.append(f"unexplained entries {dict(got)} with request id {rid!r}")
    for c in calls:
        want = Counter(c.audits)
        got = actual.get(c.request_id, Counter())
        if c.outcome == OK:
            expected_total.update(want)
            lost += sum((want - got).values())
            duplicated += sum((got - want).values())
            if want != got:
                examples.append(
                    f"{c.op} via {c.surface} ({c.request_id}): want {dict(want)}, got {dict(got)}"
                )
        elif c.outcome == REFUSED:
            refused_wrote += sum(got.values())
            if got:
                examples.append(f"refused {c.op} ({c.request_id}) wrote {dict(got)}")
        elif got:  # unavailable / no answer: all or nothing
            if got == want:
                committed += 1
                expected_total.update(want)
            else:
                partial += 1
                examples.append(
                    f"{c.outcome} {c.op} ({c.request_id}): want {dict(want)} or none, "
                    f"got {dict(got)}"
                )
    return Accounting(
        dict(sorted(expected_total.items())),
        dict(sorted(actual_total.items())),
        lost,
        duplicated,
        refused_wrote,
        unexplained,
        partial,
        committed,
        examples[:10],
    )


@dataclass
class DbInvariants:
    tasks: int
    audit_entries: int
    versions_without_entry: int  # tasks whose version count disagrees with their audit entries
    claimed_twice: int
    verify_ok: bool
    verify_entries: int
    verify_chains: int
    verify_seconds: float
    examples: list[str]


_VERSION_VS_AUDIT = """
SELECT t.id, t.version, count(a.id) AS entries
FROM tasks t
LEFT JOIN audit_log a ON a.entity_type = 'task' AND a.entity_id = t.id
                     AND a.action <> 'subtask_added'
GROUP BY t.id, t.version
HAVING t.version <> count(a.id)
"""


async def database_invariants(url: str) -> DbInvariants:
    """Every task change has its audit entry (a task's version counts its changes, and each
    change writes one entry on the task; `subtask_added` lands on the parent without changing
    it), no task was claimed twice, and the hash chains verify (the core's `audit.verify`)."""
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        mismatched = await conn.fetch(_VERSION_VS_AUDIT)
        twice = await conn.fetch(
            "SELECT entity_id, count(*) FROM audit_log WHERE action = 'claimed' "
            "GROUP BY entity_id HAVING count(*) > 1"
        )
        n_tasks = int(await conn.fetchval("SELECT count(*) FROM tasks"))
        n_audit = int(await conn.fetchval("SELECT count(*) FROM audit_log"))
    finally:
        await conn.close()
    db = Database.from_url(url, pool_size=2)
    try:
        t = time.perf_counter()
        result = await audit.verify(db)
        verify_seconds = time.perf_counter() - t
    finally:
        await db.close()
    examples = [
        f"task {r['id']}: version {r['version']}, {r['entries']} entries" for r in mismatched[:5]
    ]
    examples += [f"task {r['entity_id']} claimed {r['count']} times" for r in twice[:5]]
    return DbInvariants(
        tasks=n_tasks,
        audit_entries=n_audit,
        versions_without_entry=len(mismatched),
        claimed_twice=len(twice),
        verify_ok=bool(result.ok),
        verify_entries=int(result.entries_checked),
        verify_chains=int(result.chains_checked),
        verify_seconds=round(verify_seconds, 3),
        examples=examples,
    )


async def claims_per_task(url: str, after_id: int) -> Counter[int]:
    conn = await asyncpg.connect(plain_dsn(url))
    try:
        rows = await conn.fetch(
            "SELECT entity_id FROM audit_log WHERE action = 'claimed' AND id > $1", after_id
        )
    finally:
        await conn.close()
    return Counter(int(r["entity_id"]) for r in rows)
