"""Settings from the environment: defaults, every variable, and a clear error for bad values."""

from __future__ import annotations

from pathlib import Path

import pytest

from charpente.errors import ConfigError
from charpente.settings import Settings, redacted_url, to_environ


def test_an_empty_environment_gives_sqlite_and_the_social_template(tmp_path: Path) -> None:
    settings = Settings.from_env({}, cwd=tmp_path)
    assert settings.database_url == "sqlite+aiosqlite:///charpente.db"
    assert settings.database_schema is None
    assert settings.design_path is None
    assert settings.design_label == "template:social"
    assert (settings.pool_size, settings.max_body_bytes, settings.log_level) == (
        10,
        1 << 20,
        "info",
    )


def test_a_design_yaml_in_the_working_directory_is_the_default_design(tmp_path: Path) -> None:
    (tmp_path / "design.yaml").write_text("charpente: 1\n")
    assert Settings.from_env({}, cwd=tmp_path).design_path == tmp_path / "design.yaml"


def test_every_variable_is_read(tmp_path: Path) -> None:
    (tmp_path / "my.yaml").write_text("charpente: 1\n")
    settings = Settings.from_env(
        {
            "CHARPENTE_DATABASE_URL": "postgresql+asyncpg://app:s3cret@db:5432/app",
            "CHARPENTE_DATABASE_SCHEMA": "tenant_1",
            "CHARPENTE_DESIGN": "my.yaml",
            "CHARPENTE_POOL_SIZE": "25",
            "CHARPENTE_MAX_BODY_BYTES": "2048",
            "CHARPENTE_LOG_LEVEL": "DEBUG",
        },
        cwd=tmp_path,
    )
    assert settings.database_url == "postgresql+asyncpg://app:s3cret@db:5432/app"
    assert settings.database_schema == "tenant_1"
    assert settings.design_path == tmp_path / "my.yaml"
    assert (settings.pool_size, settings.max_body_bytes, settings.log_level) == (25, 2048, "debug")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CHARPENTE_DATABASE_URL", "not a url"),
        ("CHARPENTE_DATABASE_SCHEMA", "bad-schema; drop"),
        ("CHARPENTE_DESIGN", "missing.yaml"),
        ("CHARPENTE_DESIGN", "template:../etc"),
        ("CHARPENTE_POOL_SIZE", "ten"),
        ("CHARPENTE_POOL_SIZE", "0"),
        ("CHARPENTE_MAX_BODY_BYTES", "-1"),
        ("CHARPENTE_MAX_BODY_BYTES", str(1 << 40)),
        ("CHARPENTE_LOG_LEVEL", "loud"),
    ],
)
def test_a_bad_value_is_a_config_error_naming_the_variable(
    tmp_path: Path, name: str, value: str
) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({name: value}, cwd=tmp_path)


def test_to_environ_round_trips(tmp_path: Path) -> None:
    (tmp_path / "d.yaml").write_text("charpente: 1\n")
    for environ in (
        {},
        {
            "CHARPENTE_DESIGN": "d.yaml",
            "CHARPENTE_DATABASE_SCHEMA": "s",
            "CHARPENTE_POOL_SIZE": "3",
        },
        {"CHARPENTE_DESIGN": "template:social", "CHARPENTE_LOG_LEVEL": "warning"},
    ):
        settings = Settings.from_env(environ, cwd=tmp_path)
        assert Settings.from_env(to_environ(settings), cwd=tmp_path) == settings


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql+asyncpg://app:s3cret@db:5432/app", "postgresql+asyncpg://app:***@db:5432/app"),
        ("postgresql+asyncpg://app@db/app", "postgresql+asyncpg://app@db/app"),
        ("sqlite+aiosqlite:///charpente.db", "sqlite+aiosqlite:///charpente.db"),
        ("postgresql://u:p%40ss@h/d?sslmode=require", "postgresql://u:***@h/d?sslmode=require"),
        (
            "postgresql://u@h/d?sslmode=require&password=s3cret",
            "postgresql://u@h/d?sslmode=require&password=***",
        ),
        ("postgresql://u:p@h/d?PassWord=s3cret", "postgresql://u:***@h/d?PassWord=***"),
        (
            "postgresql://h/d?sslpassword=k3y&application_name=x",
            "postgresql://h/d?sslpassword=***&application_name=x",
        ),
    ],
)
def test_redacted_url_hides_the_password(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


def test_the_password_never_shows_in_the_settings_repr() -> None:
    settings = Settings(database_url="postgresql+asyncpg://app:s3cret@db/app")
    assert "s3cret" not in repr(settings)
    assert "app:***@db" in repr(settings)


def test_a_bad_url_error_does_not_show_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"CHARPENTE_DATABASE_URL": "app:s3cret@db"})
    assert "s3cret" not in str(caught.value)


@pytest.mark.parametrize(
    ("value", "expected"), [("true", True), ("1", True), ("off", False), ("", False)]
)
def test_the_access_log_is_switched_by_a_boolean_variable(value: str, expected: bool) -> None:
    assert Settings.from_env({"CHARPENTE_ACCESS_LOG": value}).access_log is expected
    assert Settings.from_env({}).access_log is False


def test_a_non_boolean_access_log_value_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="CHARPENTE_ACCESS_LOG"):
        Settings.from_env({"CHARPENTE_ACCESS_LOG": "maybe"})


def test_the_access_log_setting_survives_the_trip_to_worker_processes() -> None:
    settings = Settings.from_env({"CHARPENTE_ACCESS_LOG": "yes"})
    assert Settings.from_env(to_environ(settings)).access_log is True


def test_metrics_are_on_unless_switched_off_and_the_switch_reaches_worker_processes() -> None:
    assert Settings.from_env({}).metrics is True
    off = Settings.from_env({"CHARPENTE_METRICS": "false"})
    assert off.metrics is False
    assert Settings.from_env(to_environ(off)).metrics is False
    with pytest.raises(ConfigError, match="CHARPENTE_METRICS"):
        Settings.from_env({"CHARPENTE_METRICS": "sometimes"})
