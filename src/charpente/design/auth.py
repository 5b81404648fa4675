"""The `auth` block of a design, and the built-in `accounts` resource it extends.

Pure. `read_auth` reads signup policy, roles, providers, redirect URIs and token lifetimes;
`accounts_resource` builds `accounts` from the engine's own fields and the design's
`profile` fields.
"""

from __future__ import annotations

import re
import urllib.parse
from typing import Any

from charpente.design.expr import Name
from charpente.design.model import ADMIN_ROLE, AuthConfig, Default, Field, Kind, Provider, Resource
from charpente.design.source import Node, Reader, did_you_mean

__all__ = [
    "ACCOUNTS",
    "ACCOUNT_FIELDS",
    "AUTH_KEYS",
    "accounts_resource",
    "caller_default",
    "read_auth",
]

ACCOUNTS = "accounts"
AUTH_KEYS = (
    *("signup", "roles", "providers", "profile", "redirect_uris", "access"),
    *("access_token_ttl", "refresh_token_ttl", "algorithm"),
    *("app_name", "app_url", "verify_email", "mail_templates", "require_mfa"),
)
VERIFY_EMAIL = ("required", "optional", "off")
_PROVIDER_KEYS = ("client_id", "client_secret", "issuer", "base_url", "api_url", "kind")
_KINDS = {"google": "oidc", "github": "github"}
_SIGNUP = ("open", "invite", "closed")
_ROLE = re.compile(r"[a-z][a-z0-9_]{0,30}")
_ENV = re.compile(r"env:([A-Z_][A-Z0-9_]{0,100})")
_MAX_ROLES = 20
_MAX_REDIRECTS = 50


def caller_default() -> Default:
    """The default `auth.id`: the signed-in caller's account id."""
    return Default(expr=Name(("auth", "id")))


ACCOUNT_FIELDS: tuple[Field, ...] = (
    Field("email", Kind.EMAIL, required=True, unique=True, max_length=254,
          description="The account's email address, unique whatever its case."),
    Field("email_verified", Kind.BOOL, readonly=True, default=Default(value=False),
          description="Whether the address was proven (by an OAuth provider)."),
    Field("disabled", Kind.BOOL, default=Default(value=False),
          description="A disabled account cannot sign in; its tokens stop working."),
)  # fmt: skip


def accounts_resource(auth: AuthConfig, profile: tuple[Field, ...]) -> Resource:
    """The built-in `accounts`: email, role, email_verified, disabled, then the profile."""
    role = Field(
        "role",
        Kind.ENUM,
        choices=auth.roles,
        default=Default(value=auth.roles[0]),
        description="What the account may do; the first role is given to new accounts.",
    )
    fields = (ACCOUNT_FIELDS[0], role, *ACCOUNT_FIELDS[1:], *profile)
    return Resource(ACCOUNTS, fields, builtin=True, description="People who sign in.")


def read_auth(reader: Reader, node: Node | None) -> AuthConfig:
    """The `auth` block (defaults when the design has none)."""
    if node is None:
        return AuthConfig()
    options = reader.mapping(node, AUTH_KEYS, "`auth`")
    if options is None:
        return AuthConfig()
    defaults = AuthConfig()
    roles = _roles(reader, options.get("roles")) or defaults.roles
    return AuthConfig(
        signup=_choice(reader, options, "signup", _SIGNUP) or defaults.signup,
        roles=roles,
        providers=_providers(reader, options.get("providers")),
        redirect_uris=_redirects(reader, options.get("redirect_uris")),
        access_token_ttl=reader.whole(options, "access_token_ttl", low=60, high=86400)
        or defaults.access_token_ttl,
        refresh_token_ttl=reader.whole(options, "refresh_token_ttl", low=3600, high=365 * 86400)
        or defaults.refresh_token_ttl,
        algorithm=_choice(reader, options, "algorithm", ("EdDSA", "ES256")) or defaults.algorithm,
        **_mail_options(reader, options),
        require_mfa=_required_mfa(reader, options.get("require_mfa"), roles),
    )


def _required_mfa(reader: Reader, node: Node | None, known: tuple[str, ...]) -> tuple[str, ...]:
    """`require_mfa`: roles of the design that sign in only with a second factor."""
    if node is None:
        return ()
    if not node.is_list:
        reader.error(node, "`require_mfa` must be a list of roles")
        return ()
    found: list[str] = []
    for item in node.items:
        text = item.text
        if text not in known:
            reader.error(item, f"`{text}` is not a role: the roles are {', '.join(known)}")
        elif text not in found:
            found.append(text)
    return tuple(found)


def _mail_options(reader: Reader, options: dict[str, Node]) -> dict[str, Any]:
    """`app_name`, `app_url`, `verify_email` and `mail_templates`: what account emails say
    and where their links lead."""
    app_url = _app_url(reader, options)
    verify = _choice(reader, options, "verify_email", VERIFY_EMAIL) or "off"
    if verify != "off" and app_url is None:
        node = options["verify_email"]
        reader.error(node, "`verify_email` needs `app_url`: the page its emails link to")
    templates = reader.string(options, "mail_templates", limit=500)
    if templates is not None and (templates.startswith("/") or ".." in templates.split("/")):
        reader.error(options["mail_templates"], "`mail_templates` is a folder inside the design's")
        templates = None
    return {
        "app_name": reader.string(options, "app_name", limit=100),
        "app_url": app_url,
        "verify_email": verify,
        "mail_templates": templates,
    }


def _app_url(reader: Reader, options: dict[str, Node]) -> str | None:
    text = reader.string(options, "app_url", limit=500)
    if text is None:
        return None
    parts = urllib.parse.urlsplit(text)
    local = parts.hostname in ("localhost", "127.0.0.1", "::1")
    if parts.scheme != "https" and not (parts.scheme == "http" and local):
        reader.error(options["app_url"], "`app_url` must be https (http only for localhost)")
        return None
    if not parts.netloc or parts.query or parts.fragment:
        reader.error(options["app_url"], "`app_url` is an absolute URL without ?query or #fragment")
        return None
    return text.rstrip("/")


def _choice(reader: Reader, options: dict[str, Node], key: str, choices: tuple[str, ...]) -> str:
    text = reader.string(options, key)
    if text is None or text in choices:
        return text or ""
    message = f"`{key}` must be one of {', '.join(choices)}, not `{text}`"
    reader.error(options[key], message + did_you_mean(text, choices))
    return ""


def _roles(reader: Reader, node: Node | None) -> tuple[str, ...]:
    if node is None:
        return ()
    if not node.is_list or not node.items:
        reader.error(node, "`roles` must be a non-empty list of role names")
        return ()
    roles: list[str] = []
    for item in node.items[:_MAX_ROLES]:
        text = item.text
        if text is None or not _ROLE.fullmatch(text):
            reader.error(item, "a role is a name of lowercase letters, digits and `_`")
        elif text in roles:
            reader.error(item, f"the role `{text}` is listed twice")
        else:
            roles.append(text)
    if len(node.items) > _MAX_ROLES:
        reader.error(node, f"a design has at most {_MAX_ROLES} roles")
    if roles and ADMIN_ROLE not in roles:
        message = f"`roles` must include `{ADMIN_ROLE}`: the role that manages the backend"
        reader.error(node, message)
        return ()
    if roles and roles[0] == ADMIN_ROLE and len(roles) > 1:
        reader.warn(node, "the first role is given to every new account: here, `admin`")
    return tuple(roles)


def _providers(reader: Reader, node: Node | None) -> tuple[Provider, ...]:
    if node is None:
        return ()
    providers = []
    for key, value in reader.pairs(node, "`providers`"):
        provider = _provider(reader, key, value)
        if provider is not None:
            providers.append(provider)
    return tuple(providers)


def _provider(reader: Reader, key: Node, node: Node) -> Provider | None:
    name = str(key.value)
    options = reader.mapping(node, _PROVIDER_KEYS, f"provider `{name}`")
    if options is None:
        return None
    kind = reader.string(options, "kind") or _KINDS.get(name)
    if kind not in ("oidc", "github"):
        reader.error(key, f"provider `{name}` needs `kind: oidc` or `kind: github`")
        return None
    client_id = _env(reader, options, "client_id", key)
    secret = _env(reader, options, "client_secret", key)
    urls = {k: _url(reader, options, k) for k in ("issuer", "base_url", "api_url")}
    if kind == "oidc" and urls["issuer"] is None and name != "google":
        reader.error(key, f"OpenID Connect provider `{name}` needs its `issuer` URL")
    if client_id is None or secret is None:
        return None
    return Provider(name, kind, client_id, secret, **urls)


def _env(reader: Reader, options: dict[str, Node], key: str, owner: Node) -> str | None:
    node = options.get(key)
    if node is None:
        reader.error(owner, f"provider `{owner.value}` needs `{key}: env:VARIABLE_NAME`")
        return None
    match = _ENV.fullmatch(node.text or "")
    if match is None:
        message = (
            f"`{key}` names an environment variable (`env:NAME`): secrets never go in a design"
        )
        reader.error(node, message)
        return None
    return match[1]


def _url(reader: Reader, options: dict[str, Node], key: str) -> str | None:
    text = reader.string(options, key, limit=500)
    if text is None:
        return None
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.netloc:
        reader.error(options[key], f"`{key}` must be an http(s) URL")
        return None
    return text.rstrip("/")


def _redirects(reader: Reader, node: Node | None) -> tuple[str, ...]:
    if node is None:
        return ()
    if not node.is_list:
        reader.error(node, "`redirect_uris` must be a list of URLs")
        return ()
    uris = []
    for item in node.items[:_MAX_REDIRECTS]:
        text = item.text or ""
        parts = urllib.parse.urlsplit(text)
        local = parts.hostname in ("localhost", "127.0.0.1", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and local):
            reader.error(item, "a redirect URI must be https (http only for localhost)")
        elif parts.fragment or not parts.netloc:
            reader.error(item, "a redirect URI is an absolute URL without a #fragment")
        else:
            uris.append(text)
    return tuple(uris)
