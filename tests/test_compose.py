"""compose.yaml: every variable it gives charpente is one the settings read, each service
has a healthcheck, charpente starts only once its dependencies are healthy, and a stop
leaves the drain its time. The Containerfile drains too: signals reach the server."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from charpente.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
CHARPENTE_SERVICES = ("serve", "worker")
INTERPOLATION = re.compile(r"\$\{([A-Z_][A-Z0-9_]*)(?:(:?[-?])([^}]*))?\}")
SAMPLE_KEYS = "k1:" + "A" * 43 + "="  # for the one required variable, CHARPENTE_SECRET_KEYS


class Recording(Mapping[str, str]):
    """An environment that remembers every name it was asked for."""

    def __init__(self, values: Mapping[str, str]) -> None:
        self.values = dict(values)
        self.asked: set[str] = set()

    def __getitem__(self, name: str) -> str:
        self.asked.add(name)
        return self.values[name]

    def get(self, name: str, default: Any = None) -> Any:
        self.asked.add(name)
        return self.values.get(name, default)

    def __contains__(self, name: object) -> bool:
        if isinstance(name, str):
            self.asked.add(name)
        return name in self.values

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return loaded


def interpolated(value: str) -> str:
    """`${NAME:-default}` as compose gives it when NAME is not set (`${NAME:?…}`: a sample)."""

    def replace(match: re.Match[str]) -> str:
        operator, word = match.group(2), match.group(3)
        if operator in (":-", "-"):
            return str(word)
        return SAMPLE_KEYS if operator in (":?", "?") else ""

    return INTERPOLATION.sub(replace, value)


def test_every_variable_compose_sets_for_charpente_is_read_by_the_settings() -> None:
    services = compose()["services"]
    for name in CHARPENTE_SERVICES:
        environment = services[name]["environment"]
        given = {key: interpolated(str(value)) for key, value in environment.items()}
        assert given["CHARPENTE_DESIGN"] == "/app/design.yaml"  # the mounted design file
        given["CHARPENTE_DESIGN"] = "template:social"  # (not on this machine)
        recording = Recording(given)
        settings = Settings.from_env(recording, cwd=ROOT)
        unread = set(given) - recording.asked
        assert not unread, f"{name} sets variables no setting reads: {sorted(unread)}"
        assert settings.worker == "separate"
        assert settings.database_url.startswith("postgresql+asyncpg://")


def test_every_service_has_a_healthcheck_and_charpente_waits_for_healthy_ones() -> None:
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "rabbitmq", "serve", "worker"}
    for name, service in services.items():
        check = service["healthcheck"]
        if name == "worker":
            assert check == {"disable": True}  # no HTTP port to probe
            continue
        assert check["test"][0] == "CMD", name
    for name in CHARPENTE_SERVICES:
        needs = services[name]["depends_on"]
        assert needs, name
        assert all(n["condition"] == "service_healthy" for n in needs.values()), name
        assert "postgres" in needs
    assert set(services["serve"]["depends_on"]) == {"postgres", "redis", "rabbitmq"}
    assert "/readyz" in " ".join(services["serve"]["healthcheck"]["test"])


def test_a_stop_leaves_the_drain_its_time() -> None:
    services = compose()["services"]
    for name in CHARPENTE_SERVICES:
        service = services[name]
        grace = int(service["stop_grace_period"].rstrip("s"))
        drain = float(service["environment"]["CHARPENTE_DRAIN_SECONDS"])
        assert grace > drain + 10, name  # the drain, then requests in flight (10 s at most)
        assert service["stop_signal"] == "SIGTERM"
        assert isinstance(service["command"], list), name  # exec form


def test_the_containerfile_runs_unprivileged_in_exec_form_with_signals_passed_on() -> None:
    text = (ROOT / "Containerfile").read_text()
    assert re.search(r"^USER 10001", text, re.M)
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "charpente"]' in text
    assert re.search(r"^CMD \[", text, re.M)
    assert re.search(r"^HEALTHCHECK .*\n.*/readyz", text, re.M)
    assert "--no-index" in text  # installed offline, from the wheels built beforehand
    assert "'charpente[all]'" in text
    assert re.search(r"^ARG BASE=", text, re.M)
