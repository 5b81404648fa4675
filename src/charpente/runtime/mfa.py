"""Multi-factor sign-in with TOTP (RFC 6238, pyotp): enrolment, recovery codes, the second step.

Enrolling makes a secret (160 bits) and answers it with its `otpauth://` URI; one valid code
confirms it and answers ten single-use recovery codes, shown once and stored as SHA-256
hashes. From then on the password grant (and an OAuth login's code grant) of the account
answers `mfa_required` with a five-minute `mfa_token` instead of tokens; the `mfa` grant
with that token and a code (or a recovery code) issues them, with `amr` saying how
(RFC 8176: `pwd`, `otp`, `mfa`). A code is compared in constant time, accepted one step
(30 s) early or late, and used once (the last accepted step is kept); five wrong codes in
a row lock the account's codes for fifteen minutes. Every step is logged.
"""

from __future__ import annotations

import datetime
import hashlib
import hmac
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyotp

from charpente.compile.plan import Record
from charpente.design.auth import ACCOUNTS
from charpente.errors import Conflict, FieldError, NotFound, Unauthorized, ValidationFailed
from charpente.runtime.caller import SYSTEM, Caller
from charpente.runtime.tokens import new_opaque_token, token_hash

if TYPE_CHECKING:
    from charpente.runtime.auth import Accounts, TokenPair

__all__ = ["LOCK_AFTER", "LOCK_FOR", "MFA_TOKEN_TTL", "RECOVERY_CODES", "Mfa"]

MFA_TOKEN_TTL = datetime.timedelta(minutes=5)
LOCK_AFTER = 5
LOCK_FOR = datetime.timedelta(minutes=15)
RECOVERY_CODES = 10
DRIFT = 1  # steps of 30 s accepted either side of now
_BEARER = 'Bearer realm="api"'
_SEALED, _PLAIN = "sealed:", "plain:"


class Mfa:
    """TOTP for the accounts of one design."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    # --- enrolment -----------------------------------------------------------------------

    async def enroll(
        self, caller: Caller, body: object = None, *, ip: str | None = None
    ) -> dict[str, str]:
        """A new secret for the caller (not in use until confirmed): the secret and its URI.
        Without a bearer token, an enrolment `mfa_token` (a role that `require_mfa` names)
        stands for the sign-in; the answer carries a new one for the confirmation."""
        enrolling = await self._enrolling(body, keep=True)
        account = enrolling[0] if enrolling else await self._account(caller)
        if not enrolling:  # changing how one signs in: prove it is the owner again
            await self.accounts.deletion.reauthenticate(
                caller, account, body, "enrolling a second factor"
            )
        current = await self.accounts.store.mfa(str(account["id"]))
        if current is not None and current["confirmed_at"] is not None:
            raise Conflict(detail="multi-factor sign-in is on already: disable it first")
        secret = pyotp.random_base32(32)  # 160 bits, as RFC 4226 recommends
        now = self.accounts.clock.now()
        await self.accounts.store.save_mfa(str(account["id"]), self._seal(account, secret), now)
        await self.accounts.store.log("mfa_enrolling", str(account["id"]), ip, None, now)
        app = self.accounts.design.auth.app_name or self.accounts.design.name
        uri = pyotp.TOTP(secret).provisioning_uri(name=str(account["email"]), issuer_name=app)
        answer = {"secret": secret, "otpauth_uri": uri}
        if enrolling:
            answer |= await self.challenge(account, f"enroll:{enrolling[1]}", ip)
        return answer

    async def confirm(
        self, caller: Caller, body: object, *, ip: str | None = None, user_agent: str | None = None
    ) -> dict[str, Any]:
        """Turn the enrolled secret on with one valid code: the ten recovery codes, and,
        when an enrolment `mfa_token` stood for the sign-in, the sign-in's tokens."""
        enrolling = await self._enrolling(body, keep=False)
        account = enrolling[0] if enrolling else await self._account(caller)
        account_id = str(account["id"])
        row = await self.accounts.store.mfa(account_id)
        if row is None or row["confirmed_at"] is not None:
            raise NotFound(detail="nothing to confirm: enroll first (POST /v1/auth/mfa/totp)")
        if not await self._code_ok(account, row, _field(body, "code")):
            raise _wrong("code")
        codes = [_recovery_code() for _ in range(RECOVERY_CODES)]
        now = self.accounts.clock.now()
        await self.accounts.store.confirm_mfa(account_id, [_hash(c) for c in codes], now)
        await self.accounts.store.log("mfa_enabled", account_id, ip, "totp", now)
        if not enrolling:
            return {"recovery_codes": codes}
        method = enrolling[1]
        amr = ("pwd", "otp", "mfa") if method == "password" else ("otp", "mfa")
        await self.accounts.store.log("login", account_id, ip, f"{method}+otp", now)
        pair = await self.accounts.issue(account, method, ip, user_agent, amr)
        return {"recovery_codes": codes, **pair.as_json()}

    def needs_enrolment(self, account: Record) -> bool:
        """Whether the account's role signs in only with a second factor (`require_mfa`)."""
        return account.get("role") in self.accounts.design.auth.require_mfa

    async def _enrolling(self, body: object, *, keep: bool) -> tuple[Record, str] | None:
        """The account and sign-in method an enrolment `mfa_token` of `body` stands for;
        None without one. The token is used up (enrol hands out a new one)."""
        presented = _field(body, "mfa_token")
        if presented is None:
            return None
        if not isinstance(presented, str) or not presented or len(presented) > 200:
            raise _bad_token()
        now = self.accounts.clock.now()
        for method in ("password", "oauth"):
            taken = await self.accounts.store.take_email_token(
                token_hash(presented), f"mfa:enroll:{method}", now
            )
            if taken is not None:
                account = await self.accounts.active_account(taken[0])
                if account is None:
                    break
                return account, method
        raise _bad_token()

    async def disable(self, caller: Caller, body: object, *, ip: str | None = None) -> None:
        """Turn TOTP off with a valid code or a recovery code."""
        account = await self._account(caller)
        account_id = str(account["id"])
        row = await self.accounts.store.mfa(account_id)
        if row is None or row["confirmed_at"] is None:
            raise NotFound(detail="multi-factor sign-in is not on")
        fields = body if isinstance(body, dict) else {}
        if not await self._second_factor(account, row, fields, ip):
            raise _wrong("code")
        now = self.accounts.clock.now()
        await self.accounts.store.remove_mfa(account_id)
        await self.accounts.store.log("mfa_disabled", account_id, ip, None, now)

    # --- the second step -----------------------------------------------------------------

    async def required(self, account: Record) -> bool:
        row = await self.accounts.store.mfa(str(account["id"]))
        return row is not None and row["confirmed_at"] is not None

    async def challenge(self, account: Record, method: str, ip: str | None) -> dict[str, str]:
        """A five-minute mfa_token for the second step of a sign-in made by `method`."""
        accounts, now = self.accounts, self.accounts.clock.now()
        token = new_opaque_token()
        await accounts.store.add_email_token(
            token_hash(token),
            str(account["id"]),
            f"mfa:{method}",
            str(account["email"]),
            now,
            now + MFA_TOKEN_TTL,
        )
        await accounts.store.log("mfa_challenged", str(account["id"]), ip, method, now)
        return {"mfa_token": token}

    async def grant(
        self, form: Mapping[str, str], ip: str | None, user_agent: str | None
    ) -> TokenPair:
        """The `mfa` grant: `mfa_token` and `code` (or `recovery_code`) → tokens. The token
        works for one attempt: a wrong code means signing in again."""
        from charpente.runtime.auth import OAuthGrantError  # the grant's own error type

        accounts, now = self.accounts, self.accounts.clock.now()
        presented = form.get("mfa_token") or ""
        if not presented or len(presented) > 200:
            raise OAuthGrantError("invalid_request", "mfa_token is required")
        taken, method = None, "password"
        for method in ("password", "oauth"):
            taken = await accounts.store.take_email_token(
                token_hash(presented), f"mfa:{method}", now
            )
            if taken is not None:
                break
        account = None if taken is None else await accounts.active_account(taken[0])
        if taken is None or account is None:
            raise OAuthGrantError("invalid_grant", "the mfa_token is not valid: sign in again")
        row = await accounts.store.mfa(taken[0])
        if row is None or not await self._second_factor(account, row, form, ip):
            raise OAuthGrantError("invalid_grant", "the code is wrong: sign in again")
        used = "recovery" if form.get("recovery_code") else "otp"
        amr = ("pwd", "otp", "mfa") if method == "password" else ("otp", "mfa")
        await accounts.store.log("login", taken[0], ip, f"{method}+{used}", now)
        return await accounts.issue(account, method, ip, user_agent, amr)

    async def _second_factor(
        self, account: Record, row: Record, fields: Mapping[str, Any], ip: str | None
    ) -> bool:
        recovery = fields.get("recovery_code")
        if isinstance(recovery, str) and recovery:
            normalized = recovery.strip().lower().replace(" ", "")[:64]
            now = self.accounts.clock.now()
            used = await self.accounts.store.use_recovery_code(
                str(account["id"]), _hash(normalized), now
            )
            event = "mfa_recovery_used" if used else "mfa_failed"
            await self.accounts.store.log(event, str(account["id"]), ip, "recovery code", now)
            return used
        ok = await self._code_ok(account, row, fields.get("code"))
        if not ok:
            now = self.accounts.clock.now()
            await self.accounts.store.log("mfa_failed", str(account["id"]), ip, "totp", now)
        return ok

    async def _code_ok(self, account: Record, row: Record, code: object) -> bool:
        """Whether `code` is a valid code not used before (and the codes are not locked);
        every check counts for the lockout."""
        now = self.accounts.clock.now()
        totp = pyotp.TOTP(self._open(account, str(row["secret"])))
        text = code.strip() if isinstance(code, str) else ""
        matched = None
        for offset in range(-DRIFT, DRIFT + 1):  # every candidate compared: no early exit
            candidate = totp.at(now, counter_offset=offset)
            if hmac.compare_digest(candidate.encode(), text.encode()[:16]):
                matched = totp.timecode(now) + offset
        return await self.accounts.store.mfa_checked(
            str(account["id"]), matched, now, LOCK_AFTER, now + LOCK_FOR
        )

    # --- helpers -------------------------------------------------------------------------

    async def _account(self, caller: Caller) -> Record:
        if caller.id is None:
            raise Unauthorized(detail="sign in first", headers={"WWW-Authenticate": _BEARER})
        return (await self.accounts.service.get(ACCOUNTS, caller.id, caller=SYSTEM)).record

    def _seal(self, account: Record, secret: str) -> str:
        sealer = self.accounts.sealer
        if sealer is None:
            return _PLAIN + secret
        return _SEALED + sealer.seal(secret.encode(), context=_context(account))

    def _open(self, account: Record, stored: str) -> str:
        if stored.startswith(_PLAIN):
            return stored.removeprefix(_PLAIN)
        sealer = self.accounts.sealer
        if sealer is None:
            raise ValueError("a sealed TOTP secret and no CHARPENTE_SECRET_KEYS to open it")
        opened = sealer.open(stored.removeprefix(_SEALED), context=_context(account))
        return opened.decode()


def _context(account: Record) -> bytes:
    return b"charpente.mfa:" + str(account["id"]).encode()


def _recovery_code() -> str:
    """24 lowercase letters and digits in six groups (`k3m9-x2qp-7wfa-hn4c-u8rt-e5vb`),
    without look-alikes: 118 bits, so a fast hash is enough at rest (ASVS 5.0 6.5.2 asks
    for 112 bits before a plain hash will do)."""
    alphabet = "abcdefghjkmnpqrstuvwxyz23456789"
    text = "".join(secrets.choice(alphabet) for _ in range(24))
    return "-".join(text[i : i + 4] for i in range(0, 24, 4))


def _hash(code: str) -> str:
    return hashlib.sha256(code.replace("-", "").encode()).hexdigest()


def _field(body: object, name: str) -> object:
    return body.get(name) if isinstance(body, dict) else None


def _bad_token() -> Unauthorized:
    return Unauthorized(
        detail="the mfa_token is not valid (used, expired or unknown): sign in again",
        headers={"WWW-Authenticate": _BEARER},
    )


def _wrong(field: str) -> ValidationFailed:
    error = FieldError(field, "invalid", "is not a valid code (or it was used already)")
    return ValidationFailed(detail="the code is not valid", errors=[error])
