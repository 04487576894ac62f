"""Where settings come from: `.env`, the environment, explicit values, in that order.

What a deployment relies on: dotenv syntax, names in any case, the environment over `.env`,
bad values named, other variables ignored, and `.env.example` documenting every knob.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from pydantic import ValidationError

from taskflow.core.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def settings_from(env_file: Path | None, **values: object) -> Settings:
    """Settings as a process reads them, with `env_file` as its `.env`."""
    return Settings(_env_file=env_file, **values)  # type: ignore[call-arg]


@pytest.fixture
def env_file(tmp_path: Path) -> Path:
    path = tmp_path / ".env"
    path.write_text(
        "# a comment\n"
        "LOG_LEVEL=warning\n"
        'TASKFLOW_PUBLIC_URL="https://tasks.example.com"\n'
        "export WEBHOOK_MAX_ATTEMPTS=3\n"
        "RATE_LIMIT_READS_PER_MINUTE=10\n"
        "SOMETHING_ELSE=ignored\n"
    )
    return path


def test_env_file_is_read_with_dotenv_syntax(env_file: Path, monkeypatch: pytest.MonkeyPatch):
    for name in ("LOG_LEVEL", "TASKFLOW_PUBLIC_URL", "WEBHOOK_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("RATE_LIMIT_READS_PER_MINUTE", raising=False)
    settings = settings_from(env_file)
    assert settings.log_level == "WARNING"
    assert settings.taskflow_public_url == "https://tasks.example.com"
    assert settings.webhook_max_attempts == 3
    assert settings.rate_limit_reads_per_minute == 10.0


def test_environment_wins_over_the_file_and_overrides_over_both(
    env_file: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("LOG_LEVEL", "ERROR")
    monkeypatch.setenv("webhook_max_attempts", "5")  # any case names the field
    monkeypatch.setenv("RATE_LIMIT_READS_PER_MINUTE", "20")
    settings = settings_from(env_file, rate_limit_reads_per_minute=30)
    assert settings.log_level == "ERROR"
    assert settings.webhook_max_attempts == 5
    assert settings.rate_limit_reads_per_minute == 30.0


def test_no_file_and_a_missing_file_leave_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.delenv("WEBHOOK_MAX_ATTEMPTS", raising=False)
    default = Settings.model_fields["webhook_max_attempts"].default
    assert settings_from(None).webhook_max_attempts == default
    assert settings_from(tmp_path / "absent.env").webhook_max_attempts == default


def test_a_bad_value_names_its_setting(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("WEBHOOK_MAX_ATTEMPTS", "many")
    with pytest.raises(ValidationError) as caught:
        settings_from(None)
    assert caught.value.errors()[0]["loc"] == ("webhook_max_attempts",)


def test_env_example_documents_every_setting():
    documented = set(
        re.findall(r"^#?\s*([A-Z][A-Z0-9_]*)=", (ROOT / ".env.example").read_text(), re.M)
    )
    fields = {name.upper() for name in Settings.model_fields}
    assert fields - documented == set(), "settings missing from .env.example"
