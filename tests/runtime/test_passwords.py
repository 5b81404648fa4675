"""Passwords: argon2id off the event loop, the same time for unknown accounts, NIST rules."""

from __future__ import annotations

import os
import statistics
import threading
import time
import unicodedata
from importlib import resources

import anyio
import pytest
from argon2 import PasswordHasher as Argon2Hasher

from charpente.runtime.passwords import (
    MAX_PASSWORD_LENGTH,
    PasswordHasher,
    check_password,
    is_common_password,
)

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def hasher() -> PasswordHasher:
    return PasswordHasher()


async def test_hashes_are_argon2id_with_at_least_owasp_s_parameters(hasher: PasswordHasher) -> None:
    hashed = await hasher.hash("correct horse battery staple")
    assert hashed.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert "correct" not in hashed
    assert await hasher.hash("correct horse battery staple") != hashed  # a new salt each time


async def test_a_hash_verifies_its_password_and_no_other(hasher: PasswordHasher) -> None:
    hashed = await hasher.hash("correct horse battery staple")
    assert await hasher.verify(hashed, "correct horse battery staple")
    assert not await hasher.verify(hashed, "correct horse battery stapler")
    assert not await hasher.verify(hashed, "")


@pytest.mark.parametrize(
    "bad_hash",
    [
        "",
        "not a hash",
        "$argon2id$v=19$m=19456,t=2,p=1$",
        "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$!!!!",
        "$2b$12$R9h/cIPz0gi.URNNX3kh2OPST9/PgBkqquzi.Ss7KIUgO2t0jWMUW",  # bcrypt
        "$argon2id$v=19$m=99999999999,t=2,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
    ],
)
async def test_a_malformed_hash_verifies_nothing_and_raises_nothing(
    hasher: PasswordHasher, bad_hash: str
) -> None:
    assert await hasher.verify(bad_hash, "whatever password") is False


async def test_an_overlong_password_is_refused_without_hashing(hasher: PasswordHasher) -> None:
    hashed = await hasher.hash("x" * 1024)
    assert await hasher.verify(hashed, "x" * 1024)
    started = time.perf_counter()
    assert await hasher.verify(hashed, "x" * 1_000_000) is False
    assert time.perf_counter() - started < 0.01
    with pytest.raises(ValueError, match="at most 1024"):
        await hasher.hash("x" * 1025)


async def test_equivalent_unicode_forms_of_a_password_verify_alike(hasher: PasswordHasher) -> None:
    composed = (
        "caf\u00e9-\ufb01ve-\uff11\uff12\uff13"  # é composed, an "fi" ligature, full-width 123
    )
    decomposed = unicodedata.normalize("NFD", "café") + "-five-123"
    hashed = await hasher.hash(composed)
    assert await hasher.verify(hashed, decomposed)


async def test_a_hash_with_weaker_or_other_parameters_needs_rehash(hasher: PasswordHasher) -> None:
    weak = Argon2Hasher(time_cost=1, memory_cost=8192, parallelism=1).hash("password one")
    assert hasher.needs_rehash(weak)
    assert not hasher.needs_rehash(await hasher.hash("password one"))
    assert hasher.needs_rehash("not a hash")
    stronger = PasswordHasher(time_cost=3)
    assert stronger.needs_rehash(await hasher.hash("password one"))


async def test_the_dummy_verify_takes_about_as_long_as_a_real_one(hasher: PasswordHasher) -> None:
    hashed = await hasher.hash("correct horse battery staple")
    real, dummy = [], []
    for _ in range(7):
        started = time.perf_counter()
        await hasher.verify(hashed, "wrong horse battery staple")
        real.append(time.perf_counter() - started)
        started = time.perf_counter()
        assert await hasher.verify_dummy("wrong horse battery staple") is False
        dummy.append(time.perf_counter() - started)
    ratio = statistics.median(dummy) / statistics.median(real)
    assert 1 / 3 < ratio < 3, (statistics.median(real), statistics.median(dummy))


@pytest.mark.skipif(not hasattr(os, "getpriority"), reason="no per-thread nice levels here")
async def test_hashing_threads_run_at_a_lower_priority_than_the_event_loop(
    hasher: PasswordHasher,
) -> None:
    def niceness() -> tuple[int, str]:
        tid = threading.get_native_id()
        return os.getpriority(os.PRIO_PROCESS, tid), threading.current_thread().name

    loop_niceness = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())
    thread_niceness, name = await hasher._run(niceness)
    assert name.startswith("argon2")
    assert thread_niceness == min(19, loop_niceness + 10)
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == loop_niceness


async def test_twenty_concurrent_hashes_leave_the_event_loop_free() -> None:
    hasher = PasswordHasher()
    gaps: list[float] = []
    done = anyio.Event()

    async def ticker() -> None:
        last = time.perf_counter()
        while not done.is_set():
            await anyio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now

    async def hash_all() -> list[str]:
        results: list[str] = []

        async def one(i: int) -> None:
            results.append(await hasher.hash(f"password number {i}"))

        async with anyio.create_task_group() as group:
            for i in range(20):
                group.start_soon(one, i)
        done.set()
        return results

    async with anyio.create_task_group() as group:
        group.start_soon(ticker)
        hashes = await hash_all()
    assert len(hashes) == 20
    # Twenty hashes of ~50 ms each: run on the loop, they would stop the ticker for about a
    # second. The bounds leave room for a busy machine (worker threads compete for cores).
    assert len(gaps) >= 10
    assert statistics.median(gaps) < 0.02, statistics.median(gaps)
    assert max(gaps) < 0.15, max(gaps)


def test_a_good_passphrase_passes_every_rule() -> None:
    assert check_password("violet tractor umbrella 42", email="ada@example.com") == []


@pytest.mark.parametrize(
    ("password", "expected"),
    [
        ("short1!", "at least 8"),
        ("", "at least 8"),
        ("x" * (MAX_PASSWORD_LENGTH + 1), "at most 128"),
        ("aaaaaaaaaaaa", "single character"),
        ("password", "too common"),
        ("PassWord123", "too common"),
        ("baseball", "too common"),
    ],
)
def test_a_weak_password_is_refused_with_a_reason(password: str, expected: str) -> None:
    problems = check_password(password)
    assert any(expected in problem for problem in problems), problems


def test_length_counts_code_points_of_the_nfkc_form() -> None:
    assert check_password("é" * 4 + "ü" * 4) == []  # 8 characters, 16 bytes of UTF-8
    assert check_password("\u00e9\u00fc\u00f1\u00e5\u00f8\u00e7\u00ee") != []  # 7 characters
    assert check_password("ﬀ" * 4 + "zq") == []  # each ligature becomes "ff": 10 characters
    assert check_password("x" * MAX_PASSWORD_LENGTH) != []  # long enough, but one character
    assert check_password("xy" * (MAX_PASSWORD_LENGTH // 2)) == []


def test_a_password_may_not_contain_the_email_s_name_or_a_context_word() -> None:
    email = "ada.lovelace@example.com"
    assert check_password("ada.lovelace", email=email) != []
    assert check_password("my ADA.LOVELACE 1815!", email=email) != []
    assert check_password("analytical engine 1843", email=email) == []
    assert check_password("charpente rocks 2024", context=["Charpente"]) != []
    assert check_password("timber frame rocks", context=["charpente", "ad"]) == []  # "ad" too short


def test_the_common_password_list_ships_with_the_package_and_is_large_enough() -> None:
    source = resources.files("charpente.runtime").joinpath("data/common-passwords.txt")
    lines = source.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("# source: ")
    assert "license" in lines[0].lower()
    entries = lines[1:]
    assert len(entries) >= 10_000
    assert len(set(entries)) == len(entries)
    assert all(len(e) >= 8 and e == e.lower() == unicodedata.normalize("NFKC", e) for e in entries)
    assert len(source.read_bytes()) < 1_000_000
    assert is_common_password("Password1")
    assert is_common_password("12345678")
    assert not is_common_password("violet tractor umbrella 42")
