"""`uv run taskflow demo --fast` on a fresh machine: no DATABASE_URL, a brand-new data directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TASKFLOW = Path(sys.executable).parent / "taskflow"


def fresh_env(data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "AUTH_SERVER_URL", "TASKFLOW_TOKEN", "TASKFLOW_API_KEY")
    }
    return env | {"TASKFLOW_DATA_DIR": str(data_dir), "NO_COLOR": "1", "COLUMNS": "120"}


def test_demo_runs_on_a_fresh_embedded_database() -> None:
    # Not tmp_path: concurrent pytest sessions prune old basetemp dirs, under a live server.
    data_dir = Path(tempfile.mkdtemp(prefix="tf-demo-")) / "fresh"
    env = fresh_env(data_dir)
    uv = shutil.which("uv")
    command = [uv, "run", "taskflow"] if uv else [str(TASKFLOW)]
    try:
        first = subprocess.run(
            [*command, "demo", "--fast", "--no-cleanup"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=240,
        )
        assert first.returncode == 0, first.stdout + first.stderr
        out = first.stdout
        for line in (
            "Meet the team",
            "signs in with that key",
            "claims #",
            "refused (invalid-transition)",
            "rejects #",
            "approves #",
            "refused (forbidden)",
            "Launch TaskFlow 2.0",
            "Audit trail of demo",
            "✓ intact:",
        ):
            assert line in out, (line, out)
        assert "Traceback" not in first.stderr
        assert (data_dir / "pgdata" / "PG_VERSION").exists()  # it made its own PostgreSQL
        # Run again: same workers, a fresh key, a new project slug, then cleaned up.
        again = subprocess.run(
            [str(TASKFLOW), "demo", "--fast"], env=env, capture_output=True, text=True, timeout=240
        )
        assert again.returncode == 0, again.stdout + again.stderr
        assert "Audit trail of demo-2" in again.stdout and "Cleaned up" in again.stdout
    finally:
        stop = subprocess.run(
            [str(TASKFLOW), "db", "stop"], env=env, capture_output=True, text=True, timeout=60
        )
    assert stop.returncode == 0 and "Stopped" in stop.stdout, stop.stdout + stop.stderr
    shutil.rmtree(data_dir.parent, ignore_errors=True)
