"""Feature flags for one caller: Unleash's bucketing, the run-time settings, the board.

A caller's bucket in a group is `murmur3_32("<group>:<id>", seed 0) % 100 + 1` (Unleash's
gradual rollout, so a caller keeps the same bucket as in any Unleash SDK); a flag at
`rollout: N%` is on for buckets 1..N, so raising N keeps everyone who had it. Variants pick
with their own seed (86028157, Unleash's) over the total weight, independently of the
rollout. `FlagBoard` holds each flag's current setting (the design's, replaced by what
admins stored) and gives a caller the values of every flag at once, once per request.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import mmh3

from charpente.design.flags import parse_percent
from charpente.design.model import Flag, FlagVariant
from charpente.errors import ApiError, BadRequest
from charpente.runtime.caller import Caller

__all__ = [
    "MAX_CLIENT_ID",
    "VARIANT_SEED",
    "FlagBoard",
    "FlagSetting",
    "FlagValue",
    "bucket",
    "changed_setting",
    "explained_value",
    "flag_value",
    "in_rollout",
    "pick_variant",
    "valid_client_id",
]

VARIANT_SEED = 86028157
MAX_CLIENT_ID = 200

FlagValue = bool | str | None
"""A flag for one caller: on or off; for a multivariate flag, a variant's name or None (off)."""


def bucket(group: str, key: str, *, seed: int = 0, size: int = 100) -> int:
    """The caller `key`'s bucket in `group`: 1..size (Unleash's normalizedValue)."""
    return mmh3.hash(f"{group}:{key}", seed, signed=False) % size + 1


def in_rollout(percent: int, group: str, key: str | None) -> bool:
    """Whether `key` is in the first `percent` of `group`; without a key only at 100%."""
    if percent >= 100:
        return True
    if percent <= 0 or key is None:
        return False
    return bucket(group, key) <= percent


def pick_variant(variants: Sequence[FlagVariant], group: str, key: str | None) -> str | None:
    """The variant of `key` (Unleash's selection by cumulative weight); the first without one."""
    total = sum(v.weight for v in variants)
    if total <= 0:
        return None
    if key is None:
        return next(v.name for v in variants if v.weight > 0)
    target = bucket(group, key, seed=VARIANT_SEED, size=total)
    reached = 0
    for variant in variants:
        reached += variant.weight
        if variant.weight and reached >= target:
            return variant.name
    return None  # unreachable: the weights add up to the total


@dataclass(frozen=True, slots=True)
class FlagSetting:
    """What can change at run time: the default, the rollout, allowed roles, variant shares."""

    default: bool = False
    rollout: int | None = None
    allow: tuple[str, ...] = ()
    variants: tuple[FlagVariant, ...] = ()

    @classmethod
    def of(cls, flag: Flag) -> FlagSetting:
        return cls(flag.default, flag.rollout, flag.allow, flag.variants)

    @classmethod
    def from_json(cls, data: Mapping[str, object]) -> FlagSetting:
        """The setting `as_json` wrote (stored settings are read back with it)."""
        variants = data.get("variants") or {}
        allow = data.get("allow") or []
        rollout = data.get("rollout")
        assert isinstance(variants, dict)
        assert isinstance(allow, list)
        return cls(
            default=data.get("default") is True,
            rollout=rollout if isinstance(rollout, int) else None,
            allow=tuple(str(role) for role in allow),
            variants=tuple(FlagVariant(str(n), int(w)) for n, w in variants.items()),
        )

    def as_json(self) -> dict[str, object]:
        return {
            "default": self.default,
            "rollout": self.rollout,
            "allow": list(self.allow),
            "variants": {v.name: v.weight for v in self.variants},
        }


def flag_value(
    flag: Flag, setting: FlagSetting, caller: Caller, client_id: str | None
) -> FlagValue:
    """The flag for `caller` (bucketed by account id, else `client_id`, as `flag.by` says)."""
    return explained_value(flag, setting, caller, client_id)[0]


def explained_value(
    flag: Flag, setting: FlagSetting, caller: Caller, client_id: str | None
) -> tuple[FlagValue, str]:
    """The flag for `caller` and why, in OpenFeature's words: TARGETING_MATCH (an allowed
    role), SPLIT (the rollout chose the caller), STATIC (the default, no rollout), DEFAULT
    (the default, outside the rollout); DISABLED for a multivariate flag that is off."""
    key = caller.id if flag.by == "account" and caller.id is not None else client_id
    group = flag.bucket_group
    if caller.role is not None and caller.role in setting.allow:
        on, reason = True, "TARGETING_MATCH"
    elif setting.rollout is not None and in_rollout(setting.rollout, group, key):
        on, reason = True, "SPLIT"
    else:
        on, reason = setting.default, "STATIC" if setting.rollout is None else "DEFAULT"
    if not setting.variants:
        return on, reason
    if not on:
        return None, "DISABLED"
    return pick_variant(setting.variants, group, key), reason


def valid_client_id(text: str | None) -> str | None:
    """A client id header's value when it is usable for bucketing (printable, not too long)."""
    if text is None or not 0 < len(text) <= MAX_CLIENT_ID or not text.isascii():
        return None
    return text if text.isprintable() else None


class FlagBoard:
    """The flags of one design with their current settings, and a version that changes with
    them (the OFREP ETag); values for a caller are computed all at once."""

    def __init__(self, flags: Mapping[str, Flag]) -> None:
        self.flags = dict(flags)
        self.settings = {name: FlagSetting.of(flag) for name, flag in flags.items()}
        self.version = 0

    def values_for(
        self, caller: Caller, client_id: str | None = None
    ) -> tuple[tuple[str, FlagValue], ...]:
        """Every flag for `caller`, sorted by name (what a Caller carries)."""
        return tuple(
            (name, flag_value(flag, self.settings[name], caller, client_id))
            for name, flag in sorted(self.flags.items())
        )

    def with_flags(self, caller: Caller, client_id: str | None = None) -> Caller:
        """`caller` carrying its flag values (nothing to do for the engine itself)."""
        if caller.system or not self.flags:
            return caller
        values = self.values_for(caller, client_id)
        return replace(caller, flags=values, client_id=client_id)

    def apply(self, settings: Iterable[tuple[str, FlagSetting]]) -> bool:
        """Take stored settings (unknown flags are skipped); whether anything changed."""
        changed = False
        for name, setting in settings:
            if name in self.flags and self.settings[name] != setting:
                self.settings[name] = setting
                changed = True
        if changed:
            self.version += 1
        return changed


_CHANGE_KEYS = ("default", "rollout", "allow", "variants")


def changed_setting(
    flag: Flag, current: FlagSetting, body: Mapping[str, object], roles: Sequence[str]
) -> FlagSetting:
    """`current` with the changes of a PATCH body; BadRequest naming every wrong key."""
    problems = [f"unknown key {key!r}" for key in body if key not in _CHANGE_KEYS]
    if not body:
        problems.append(f"give at least one of {', '.join(_CHANGE_KEYS)}")
    setting = current
    for key, value in body.items():
        try:
            setting = _changed(setting, key, value, flag, roles)
        except ValueError as error:
            problems.append(f"{key}: {error}")
    if problems:
        raise _bad(problems)
    return setting


def _changed(
    setting: FlagSetting, key: str, value: object, flag: Flag, roles: Sequence[str]
) -> FlagSetting:
    match key:
        case "default":
            if not isinstance(value, bool):
                raise ValueError("expected true or false")
            return replace(setting, default=value)
        case "rollout":
            percent = None if value is None else parse_percent(value)
            if value is not None and percent is None:
                raise ValueError("expected a whole percent from 0 to 100, or null")
            return replace(setting, rollout=percent)
        case "allow":
            if not isinstance(value, list) or not all(r in roles for r in value):
                raise ValueError(f"expected a list of roles among {', '.join(roles)}")
            return replace(setting, allow=tuple(dict.fromkeys(value)))
        case "variants":
            return replace(setting, variants=_variants(flag, value))
    return setting


def _variants(flag: Flag, value: object) -> tuple[FlagVariant, ...]:
    names = [v.name for v in flag.variants]
    if not flag.variants:
        raise ValueError("this flag has no variants")
    if not isinstance(value, dict) or sorted(value) != sorted(names):
        raise ValueError(f"expected the share of each variant: {', '.join(names)}")
    weights = {name: parse_percent(share) for name, share in value.items()}
    if any(w is None for w in weights.values()) or sum(w or 0 for w in weights.values()) != 100:
        raise ValueError("expected whole percents adding up to 100")
    return tuple(FlagVariant(name, weights[name] or 0) for name in names)


def _bad(problems: list[str]) -> ApiError:
    return BadRequest(detail="; ".join(problems))
