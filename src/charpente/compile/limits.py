"""Which rate limits a request meets (`route_limits`): pure, from the design.

Every request meets `limits.all` (if set); `/v{n}/auth/*` meets `limits.auth` (20 a minute
per IP unless the design says otherwise); a resource's request meets the limits of its
action (`create`, `update`, `delete`, `list`, `get`) and of `read` or `write`.
"""

from __future__ import annotations

from collections.abc import Callable

from charpente.design.limits import LimitRule, parse_limit
from charpente.design.model import Design

__all__ = ["AUTH_DEFAULT", "route_limits"]

AUTH_DEFAULT = parse_limit("20/minute per ip")
_WRITES = {"POST": "create", "PATCH": "update", "PUT": "update", "DELETE": "delete"}

Policies = Callable[[str, str], list[tuple[str, LimitRule]]]


def route_limits(design: Design) -> Policies:
    """`(method, path) -> [(name, rule)]` for the design's limits."""
    prefix = f"/v{design.api_version}/"
    general = design.limits.get("all")
    auth = design.limits.get("auth") or AUTH_DEFAULT
    by_resource = {name: r.limits for name, r in design.resources.items() if r.limits}

    def policies(method: str, path: str) -> list[tuple[str, LimitRule]]:
        found = [] if general is None else [("all", general)]
        if not path.startswith(prefix):
            return found
        resource, _, rest = path[len(prefix) :].partition("/")
        if resource == "auth":
            if method == "POST":
                found.append(("auth", auth))
            return found
        limits = by_resource.get(resource)
        if limits:
            action = _WRITES.get(method) or ("get" if rest else "list")
            group = "read" if action in ("list", "get") else "write"
            for key in (action, group):
                rule = limits.get(key)
                if rule is not None:
                    found.append((f"{resource}.{key}", rule))
        return found

    return policies
