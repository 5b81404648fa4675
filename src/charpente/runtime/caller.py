"""Who is asking: the caller of a request, as access rules see it (`auth` in the design).

An anonymous caller has no id and no role. `system` callers are the engine itself (CLI
commands, hooks reading on the engine's behalf): access rules do not apply to them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from charpente.design.flags import flag_key

__all__ = ["ANONYMOUS", "SYSTEM", "Caller", "rule_auth"]


@dataclass(frozen=True, slots=True)
class Caller:
    """`auth.id` and `auth.role` of the access rules; `id` None means not signed in."""

    id: str | None = None
    role: str | None = None
    system: bool = False
    # The sign-in (refresh-token family) the caller's access token belongs to, if any.
    session: str | None = field(default=None, compare=False)
    flags: tuple[tuple[str, bool | str | None], ...] = ()  # each flag's value, per request
    client_id: str | None = None  # what an anonymous caller's flags are bucketed by
    # Whether it signed in with a second factor (`amr` has `mfa`).
    mfa: bool = field(default=False, compare=False)

    @property
    def signed_in(self) -> bool:
        return self.id is not None


ANONYMOUS = Caller()
SYSTEM = Caller(system=True)


def rule_auth(caller: Caller) -> dict[str, object] | None:
    """The caller as access rules read it (`auth.id`, `auth.role`, `auth.mfa`, each
    `flag(...)`); None for the engine itself, to which no rule applies."""
    if caller.system:
        return None
    auth: dict[str, object] = {"id": caller.id, "role": caller.role, "mfa": caller.mfa}
    auth.update((flag_key(name), value) for name, value in caller.flags)
    return auth
