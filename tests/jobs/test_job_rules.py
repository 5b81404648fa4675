"""What may be registered and queued, the retry schedule and error summaries (no database)."""

from __future__ import annotations

import datetime
import decimal
import uuid
from typing import Any

import pytest

from charpente.runtime.hooks import Hooks
from charpente.runtime.jobs import (
    MAX_ARGS_BYTES,
    JobContext,
    RunnerOptions,
    checked_job,
    error_summary,
    retry_delay,
)

NOW = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)


@pytest.fixture
def hooks() -> Hooks:
    hooks = Hooks()

    @hooks.job("send_welcome", retries=4, timeout=30)
    async def send_welcome(ctx: JobContext, args: dict[str, Any]) -> None:
        return None

    return hooks


def test_a_checked_job_carries_its_json_args_attempts_and_time(hooks: Hooks) -> None:
    args = {"id": uuid.UUID(int=1), "at": NOW, "price": decimal.Decimal("1.50"), "n": [1, None]}
    job = checked_job(hooks, "send_welcome", args, 90, NOW)
    assert job.name == "send_welcome"
    assert job.args == (
        '{"id":"00000000-0000-0000-0000-000000000001","at":"2026-01-01T00:00:00Z",'
        '"price":"1.50","n":[1,null]}'
    )
    assert job.max_attempts == 5
    assert job.run_at == NOW + datetime.timedelta(seconds=90)
    assert job.created_at == NOW


@pytest.mark.parametrize(
    ("job", "args", "delay", "message"),
    [
        (
            "send_welcom",
            {},
            0,
            r"no job named 'send_welcom' is registered .*\(jobs: send_welcome\)",
        ),
        (None, {}, 0, "no job named None"),
        ("send_welcome", [1, 2], 0, "args must be a JSON object \\(a dict\\), not list"),
        ("send_welcome", None, 0, "not NoneType"),
        ("send_welcome", {1: "a"}, 0, "keys must be strings, not int"),
        ("send_welcome", {"c": 1j}, 0, "cannot be encoded as JSON: .*complex"),
        ("send_welcome", {"o": object()}, 0, "cannot be encoded as JSON"),
        ("send_welcome", {"big": "x" * MAX_ARGS_BYTES}, 0, r"over the limit of 65536"),
        ("send_welcome", {}, -1, "between 0 and 2592000 s"),
        ("send_welcome", {}, 30 * 86400 + 1, "between 0 and 2592000 s"),
        ("send_welcome", {}, float("nan"), "delay must be a number"),
        ("send_welcome", {}, "10", "delay must be a number"),
        ("send_welcome", {}, True, "delay must be a number"),
    ],
)
def test_a_job_that_cannot_be_queued_says_why(
    hooks: Hooks, job: Any, args: Any, delay: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        checked_job(hooks, job, args, delay, NOW)


def test_args_just_under_the_limit_are_accepted(hooks: Hooks) -> None:
    text = "x" * (MAX_ARGS_BYTES - len('{"big":""}'))
    assert len(checked_job(hooks, "send_welcome", {"big": text}, 0, NOW).args) == MAX_ARGS_BYTES


def test_a_job_registers_with_defaults() -> None:
    hooks = Hooks()

    @hooks.job("plain")
    async def plain(ctx: JobContext, args: dict[str, Any]) -> None:
        return None

    registered = hooks.jobs["plain"]
    assert (registered.retries, registered.timeout, registered.max_attempts) == (5, 60.0, 6)
    assert registered.function is plain


@pytest.mark.parametrize(
    ("name", "options", "error", "message"),
    [
        ("", {}, ValueError, "job name ''"),
        ("has space", {}, ValueError, "use letters, digits"),
        ("x" * 101, {}, ValueError, "at most 100"),
        ("ok", {"retries": -1}, ValueError, "between 0 and 100"),
        ("ok", {"retries": 101}, ValueError, "between 0 and 100"),
        ("ok", {"retries": 1.5}, TypeError, "retries must be an integer"),
        ("ok", {"retries": True}, TypeError, "retries must be an integer"),
        ("ok", {"timeout": 0}, ValueError, "timeout must be over 0"),
        ("ok", {"timeout": float("inf")}, ValueError, "timeout must be over 0"),
        ("ok", {"timeout": 86401}, ValueError, "at most 86400 s"),
        ("ok", {"timeout": "60"}, TypeError, "timeout must be a number"),
    ],
)
def test_a_bad_registration_is_refused(
    name: str, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        Hooks().job(name, **options)


def test_a_job_must_be_async_and_named_once() -> None:
    hooks = Hooks()

    def blocking(ctx: JobContext, args: dict[str, Any]) -> None:
        return None

    async def first(ctx: JobContext, args: dict[str, Any]) -> None:
        return None

    with pytest.raises(TypeError, match="register an `async def` function"):
        hooks.job("sync")(blocking)
    hooks.job("twice")(first)
    with pytest.raises(ValueError, match="a job named 'twice' is registered already"):
        hooks.job("twice")(first)


def test_retries_wait_10_s_doubling_up_to_an_hour_with_the_second_half_random() -> None:
    lowest = [retry_delay(n, lambda: 0.0) for n in range(1, 12)]
    highest = [retry_delay(n, lambda: 1.0) for n in range(1, 12)]
    assert highest == [10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600]
    assert lowest == [h / 2 for h in highest]
    assert 5 <= retry_delay(1) <= 10
    assert retry_delay(1000, lambda: 1.0) == 3600


def test_an_error_summary_is_its_type_and_first_line_cut_at_500() -> None:
    assert error_summary(RuntimeError("down\nat line 2")) == "RuntimeError: down"
    assert error_summary(KeyError()) == "KeyError"
    assert len(error_summary(ValueError("x" * 2000))) == 500


@pytest.mark.parametrize(
    "options", [{"concurrency": 0}, {"concurrency": 1001}, {"poll_interval": 0}]
)
def test_runner_options_are_checked(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RunnerOptions(**options)
