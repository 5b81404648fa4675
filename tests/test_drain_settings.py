"""CHARPENTE_DRAIN_SECONDS: how long a stopping server keeps serving, checked when read."""

from __future__ import annotations

import pytest

from charpente.errors import ConfigError
from charpente.settings import Settings, to_environ


def test_the_drain_lasts_5_seconds_by_default_and_reaches_the_server_processes() -> None:
    settings = Settings.from_env({})
    assert settings.drain_seconds == 5.0
    given = Settings.from_env({"CHARPENTE_DRAIN_SECONDS": "0.5"})
    assert given.drain_seconds == 0.5
    assert Settings.from_env(to_environ(given)).drain_seconds == 0.5


@pytest.mark.parametrize("value", ["-1", "301", "soon", "nan"])
def test_a_drain_out_of_bounds_is_refused_in_one_line(value: str) -> None:
    with pytest.raises(ConfigError, match="CHARPENTE_DRAIN_SECONDS is a number of seconds"):
        Settings.from_env({"CHARPENTE_DRAIN_SECONDS": value})
