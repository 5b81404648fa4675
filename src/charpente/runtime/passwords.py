"""Passwords: argon2id hashing off the event loop, and the NIST SP 800-63B rules for new ones.

Every password is NFKC-normalized and then UTF-8 encoded before it is hashed or checked, so
the same characters typed on two keyboards (a composed "é" or "e" + combining accent, a
full-width digit) give the same hash. Hashes made elsewhere without that step verify only for
passwords whose NFKC form is themselves, which is every ASCII password.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import threading
import unicodedata
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from importlib import resources
from typing import TypeVar

import anyio
from argon2 import PasswordHasher as _Argon2Hasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = [
    "MAX_PASSWORD_LENGTH",
    "MIN_PASSWORD_LENGTH",
    "PasswordHasher",
    "check_password",
    "is_common_password",
]

MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 128
# A login may send anything; past this many characters verify answers False without hashing,
# so a megabyte "password" costs nothing. Far above MAX_PASSWORD_LENGTH so that passwords
# set under an older, larger limit still verify.
_MAX_VERIFY_CHARS = 1024
# OWASP's argon2id minimum (m=19 MiB, t=2, p=1): about 50 ms per hash on one core here.
_TIME_COST = 2
_MEMORY_KIB = 19456
_PARALLELISM = 1
_MIN_WORD = 3  # shorter email names and context words match too much to be refused
# Hashing threads run this much nicer than the server (Linux nice levels): when logins
# and other requests want the same cores, the event loop goes first and logins queue.
_NICENESS = 10

_T = TypeVar("_T")


class PasswordHasher:
    """argon2id hashes computed in worker threads, at most `max_concurrency` at a time.

    Hashing is deliberately slow (tens of ms) and holds ~19 MiB per hash: the limiter keeps a
    storm of logins from blocking the event loop or exhausting memory; extra logins queue.
    The threads are the hasher's own, at a lower scheduling priority than the event loop's.
    """

    __slots__ = ("_argon2", "_dummy_hash", "_limiter", "_threads")

    def __init__(
        self,
        *,
        time_cost: int = _TIME_COST,
        memory_kib: int = _MEMORY_KIB,
        parallelism: int = _PARALLELISM,
        max_concurrency: int | None = None,
    ) -> None:
        self._argon2 = _Argon2Hasher(
            time_cost=time_cost,
            memory_cost=memory_kib,
            parallelism=parallelism,
            hash_len=32,
            salt_len=16,
            type=Type.ID,
        )
        concurrency = max_concurrency or min(4, os.cpu_count() or 1)
        self._limiter = anyio.CapacityLimiter(concurrency)
        self._threads = ThreadPoolExecutor(
            concurrency, thread_name_prefix="argon2", initializer=_lower_priority
        )
        # A hash of a random password nobody knows, with the same parameters as real ones,
        # so verify_dummy does exactly the work of a real verify.
        self._dummy_hash = self._argon2.hash(secrets.token_urlsafe(24))

    def __repr__(self) -> str:
        p = self._argon2
        return f"PasswordHasher(argon2id m={p.memory_cost} t={p.time_cost} p={p.parallelism})"

    async def hash(self, password: str) -> str:
        """The PHC-format argon2id hash of the NFKC form of `password` (a new random salt).

        Raises ValueError past 1024 characters: verify would never accept such a password.
        Check new passwords with check_password first (it allows at most 128).
        """
        if len(password) > _MAX_VERIFY_CHARS:
            raise ValueError(f"a password has at most {_MAX_VERIFY_CHARS} characters")
        encoded = _encode(password)
        return await self._run(self._argon2.hash, encoded)

    async def verify(self, hash: str, password: str) -> bool:
        """Whether `password` matches `hash`; False, never an error, on a mismatch or a bad hash."""
        if len(password) > _MAX_VERIFY_CHARS:
            return False
        encoded = _encode(password)
        return await self._run(self._verify_sync, hash, encoded)

    async def verify_dummy(self, password: str) -> bool:
        """Spend the time of a real verify, then answer False (for an account that does not exist).

        Login calls this when no account has the given email, so the answer takes as long
        as a wrong password for an existing account and does not reveal which emails exist.
        """
        await self.verify(self._dummy_hash, password)
        return False

    def needs_rehash(self, hash: str) -> bool:
        """Whether `hash` was made with other parameters than this hasher's (rehash on login)."""
        try:
            return self._argon2.check_needs_rehash(hash)
        except (InvalidHashError, ValueError):
            return True

    async def _run(self, function: Callable[..., _T], *args: object) -> _T:
        async with self._limiter:
            return await asyncio.get_running_loop().run_in_executor(self._threads, function, *args)

    def _verify_sync(self, hash: str, encoded: bytes) -> bool:
        try:
            return self._argon2.verify(hash, encoded)
        except (VerificationError, InvalidHashError, ValueError):
            return False


def check_password(
    password: str, *, email: str | None = None, context: Iterable[str] = ()
) -> list[str]:
    """What is wrong with `password` as a new password, as messages for people ([] when fine).

    The rules of NIST SP 800-63B §3.1.1.2: 8 to 128 characters (code points of the NFKC
    form), not a commonly used password, not the account's own email name or another word
    of `context` (the handle, the service's name), not one character repeated. No rule on
    character classes: NIST advises against them.
    """
    normalized = unicodedata.normalize("NFKC", password)
    length = len(normalized)
    if length > MAX_PASSWORD_LENGTH:
        return [f"must have at most {MAX_PASSWORD_LENGTH} characters"]
    problems: list[str] = []
    if length < MIN_PASSWORD_LENGTH:
        problems.append(f"must have at least {MIN_PASSWORD_LENGTH} characters")
    if length and len(set(normalized)) == 1:
        problems.append("must not be a single character repeated")
    lowered = normalized.lower()
    if length >= MIN_PASSWORD_LENGTH and lowered in _common_passwords():
        problems.append("is too common: it appears in lists of leaked passwords")
    if email is not None and _contains_word(lowered, _email_name(email)):
        problems.append("must not contain the name of your email address")
    if any(_contains_word(lowered, word) for word in context):
        problems.append("must not contain your name or the name of this service")
    return problems


def is_common_password(password: str) -> bool:
    """Whether the NFKC, lowercased form of `password` is in the shipped common-password list."""
    return unicodedata.normalize("NFKC", password).lower() in _common_passwords()


def _lower_priority() -> None:
    """Make the calling thread nicer (where the system schedules threads by nice level)."""
    # Where it is not permitted, hashing still works at the normal priority.
    if hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):
            thread = threading.get_native_id()
            niceness = os.getpriority(os.PRIO_PROCESS, thread) + _NICENESS
            os.setpriority(os.PRIO_PROCESS, thread, min(19, niceness))


def _encode(password: str) -> bytes:
    return unicodedata.normalize("NFKC", password).encode("utf-8")


def _email_name(email: str) -> str:
    """The part of an email address before its last @ (the whole text when there is none)."""
    return email.rpartition("@")[0] or email


def _contains_word(lowered_password: str, word: str) -> bool:
    folded = unicodedata.normalize("NFKC", word).lower().strip()
    return len(folded) >= _MIN_WORD and folded in lowered_password


@functools.cache
def _common_passwords() -> frozenset[str]:
    """The shipped list (NFKC, lowercase, 8+ characters), read once on first use."""
    source = resources.files("charpente.runtime").joinpath("data/common-passwords.txt")
    lines = source.read_text(encoding="utf-8").splitlines()
    # The first line names the list's source and license.
    return frozenset(line for line in lines[1:] if line)
