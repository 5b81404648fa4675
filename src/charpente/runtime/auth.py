"""Accounts and tokens: signup, the OAuth2 token endpoint's grants, revocation, keys.

`Accounts` is the runtime side of `/v1/auth/*`: it creates accounts through the Service
(so the accounts resource's validation, hooks and counters apply), hashes passwords off the
event loop, issues short-lived signed access tokens and rotating opaque refresh tokens, and
verifies bearer tokens without touching the database (the key ring is in memory and is
reloaded in the background). Every sign-in, failure, revocation and role change is logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import json
import logging
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from charpente.compile.plan import Record, Update
from charpente.design.auth import ACCOUNTS
from charpente.design.model import ADMIN_ROLE, Design
from charpente.errors import (
    ApiError,
    CharpenteError,
    Conflict,
    FieldError,
    Forbidden,
    Unauthorized,
    Unavailable,
    ValidationFailed,
)
from charpente.runtime.caller import ANONYMOUS, SYSTEM, Caller
from charpente.runtime.deletion import Deletion
from charpente.runtime.ids import new_id
from charpente.runtime.mail import MailTemplates, Postman
from charpente.runtime.mfa import Mfa
from charpente.runtime.passwords import PasswordHasher, check_password
from charpente.runtime.ports import AuthStore, Clock, Transaction
from charpente.runtime.ratelimit import Limiter, MemoryLimiter
from charpente.runtime.secrets import Sealer
from charpente.runtime.service import Created, Item, Service
from charpente.runtime.tokens import (
    InvalidToken,
    KeyRing,
    SigningKey,
    issue_access_token,
    jwks,
    key_from_record,
    key_to_record,
    new_opaque_token,
    new_signing_key,
    token_hash,
)
from charpente.runtime.verification import Verification

__all__ = ["Accounts", "OAuthGrantError", "TokenPair"]

log = logging.getLogger("charpente.auth")

CODE_TTL = datetime.timedelta(seconds=60)
INVITE_TTL = datetime.timedelta(days=7)
RELOAD_SECONDS = 30.0
# A new key is published this long before it signs, so every process knows it by then.
# Longer than the JWKS answer may be cached (60 s) and than two reloads, so that other
# processes and other services know a key before it signs.
PROPAGATION = datetime.timedelta(seconds=120)
LEEWAY = datetime.timedelta(seconds=60)
_AFTER = datetime.timedelta(milliseconds=2)
_BEARER = 'Bearer realm="api"'


class OAuthGrantError(ApiError):
    """An error of the token endpoint, rendered as RFC 6749 §5.2 (`{"error": ...}`)."""

    status, slug, title = 400, "invalid-grant", "The grant is not valid"

    def __init__(
        self,
        error: str,
        description: str,
        status: int = 400,
        extra: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(detail=description)
        self.error = error
        self.description = description
        self.status_code = status
        self.extra = dict(extra or {})  # more members of the answer (`mfa_token`)


@dataclass(frozen=True, slots=True)
class TokenPair:
    """A token endpoint answer (RFC 6749 §5.1)."""

    access_token: str
    expires_in: int
    refresh_token: str
    role: str | None

    def as_json(self) -> dict[str, object]:
        return {
            "access_token": self.access_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "refresh_token": self.refresh_token,
        }


class Accounts:
    """Signup, sign-in and tokens for one design, over a Service and an AuthStore."""

    def __init__(  # noqa: PLR0913 (keyword-only collaborators, each with its default)
        self,
        design: Design,
        service: Service,
        store: AuthStore,
        *,
        clock: Clock,
        hasher: PasswordHasher | None = None,
        sealer: Sealer | None = None,
        issuer: str | None = None,
        postman: Postman | None = None,
    ) -> None:
        self.design = design
        self.verification = Verification(self)
        self.mfa = Mfa(self)
        self.deletion = Deletion(self)
        self.postman = postman or Postman(
            service,
            MailTemplates(),
            app_name=design.auth.app_name or design.name,
            app_url=design.auth.app_url,
        )
        self.service = service
        self.store = store
        self.clock = clock
        self.hasher = hasher or PasswordHasher()
        self.sealer = sealer
        self.issuer = issuer or f"charpente:{design.name}"
        self.audience = design.name
        self.ring = KeyRing(())
        self._roles = frozenset(design.auth.roles)
        self._reloader: asyncio.Task[None] | None = None
        self._later: set[asyncio.Task[None]] = set()
        # Limits the accounts' own flows apply (per email, say): the app's limiter when
        # the wiring shares it, else this process's.
        self.limiter: Limiter = MemoryLimiter()
        # Accounts disabled or given another role here, and when: their older access
        # tokens are refused (other processes accept them until they expire).
        self._ended: dict[str, datetime.datetime] = {}
        # Sign-ins ended one by one (DELETE /v1/auth/sessions/{id}), and when.
        self._ended_families: dict[str, datetime.datetime] = {}
        service.on_update.append(self._account_updated)

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Load the signing keys (making the first one if there is none) and keep them
        fresh. With the database out of reach, the keys load in the background later."""
        try:
            await self._load_or_create_keys()
        except Exception as error:  # the database is out of reach (or busy): try again shortly
            log.warning("signing keys not loaded yet (%s); retrying", type(error).__name__)
        self._reloader = asyncio.create_task(self._reload_forever())

    async def _load_or_create_keys(self) -> None:
        await self.reload_keys()
        if not self.ring.published(self.clock.now()):
            await self._save_key(new_signing_key(self._algorithm(), self.clock.now()))
            await self.reload_keys()

    def later(self, work: Coroutine[Any, Any, None], what: str) -> None:
        """Run `work` after the answer (what differs between a known and an unknown email
        must not show in the answer's time); a failure is logged. stop() waits for it."""

        async def run() -> None:
            try:
                await work
            except Exception:
                log.exception("%s failed", what)

        task = asyncio.create_task(run(), name=f"charpente-{what}")
        self._later.add(task)
        task.add_done_callback(self._later.discard)

    async def settle(self) -> None:
        """Until the work `later` started is done."""
        while self._later:
            await asyncio.gather(*self._later, return_exceptions=True)

    async def stop(self) -> None:
        await self.settle()
        if self._reloader is not None:
            self._reloader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reloader

    async def reload_keys(self) -> None:
        """The key ring from the stored keys: retired ones are left out, and a key that
        cannot be opened (its secret key was removed) is skipped with an error in the log."""
        now, keys = self.clock.now(), []
        for text in await self.store.signing_keys():
            try:
                key = key_from_record(json.loads(text), self.sealer)
            except (ValueError, KeyError, CharpenteError) as error:
                log.error("a signing key cannot be read and is skipped: %s", error)
                continue
            if not key.is_retired(now):
                keys.append(key)
        self.ring = KeyRing(keys)

    async def rotate_keys(self) -> SigningKey:
        """A new key, published now and signing after PROPAGATION; keys signing today retire
        once the tokens they signed have expired."""
        now = self.clock.now()
        await self.reload_keys()
        fresh = new_signing_key(self._algorithm(), now)
        starts = now + PROPAGATION
        fresh = _replace_key(fresh, not_before=starts)
        retire = starts + datetime.timedelta(seconds=self.design.auth.access_token_ttl) + LEEWAY
        for key in self.ring.published(now):
            if key.retire_after is None or key.retire_after > retire:
                await self._save_key(_replace_key(key, retire_after=retire))
        await self._save_key(fresh)
        await self.reload_keys()
        return fresh

    def cookie_sealer(self) -> Sealer:
        """What seals short-lived browser state (the OAuth login cookie): the configured
        secret keys, else keys derived (HKDF) from the signing keys, which every process
        of the backend shares through the database."""
        if self.sealer is not None:
            return self.sealer
        keys = self.ring.published(self.clock.now())
        if not keys:
            raise Unavailable(
                detail="signing keys are not loaded yet", headers={"Retry-After": "2"}
            )
        derived = {_kid(key.kid): _derive(key) for key in keys}
        # The key signing now: every process has known it for a while (new ones wait 60 s).
        return Sealer(derived, _kid(self.ring.signing_key(self.clock.now()).kid))

    def public_keys(self) -> dict[str, list[dict[str, str]]]:
        """The JWKS document: every key not yet retired (old tokens still verify)."""
        return jwks(self.ring.published(self.clock.now()))

    # --- authentication ------------------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Caller:
        """The caller an Authorization header names (anonymous without one). Unauthorized
        for a malformed header or a token that does not verify; never a database query."""
        if authorization is None:
            return ANONYMOUS
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise _invalid_token("use the Bearer scheme: Authorization: Bearer <token>")
        try:
            claims = self.ring.verify(
                token.strip(), issuer=self.issuer, audience=self.audience, now=self.clock.now()
            )
        except InvalidToken as error:
            raise _invalid_token(f"the access token is not valid ({error.reason})") from None
        if claims.role not in self._roles:
            raise _invalid_token("the access token names an unknown role")
        ended = self._ended.get(claims.subject)
        if ended is not None and claims.issued_at <= ended:
            raise _invalid_token("the access token is not valid (its session ended)")
        if claims.session is not None and claims.session in self._ended_families:
            raise _invalid_token("the access token is not valid (its session ended)")
        return Caller(claims.subject, claims.role, session=claims.session, mfa="mfa" in claims.amr)

    # --- signup and sign-in --------------------------------------------------------------

    async def signup(self, body: object, *, ip: str | None = None) -> Item | None:
        """A new account from `{email, password, ...profile}` under the design's policy.

        With email verification on, None — whether the account was made or its email had
        one already (then its owner is told by email): the answer must not tell which."""
        policy = self.design.auth.signup
        if policy == "closed":
            raise Forbidden(detail="signup is closed: an admin creates accounts")
        if not isinstance(body, dict):
            raise ValidationFailed(detail="the body must be a JSON object")
        fields = dict(body)
        password = fields.pop("password", None)
        invite = fields.pop("invite", None)
        email = _email(fields)
        _refuse_admin_fields(fields)
        problems = self._password_problems(password, email)
        if policy == "invite" and not isinstance(invite, str):
            problems.append(FieldError("invite", "required", "signup needs an invitation"))
        if problems:
            raise ValidationFailed(detail="the account cannot be created", errors=problems)
        assert isinstance(password, str)
        hashed = await self.hasher.hash(password)

        async def finish(tx: Transaction, record: Record) -> None:
            if isinstance(invite, str) and policy == "invite":
                role = await self.store.take_invite(token_hash(invite), email, self.clock.now(), tx)
                if role is None:
                    error = FieldError("invite", "invalid", "is not a valid invitation")
                    raise ValidationFailed(detail="the invitation is not valid", errors=[error])
                if role != record.get("role"):
                    raise _Retry(role)
            await self.store.set_password(str(record["id"]), hashed, self.clock.now(), tx)

        verification = self.verification
        try:
            created = await self._create_account(fields, email, finish)
        except Conflict as error:
            if not verification.on or not any(e.field == "email" for e in error.errors):
                raise
            self.later(verification.tell_owner(email, ip), "signup-taken-mail")
            return None
        assert created.item is not None
        account = str(created.item.record["id"])
        if verification.on:  # the rest after the answer, as for a taken email
            self.later(verification.after_signup(account, email, ip), "verification-mail")
            return None
        await self.store.log("signup", account, ip, None, self.clock.now())
        role = created.item.record.get("role")
        return await self.service.get(ACCOUNTS, account, caller=Caller(account, str(role)))

    async def create_account(
        self,
        email: str,
        role: str,
        password: str | None,
        profile: Mapping[str, object] | None = None,
    ) -> Record:
        """An account made by an operator (CLI): no signup policy, any role."""
        if role not in self._roles:
            raise ValidationFailed(detail=f"unknown role {role!r}: one of {', '.join(self._roles)}")
        fields: dict[str, Any] = {**(profile or {}), "email": email, "role": role}
        if password is not None:
            problems = self._password_problems(password, email.lower())
            if problems:
                raise ValidationFailed(detail="the password is not acceptable", errors=problems)
        hashed = None if password is None else await self.hasher.hash(password)

        async def finish(tx: Transaction, record: Record) -> None:
            if hashed is not None:
                await self.store.set_password(str(record["id"]), hashed, self.clock.now(), tx)

        async def vouched(tx: Transaction, record: Record) -> None:
            await finish(tx, record)
            if self.verification.on:  # the operator vouches for the address
                await _mark_verified(tx, str(record["id"]))

        created = await self.service.create(ACCOUNTS, fields, caller=SYSTEM, also=vouched)
        assert created.item is not None
        await self.store.log(
            "account_created", str(created.item.record["id"]), None, role, self.clock.now()
        )
        if self.verification.on:
            return {**created.item.record, "email_verified": True}
        return created.item.record

    async def set_role(self, email: str, role: str) -> Record:
        """Give an account another role (CLI); its refresh tokens end so the role applies."""
        found = await self.store.login(email.lower())
        if found is None:
            raise ValidationFailed(detail=f"no account with the email {email}")
        account = found[0]
        item = await self.service.update(
            ACCOUNTS, str(account["id"]), {"role": role}, caller=SYSTEM
        )
        return item.record

    async def token(
        self, form: Mapping[str, str], *, ip: str | None = None, user_agent: str | None = None
    ) -> TokenPair:
        """The token endpoint: grant_type password, refresh_token or authorization_code."""
        grant = form.get("grant_type")
        if grant == "password":
            return await self._password_grant(form, ip, user_agent)
        if grant == "refresh_token":
            return await self._refresh_grant(form, ip)
        if grant == "authorization_code":
            return await self._code_grant(form, ip, user_agent)
        if grant == "mfa":
            return await self.mfa.grant(form, ip, user_agent)
        if grant is None:
            raise OAuthGrantError("invalid_request", "grant_type is required")
        raise OAuthGrantError(
            "unsupported_grant_type", "use password, refresh_token, authorization_code or mfa"
        )

    async def revoke(self, token: str | None, *, ip: str | None = None) -> None:
        """RFC 7009: revoke a refresh token's whole family (unknown tokens are no error)."""
        if not token:
            raise OAuthGrantError("invalid_request", "token is required")
        account = await self.store.revoke_refresh(token_hash(token), self.clock.now())
        if account is not None:
            await self.store.log("token_revoked", account, ip, None, self.clock.now())

    async def change_password(
        self, caller: Caller, current: object, new: object, *, ip: str | None = None
    ) -> None:
        """Replace the caller's password; every refresh token family of the account ends."""
        await self.replace_password(caller, current, new, keep=None, ip=ip)

    async def replace_password(
        self,
        caller: Caller,
        current: object,
        new: object,
        *,
        keep: str | None,
        ip: str | None = None,
        current_field: str = "current_password",
        new_field: str = "new_password",
    ) -> datetime.datetime:
        """Replace the caller's password, checking the current one; every refresh token
        family of the account ends but `keep`, and every access token issued until now.
        When it happened."""
        if caller.id is None:
            raise Unauthorized(detail="sign in first", headers={"WWW-Authenticate": _BEARER})
        account = await self.service.get(ACCOUNTS, caller.id, caller=SYSTEM)
        email = str(account.record.get("email"))
        found = await self.store.login(email)
        hashed = None if found is None else found[1]
        if (
            not isinstance(current, str)
            or hashed is None
            or not await self.hasher.verify(hashed, current)
        ):
            error = FieldError(current_field, "invalid", "is not the current password")
            raise ValidationFailed(detail="the current password is wrong", errors=[error])
        problems = self._password_problems(new, email, field=new_field)
        if problems:
            raise ValidationFailed(detail="the new password is not acceptable", errors=problems)
        assert isinstance(new, str)
        now = self.clock.now()
        await self.store.set_password(caller.id, await self.hasher.hash(new), now)
        self._end_access_tokens(caller.id, now)
        ended = await self.store.revoke_account(caller.id, now, keep_family=keep)
        kept = "" if keep is None else ", the current sign-in kept"
        await self.store.log(
            "password_changed", caller.id, ip, f"{ended} refresh tokens ended{kept}", now
        )
        return now

    def password_problems(
        self, password: object, email: str | None, *, field: str = "password"
    ) -> list[FieldError]:
        """What is wrong with `password` as a new password for `email` (none: [])."""
        if not isinstance(password, str):
            return [FieldError(field, "required", "is required (a string)")]
        context = (self.design.name,)
        return [
            FieldError(field, "weak", message)
            for message in check_password(password, email=email, context=context)
        ]

    def end_access_tokens(self, account: str, now: datetime.datetime) -> None:
        """Refuse the account's access tokens issued until `now`, in this process (the
        others learn it from the log's session-ending events)."""
        self._end_access_tokens(account, now)

    async def invite(
        self, email: str | None, role: str | None, *, by: Caller
    ) -> tuple[str, datetime.datetime]:
        """A one-time invitation code (shown once) and when it expires; admins only."""
        if by.role != ADMIN_ROLE and not by.system:
            raise Forbidden(detail="only admins invite")
        role = role or self.design.auth.roles[0]
        if role not in self._roles:
            raise ValidationFailed(detail=f"unknown role {role!r}")
        code = new_opaque_token()
        expires = self.clock.now() + INVITE_TTL
        await self.store.add_invite(
            token_hash(code), None if email is None else email.lower(), role, expires
        )
        return code, expires

    async def login_code(self, account: str) -> str:
        """A one-time code (60 s) that the token endpoint exchanges (after an OAuth login).
        Forbidden for a disabled account."""
        if await self._active_account(account) is None:
            raise Forbidden(detail="this account is disabled")
        code = new_opaque_token()
        await self.store.add_code(token_hash(code), account, self.clock.now() + CODE_TTL)
        return code

    async def account_for_identity(
        self, provider: str, subject: str, email: str, verified: bool, *, ip: str | None = None
    ) -> str:
        """The account a provider's user signs in as: the linked one, else the one with this
        verified email (then linked), else a new one when signup is open. Linking or
        creating marks the account's email verified: the provider has proven it.

        An account whose email nobody had proven may have been made by someone else, waiting
        for the owner (pre-hijacking): linking it removes its password and ends its refresh
        tokens, so that only the proven owner holds it afterwards."""
        try:
            return await self._account_for_identity(provider, subject, email, verified, ip)
        except Conflict:  # a concurrent first login of the same person won the race
            linked = await self.store.identity(provider, subject)
            if linked is None:
                raise
            return linked

    async def _account_for_identity(
        self, provider: str, subject: str, email: str, verified: bool, ip: str | None
    ) -> str:
        linked = await self.store.identity(provider, subject)
        if linked is not None:
            return linked
        if not verified:
            raise Forbidden(detail="the provider did not verify this email address")
        found = await self.store.login(email)
        now = self.clock.now()
        if found is not None:
            account, proven = str(found[0]["id"]), bool(found[0].get("email_verified"))
            async with self.service.database.transaction() as tx:
                if not proven:
                    await _mark_verified(tx, account)
                    await self.store.remove_password(account, tx)
                await self.store.link(provider, subject, account, email, now, tx)
            if not proven:
                # Whoever held the password account loses it: its refresh tokens end, and its
                # access tokens here now and in every other process at its next reload (the
                # log event is one of the session-ending ones).
                self._end_access_tokens(account, now)
                ended = await self.store.revoke_account(account, now)
                detail = f"{provider}; unproven email: password removed, {ended} tokens ended"
                await self.store.log("account_reclaimed", account, ip, detail, now)
            else:
                await self.store.log("identity_linked", account, ip, provider, now)
            return account
        if self.design.auth.signup != "open":
            raise Forbidden(detail="signup is not open: ask an admin for an account")

        async def finish(tx: Transaction, record: Record) -> None:
            # email_verified is server-set (no create may name it): set in the same transaction.
            await _mark_verified(tx, str(record["id"]))
            await self.store.link(provider, subject, str(record["id"]), email, now, tx)

        created = await self.service.create(ACCOUNTS, {"email": email}, caller=SYSTEM, also=finish)
        assert created.item is not None
        account = str(created.item.record["id"])
        await self.store.log("signup", account, ip, provider, now)
        return account

    # --- grants --------------------------------------------------------------------------

    async def _password_grant(
        self, form: Mapping[str, str], ip: str | None, user_agent: str | None = None
    ) -> TokenPair:
        email = (form.get("username") or form.get("email") or "").strip().lower()
        password = form.get("password") or ""
        if not email or not password:
            raise OAuthGrantError("invalid_request", "username and password are required")
        found = await self.store.login(email) if len(email) <= 254 else None
        if found is None or found[1] is None:
            await self.hasher.verify_dummy(password)  # the same time as a real check
            return await self._failed(None, email, ip)
        account, hashed = found
        assert hashed is not None
        if not await self.hasher.verify(hashed, password) or account.get("disabled"):
            return await self._failed(str(account["id"]), email, ip)
        if self.verification.required and not account.get("email_verified"):
            await self.store.log("login_unverified", str(account["id"]), ip, None, self.clock.now())
            raise OAuthGrantError(
                "invalid_grant",
                "the email address is not verified yet: open the link sent to it, or ask for "
                "a new one (POST /v1/auth/email/verify/resend)",
            )
        if self.hasher.needs_rehash(hashed):
            await self.store.set_password(
                str(account["id"]), await self.hasher.hash(password), self.clock.now()
            )
        if await self.mfa.required(account):
            challenge = await self.mfa.challenge(account, "password", ip)
            raise _mfa_required(challenge)
        if self.mfa.needs_enrolment(account):
            raise _enrolment_required(await self.mfa.challenge(account, "enroll:password", ip))
        await self.store.log("login", str(account["id"]), ip, "password", self.clock.now())
        return await self._issue(account, new_id(), "password", ip, user_agent, ("pwd",))

    async def _failed(self, account: str | None, email: str, ip: str | None) -> TokenPair:
        await self.store.log("login_failed", account, ip, None, self.clock.now())
        raise OAuthGrantError("invalid_grant", "the email or the password is wrong")

    async def _refresh_grant(self, form: Mapping[str, str], ip: str | None) -> TokenPair:
        presented = form.get("refresh_token")
        if not presented or len(presented) > 200:
            raise OAuthGrantError("invalid_request", "refresh_token is required")
        fresh = new_opaque_token()
        now = self.clock.now()
        outcome = await self.store.rotate_refresh(token_hash(presented), token_hash(fresh), now)
        if outcome.status == "reused":
            await self.store.log("refresh_reused", outcome.account, ip, "family revoked", now)
        if outcome.status != "rotated" or outcome.account is None:
            raise OAuthGrantError("invalid_grant", "the refresh token is not valid")
        account = await self._active_account(outcome.account)
        if account is None:
            await self.store.revoke_refresh(token_hash(fresh), now)
            raise OAuthGrantError("invalid_grant", "the refresh token is not valid")
        amr: tuple[str, ...] = ()
        if outcome.family is not None:
            await self.store.touch_session(outcome.family, now, ip)
            amr = tuple((await self.store.session_amr(outcome.family) or "").split())
        return self._pair(account, fresh, outcome.family, amr)

    async def _code_grant(
        self, form: Mapping[str, str], ip: str | None, user_agent: str | None = None
    ) -> TokenPair:
        code = form.get("code")
        if not code or len(code) > 200:
            raise OAuthGrantError("invalid_request", "code is required")
        account_id = await self.store.take_code(token_hash(code), self.clock.now())
        account = None if account_id is None else await self._active_account(account_id)
        if account is None:
            raise OAuthGrantError(
                "invalid_grant", "the code is not valid (used, expired or unknown)"
            )
        if await self.mfa.required(account):
            raise _mfa_required(await self.mfa.challenge(account, "oauth", ip))
        if self.mfa.needs_enrolment(account):
            raise _enrolment_required(await self.mfa.challenge(account, "enroll:oauth", ip))
        await self.store.log("login", account_id, ip, "oauth", self.clock.now())
        return await self._issue(account, new_id(), "oauth", ip, user_agent)

    async def issue(
        self,
        account: Record,
        method: str,
        ip: str | None,
        user_agent: str | None,
        amr: tuple[str, ...],
    ) -> TokenPair:
        """Tokens for a new sign-in of `account` (after its second factor, say)."""
        return await self._issue(account, new_id(), method, ip, user_agent, amr)

    async def active_account(self, account: str) -> Record | None:
        """The account, unless it is disabled or gone."""
        return await self._active_account(account)

    async def _active_account(self, account: str) -> Record | None:
        try:
            item = await self.service.get(ACCOUNTS, account, caller=SYSTEM)
        except ApiError:
            return None
        return None if item.record.get("disabled") else item.record

    async def _issue(
        self,
        account: Record,
        family: str,
        method: str = "password",
        ip: str | None = None,
        user_agent: str | None = None,
        amr: tuple[str, ...] = (),
    ) -> TokenPair:
        refresh = new_opaque_token()
        now = self.clock.now()
        expires = now + datetime.timedelta(seconds=self.design.auth.refresh_token_ttl)
        await self.store.add_refresh(token_hash(refresh), family, str(account["id"]), now, expires)
        agent = None if user_agent is None else user_agent[:200]
        methods = " ".join(amr) or None
        await self.store.add_session(family, str(account["id"]), now, ip, agent, method, methods)
        return self._pair(account, refresh, family, amr)

    def _pair(
        self, account: Record, refresh: str, family: str | None, amr: tuple[str, ...] = ()
    ) -> TokenPair:
        access = self.access_token(account, family, amr=amr)
        ttl = self.design.auth.access_token_ttl
        role = account.get("role")
        return TokenPair(access, ttl, refresh, None if role is None else str(role))

    def access_token(
        self,
        account: Record,
        family: str | None,
        *,
        after: datetime.datetime | None = None,
        amr: tuple[str, ...] = (),
    ) -> str:
        """A new access token for `account`, in the sign-in `family` (its `sid`), issued
        after the account's sessions last ended (its `iat` is to the millisecond)."""
        ttl = self.design.auth.access_token_ttl
        role = account.get("role")
        now = self.clock.now()
        if not self.ring.published(now):
            raise Unavailable(
                detail="signing keys are not loaded yet", headers={"Retry-After": "2"}
            )
        ended = max(
            [when for when in (after, self._ended.get(str(account["id"]))) if when is not None],
            default=None,
        )
        if ended is not None and now < ended + _AFTER:
            now = ended + _AFTER  # never issued in the millisecond its session ended
        return issue_access_token(
            self.ring,
            issuer=self.issuer,
            audience=self.audience,
            subject=str(account["id"]),
            role=None if role is None else str(role),
            now=now,
            ttl=ttl,
            session=family,
            amr=amr,
        )

    # --- helpers -------------------------------------------------------------------------

    async def _create_account(self, fields: dict[str, Any], email: str, finish: Any) -> Created:
        fields = {**fields, "email": email}
        try:
            return await self.service.create(ACCOUNTS, fields, caller=SYSTEM, also=finish)
        except _Retry as retry:  # an invitation grants another role than the default
            return await self.service.create(
                ACCOUNTS, {**fields, "role": retry.role}, caller=SYSTEM, also=finish
            )

    def _password_problems(
        self, password: object, email: str, *, field: str = "password"
    ) -> list[FieldError]:
        if not isinstance(password, str):
            return [FieldError(field, "required", "is required (a string)")]
        context = (self.design.name,)
        return [
            FieldError(field, "weak", message)
            for message in check_password(password, email=email, context=context)
        ]

    async def _account_updated(
        self, resource: str, before: Record, after: Record, caller: Caller
    ) -> None:
        if resource != ACCOUNTS:
            return
        now, account = self.clock.now(), str(after["id"])
        disabled = after.get("disabled") and not before.get("disabled")
        if disabled or after.get("role") != before.get("role"):
            self._end_access_tokens(account, now)
        if disabled:
            ended = await self.store.revoke_account(account, now)
            await self.store.log(
                "account_disabled", account, None, f"{ended} refresh tokens ended", now
            )
        if after.get("role") != before.get("role"):
            detail = f"{before.get('role')} -> {after.get('role')} by {caller.id or 'the engine'}"
            await self.store.revoke_account(account, now)
            await self.store.log("role_changed", account, None, detail, now)

    def _end_access_tokens(self, account: str, now: datetime.datetime) -> None:
        """Refuse the account's access tokens issued until `now`, in this process; entries
        go once every token they refuse has expired anyway."""
        ttl = datetime.timedelta(seconds=self.design.auth.access_token_ttl)
        for stale in [a for a, when in self._ended.items() if when + ttl + LEEWAY < now]:
            del self._ended[stale]
        self._ended[account] = now

    async def _save_key(self, key: SigningKey) -> None:
        record = key_to_record(key, self.sealer)
        text = json.dumps(record, default=_iso, sort_keys=True)
        await self.store.save_signing_key(key.kid, text, self.clock.now())

    async def _reload_forever(self) -> None:
        while True:
            loaded = bool(self.ring.published(self.clock.now()))
            await asyncio.sleep(RELOAD_SECONDS if loaded else 2.0)
            try:
                await (self.reload_keys() if loaded else self._load_or_create_keys())
                await self.learn_ended_sessions()
            except Exception:  # a database hiccup: keep the keys we have, try again later
                log.warning("could not reload the signing keys; keeping the current ones")

    async def learn_ended_sessions(self) -> None:
        """What other processes ended (a disable, a role or password change, an unproven
        account reclaimed by its email's owner): their access tokens stop working here
        too, within one reload period."""
        now = self.clock.now()
        ttl = datetime.timedelta(seconds=self.design.auth.access_token_ttl)
        for account, when in await self.store.sessions_ended_since(now - ttl - LEEWAY):
            known = self._ended.get(account)
            if known is None or known < when:
                self._end_access_tokens(account, when)
        for family, when in await self.store.families_ended_since(now - ttl - LEEWAY):
            self.end_family(family, when)

    def end_family(self, family: str, now: datetime.datetime) -> None:
        """Refuse the access tokens of one sign-in, in this process; entries go once every
        token they refuse has expired anyway."""
        ttl = datetime.timedelta(seconds=self.design.auth.access_token_ttl)
        for stale in [f for f, when in self._ended_families.items() if when + ttl + LEEWAY < now]:
            del self._ended_families[stale]
        self._ended_families[family] = now

    def _algorithm(self) -> Any:
        return self.design.auth.algorithm


class _Retry(Exception):  # noqa: N818 (a control-flow signal, not an error)
    """Create the account again with the role an invitation grants."""

    def __init__(self, role: str) -> None:
        super().__init__(role)
        self.role = role


async def _mark_verified(tx: Transaction, account: str) -> None:
    await tx.update(Update(ACCOUNTS, account, {"email_verified": True}))


def _mfa_required(challenge: Mapping[str, str]) -> OAuthGrantError:
    return OAuthGrantError(
        "mfa_required",
        "this account signs in with a second factor: send the mfa grant with this mfa_token "
        "and a code from the authenticator app (or a recovery code)",
        status=403,
        extra=challenge,
    )


def _enrolment_required(challenge: Mapping[str, str]) -> OAuthGrantError:
    return OAuthGrantError(
        "mfa_enrollment_required",
        "this account's role signs in only with a second factor: enrol one with this "
        "mfa_token (POST /v1/auth/mfa/totp, then /v1/auth/mfa/totp/confirm)",
        status=403,
        extra=challenge,
    )


def _invalid_token(description: str) -> Unauthorized:
    header = f'{_BEARER}, error="invalid_token", error_description="{description}"'
    return Unauthorized(detail=description, headers={"WWW-Authenticate": header})


def _email(fields: dict[str, Any]) -> str:
    email = fields.get("email")
    if not isinstance(email, str):
        raise ValidationFailed(
            detail="email is required", errors=[FieldError("email", "required", "is required")]
        )
    return email.strip().lower()


def _refuse_admin_fields(fields: Mapping[str, Any]) -> None:
    named = [name for name in ("role", "disabled", "email_verified") if name in fields]
    if named:
        errors = [FieldError(name, "forbidden", "is not set at signup") for name in named]
        raise ValidationFailed(detail="the body sets fields that signup does not", errors=errors)


def _replace_key(key: SigningKey, **changes: Any) -> SigningKey:
    return dataclasses.replace(key, **changes)


def _kid(kid: str) -> str:
    return kid[:32].replace("=", "")


def _derive(key: SigningKey) -> bytes:
    """A 256-bit key for browser state, derived from a signing key's private part."""
    secret = str(key.private_jwk.get("d", "")).encode()
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"charpente browser state")
    return hkdf.derive(secret)


def _iso(value: object) -> str:
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    raise TypeError(f"cannot store {type(value).__name__}")
