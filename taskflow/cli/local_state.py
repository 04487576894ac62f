"""What the CLI remembers between commands, in the data directory (as Phase 1's config.json did).

`config.json` holds the local user and default project chosen at `taskflow init`; `token` holds
the bearer token saved by `taskflow login`, readable by its owner only (mode 0600), since it
proves who you are to anyone who reads it.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

CONFIG_FILE = "config.json"
TOKEN_FILE = "token"


@dataclass
class LocalConfig:
    current_user: str | None = None
    default_project: str = "default"


def _ensure_dir(data_dir: Path) -> None:
    data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)


def load_config(data_dir: Path) -> LocalConfig:
    """The saved config, or defaults when there is none (or it is unreadable)."""
    try:
        raw = json.loads((data_dir / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return LocalConfig()
    if not isinstance(raw, dict):
        return LocalConfig()
    return LocalConfig(
        current_user=raw.get("current_user"),
        default_project=raw.get("default_project") or "default",
    )


def save_config(data_dir: Path, config: LocalConfig) -> Path:
    _ensure_dir(data_dir)
    path = data_dir / CONFIG_FILE
    path.write_text(json.dumps(asdict(config), indent=2) + "\n", encoding="utf-8")
    return path


def token_path(data_dir: Path) -> Path:
    return data_dir / TOKEN_FILE


def load_token(data_dir: Path) -> str | None:
    try:
        token = token_path(data_dir).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    return token or None


def save_token(data_dir: Path, token: str) -> Path:
    """Write the token so that only its owner can read it, even if the file existed before."""
    _ensure_dir(data_dir)
    path = token_path(data_dir)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        with contextlib.suppress(OSError):  # not every filesystem has POSIX modes
            os.fchmod(handle.fileno(), 0o600)
        handle.write(token + "\n")
    return path


def clear_token(data_dir: Path) -> bool:
    """Forget the saved token; False when there was none."""
    try:
        token_path(data_dir).unlink()
    except FileNotFoundError:
        return False
    return True
