"""The benches' short runs, so they cannot rot: each bench in bench/ that offers `--quick` runs
here as a subprocess (seconds, small N) and must exit 0; their full runs are by hand.

A bench whose docstring names another test that runs its `--quick` (tests/prod/test_prod_quick.py
for the production-proof benches) is left to that test once the file exists, so CI runs it once.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
TIMEOUT_S = 180


def quick_benches() -> list[Path]:
    return sorted(
        p for p in BENCH.glob("*.py") if not p.name.startswith("_") and "--quick" in p.read_text()
    )


def runner_elsewhere(bench: Path) -> Path | None:
    """The other test file this bench says runs its --quick, if that file exists."""
    named = re.search(r"(tests/[\w/]+\.py) runs `?--quick", bench.read_text())
    if named is None:
        return None
    path = ROOT / named.group(1)
    return path if path.exists() and path != Path(__file__).resolve() else None


def run_bench(bench: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "DATABASE_POOLED") and not k.startswith("TASKFLOW_TEST_")
    }
    return subprocess.run(
        [sys.executable, str(bench), "--quick", *extra],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )


def test_every_quick_bench_runs_in_ci() -> None:
    """The production-proof benches run in tests/prod; any other `--quick` bench runs here."""
    names = {b.stem for b in quick_benches()}
    assert {"agents", "faults", "replicas", "scale"} <= names
    for bench in quick_benches():
        if bench.stem == "scale" or runner_elsewhere(bench) is not None:
            continue
        done = run_bench(bench)
        assert done.returncode == 0, f"{bench.name} --quick failed:\n{done.stdout}\n{done.stderr}"


def test_scale_quick_measures_what_it_claims(tmp_path: Path) -> None:
    out = tmp_path / "scale.json"
    done = run_bench(BENCH / "scale.py", "--json", str(out))
    assert done.returncode == 0, f"scale.py --quick failed:\n{done.stdout}\n{done.stderr}"
    result = json.loads(out.read_text())
    assert result["data"]["tasks"] == 20_000
    assert result["data"]["audit_entries"] >= 100_000
    assert result["subtree"]["statements"] == 1, "the subtree is read in one query"
    assert result["verify"]["entries"] == result["data"]["audit_entries"], "the whole log verified"
    for key in ("tasks_created", "tasks_priority", "audit"):
        page = result["lists"][key]
        assert page["page_1_ms"] > 0 and page["far_page_ms"] > 0
    assert "list_tasks, sort created" in done.stdout
