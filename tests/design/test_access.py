"""The `access` blocks of a design: defaults, `read` against list/get, field rules, and the
problems (with their line and column) and warnings a design gets for its rules."""

from __future__ import annotations

import textwrap

import pytest

from charpente.design.bind import FALSE, TRUE, bind_caller, can_hold
from charpente.design.expr import Compare, Expr, Literal, Name
from charpente.design.model import ACTIONS, Access, Design
from charpente.errors import DesignError, Problem
from charpente.loader import load_design_text

ADA = "0190a7c4-5b6e-7f00-8a1b-2c3d4e5f6a7b"
MEMBER: dict[str, object] = {"id": ADA, "role": "member"}
ADMIN: dict[str, object] = {"id": ADA, "role": "admin"}
ANONYMOUS: dict[str, object] = {"id": None, "role": None}

HEAD = """\
charpente: 1
name: notes
api_version: 1
auth:
  roles: [member, moderator, admin]
  profile:
    handle: {type: string, required: true}
resources:
  notes:
    fields:
      author: {ref: accounts, default: auth.id, immutable: true}
      body: {type: text, required: true}
      draft: {type: bool, default: false}
      like_count: {count: likes.note}
"""
LIKES = """\
  likes:
    access: {read: true, create: account == auth.id}
    fields:
      note: {ref: notes, required: true}
      account: {ref: accounts, default: auth.id}
"""


def text_of(access: str = "", auth_access: str = "") -> str:
    """The notes design with `access` (YAML under `notes:`) and `auth: access:`."""
    text = HEAD + textwrap.indent(textwrap.dedent(access), "    ") + LIKES
    if auth_access:
        text = text.replace("auth:\n", f"auth:\n  access: {auth_access}\n", 1)
    return text


def design(access: str = "", auth_access: str = "") -> Design:
    return load_design_text(text_of(access, auth_access), "notes.yaml")


def problems(access: str) -> list[Problem]:
    with pytest.raises(DesignError) as raised:
        design(access)
    return [p for p in raised.value.problems if p.severity == "error"]


def access_of(found: Design, resource: str = "notes") -> Access:
    target = found.resource(resource)
    assert target is not None
    assert target.access is not None
    return target.access


def granted(access: Access, action: str, auth: dict[str, object]) -> Expr:
    return bind_caller(access.rules[action].expr, auth)


def where(access: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the first `needle` of the design's `access` part."""
    full = text_of(access)
    index = full.index(needle, len(HEAD))
    line = full.count("\n", 0, index) + 1
    return line, index - full.rfind("\n", 0, index)


# --- defaults ---------------------------------------------------------------------------------


def test_a_resource_without_access_is_for_admins_only() -> None:
    access = access_of(design())
    assert not access.declared
    assert set(access.rules) == set(ACTIONS)
    for action in ACTIONS:
        assert granted(access, action, ADMIN) == TRUE
        assert granted(access, action, MEMBER) == FALSE
        assert not can_hold(granted(access, action, ANONYMOUS))


def test_an_action_a_block_leaves_out_is_for_admins_only() -> None:
    access = access_of(design("access: {read: true}\n"))
    assert access.declared
    assert granted(access, "list", ANONYMOUS) == TRUE
    assert granted(access, "get", ANONYMOUS) == TRUE
    for action in ("create", "update", "delete"):
        assert granted(access, action, MEMBER) == FALSE
        assert granted(access, action, ADMIN) == TRUE


def test_accounts_default_to_signed_in_readers_and_self_service() -> None:
    access = access_of(design(), "accounts")
    assert access.declared
    assert granted(access, "list", MEMBER) == TRUE
    assert granted(access, "get", ANONYMOUS) == FALSE
    assert granted(access, "create", MEMBER) == FALSE
    own = Compare("==", Name(("id",)), Literal(ADA))
    assert granted(access, "update", MEMBER) == own
    assert granted(access, "delete", MEMBER) == own
    assert granted(access, "update", ADMIN) == TRUE
    assert set(access.fields_read) == {"email", "disabled"}
    assert set(access.fields_write) == {"email", "role", "disabled"}
    assert bind_caller(access.fields_write["role"].expr, MEMBER) == FALSE
    assert bind_caller(access.fields_read["email"].expr, MEMBER) == own


def test_auth_access_overrides_the_accounts_defaults_it_names_only() -> None:
    access = access_of(design(auth_access="{read: true, create: auth != null}"), "accounts")
    assert granted(access, "get", ANONYMOUS) == TRUE
    assert granted(access, "create", MEMBER) == TRUE
    assert granted(access, "update", MEMBER) == Compare("==", Name(("id",)), Literal(ADA))
    assert set(access.fields_write) == {"email", "role", "disabled"}  # field rules stay


# --- read against list and get --------------------------------------------------------------


@pytest.mark.parametrize(
    "block",
    [
        "access: {read: true, list: false}\n",
        "access: {list: false, read: true}\n",
    ],
)
def test_read_sets_list_and_get_unless_the_block_names_one(block: str) -> None:
    access = access_of(design(block))
    assert granted(access, "get", ANONYMOUS) == TRUE
    assert granted(access, "list", ADMIN) == FALSE


def test_get_and_list_may_differ() -> None:
    access = access_of(design("access: {get: true, list: author == auth.id}\n"))
    assert granted(access, "get", ANONYMOUS) == TRUE
    assert granted(access, "list", MEMBER) == Compare("==", Name(("author",)), Literal(ADA))
    assert access.rules["list"].source == "author == auth.id"


def test_a_rules_text_and_position_are_kept() -> None:
    block = "access:\n  update: author == auth.id\n"
    rule = access_of(design(block)).rules["update"]
    assert rule.source == "author == auth.id"
    assert (rule.pos.file, rule.pos.line) == ("notes.yaml", where(block, "author ==")[0])


# --- field rules --------------------------------------------------------------------------------


def test_field_rules_read_and_write() -> None:
    block = """\
    access:
      read: true
      fields:
        draft: {read: author == auth.id, write: 'auth.role in ["moderator", "admin"]'}
        body: {write: author == auth.id}
    """
    access = access_of(design(block))
    assert set(access.fields_read) == {"draft"}
    assert set(access.fields_write) == {"draft", "body"}
    assert bind_caller(access.fields_read["draft"].expr, ANONYMOUS) == Literal(None)
    assert bind_caller(access.fields_write["draft"].expr, MEMBER) == FALSE
    assert bind_caller(access.fields_write["draft"].expr, {"id": ADA, "role": "moderator"}) == TRUE


@pytest.mark.parametrize(
    ("block", "needle", "message"),
    [
        ("access:\n  fields:\n    nope: {read: true}\n", "nope", "no field `nope`"),
        ("access:\n  fields:\n    id: {read: true}\n", "id:", "no field `id`"),
        ("access:\n  fields:\n    like_count: {read: false}\n", "false", "counter"),
        ("access:\n  fields:\n    like_count: {write: true}\n", "true", "never write"),
        ("access:\n  fields:\n    body: {see: true}\n", "see", "see"),
        (
            "access:\n  fields:\n    body: {read: 'exists(likes, note == id)'}\n",
            "exists",
            "exists()",
        ),
    ],
)
def test_a_bad_field_rule_is_an_error_where_it_is_written(
    block: str, needle: str, message: str
) -> None:
    [problem] = problems(block)
    assert message in problem.message
    assert problem.file == "notes.yaml"
    assert (problem.line, problem.column) == where(block, needle)


# --- errors in rules, with their line and column -----------------------------------------------


@pytest.mark.parametrize(
    ("block", "needle", "message"),
    [
        ("access: {read: author == auth.idd}\n", "auth.idd", "auth.idd"),
        ("access: {read: authr == auth.id}\n", "authr", "did you mean 'author'"),
        ("access: {update: author == 42}\n", "42", "UUID"),
        ('access: {delete: \'auth.role in ["moderator", "admn"]\'}\n', '"admn', "admn"),
        ("access: {delete: 'auth.role == \"root\"'}\n", '"root"', "root"),
        ('access: {read: "exists(like, note == id)"}\n', "like,", "did you mean 'likes'"),
        ("access: {read: 'exists(likes, nope == id)'}\n", "nope", "unknown field 'nope'"),
        ("access: {read: author == }\n", "author", ""),
        ("access: {read: [true]}\n", "[true]", "a rule is true, false or an expression"),
        ("access: {remove: true}\n", "remove", "remove"),
    ],
)
def test_a_bad_rule_is_an_error_at_its_line_and_column(
    block: str, needle: str, message: str
) -> None:
    [problem] = problems(block)
    assert message in problem.message
    line, column = where(block, needle)
    assert problem.line == line
    if needle != "author":  # a syntax error points past the rule's start
        assert problem.column == column


def test_an_unknown_role_in_a_block_rule_is_an_error_on_the_rules_line() -> None:
    block = """\
    access:
      read: true
      delete: >-
        author == auth.id
        or auth.role in ["moderator", "superuser"]
    """
    [problem] = problems(block)
    assert "superuser" in problem.message
    assert "moderator, admin" in problem.message or "member" in problem.message
    assert problem.line == where(block, ">-")[0]


def test_every_bad_rule_is_reported_at_once() -> None:
    block = "access: {read: nope == 1, create: auth.rol == 1, delete: also == 2}\n"
    found = problems(block)
    assert len(found) == 3
    assert [p.column for p in found] == [
        where(block, "nope")[1],
        where(block, "auth.rol")[1],
        where(block, "also")[1],
    ]


# --- warnings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("block", "actions"),
    [
        ("access: {read: true, create: true}\n", ["create"]),
        (
            "access: {read: true, create: true, update: true, delete: true}\n",
            ["create", "update", "delete"],
        ),
        ("access: {create: author == null, delete: draft == true}\n", ["create", "delete"]),
        ("access: {create: not (auth != null)}\n", ["create"]),
    ],
)
def test_writes_open_to_anonymous_callers_are_warned_about(block: str, actions: list[str]) -> None:
    warnings = design(block).warnings
    assert len(warnings) == len(actions)
    for warning, action in zip(warnings, actions, strict=True):
        assert f"anonymous callers may {action} `notes` records" in warning
        assert warning.startswith(f"notes.yaml:{where(block, 'access')[0]}:")


@pytest.mark.parametrize(
    "block",
    [
        "access: {read: true}\n",
        "access: {create: auth != null, update: author == auth.id, delete: false}\n",
        "access: {create: not (author == auth.id)}\n",
        "access: {create: author != auth.id}\n",
        'access:\n  delete: auth.role in ["moderator", "admin"] or author == auth.id\n',
        "access: {create: 'exists(likes, account == auth.id and note == id)'}\n",
        "access: {update: 'exists(likes, account == auth.id)'}\n",
    ],
)
def test_writes_that_need_an_account_are_not_warned_about(block: str) -> None:
    assert design(block).warnings == ()
