"""Every bench's `--quick` run, so none can rot: each runs as a subprocess exactly as a person
runs it, must exit 0 and write its JSON. No figure is asserted (numbers belong to benches; the
machine decides them), only that the run happened and says what it compared."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHES = sorted(p for p in (ROOT / "bench").glob("*.py") if not p.name.startswith("_"))
TIMEOUT_S = 240
NEEDS_WRK = {"rest_create", "mcp_create"}


def test_the_benches_are_the_figures_of_the_performance_table() -> None:
    names = {b.stem for b in BENCHES}
    assert names == {"rest_create", "mcp_create", "cli_list", "subtree", "verify", "sse_soak"}


@pytest.mark.parametrize("bench", BENCHES, ids=lambda p: p.stem)
def test_quick_run_exits_0_and_writes_its_json(bench: Path, tmp_path: Path) -> None:
    if bench.stem in NEEDS_WRK and shutil.which("wrk") is None:
        pytest.skip("wrk is not installed (apt-get install -y wrk; .ci/run installs it)")
    out = tmp_path / f"{bench.stem}.json"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "DATABASE_POOLED") and not k.startswith("TASKFLOW_")
    }
    done = subprocess.run(
        [sys.executable, str(bench), "--quick", "--json", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 0, f"{bench.name} --quick failed:\n{done.stdout}\n{done.stderr}"
    result = json.loads(out.read_text())
    assert result["bench"] == bench.stem and result["quick"] is True
    assert result["command"].startswith(f"uv run python bench/{bench.stem}.py")
    assert "ratio" in result or "ratio_to_fetch" in result
