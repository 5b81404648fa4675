"""charpente.templates: the shipped starter designs load without a single problem."""

from __future__ import annotations

import pytest

from charpente.design.model import CountSource, Default, Kind, OnDelete
from charpente.loader import load_design_text
from charpente.templates import template_names, template_text


def test_social_is_a_template():
    assert "social" in template_names()
    assert template_names() == sorted(template_names())


def test_an_unknown_template_is_a_key_error():
    with pytest.raises(KeyError):
        template_text("nope")


def test_a_template_name_cannot_reach_outside_the_package():
    with pytest.raises(KeyError):
        template_text("../loader")


@pytest.mark.parametrize("name", template_names())
def test_every_template_loads_with_no_problem_but_counters_of_rows_not_all_may_read(name):
    design = load_design_text(template_text(name), f"{name}.yaml")
    assert design.name == name
    # A profile's post count includes private posts: intended, and said by a warning.
    assert all("counts" in warning for warning in design.warnings)


def test_the_social_template_declares_the_social_resources():
    design = load_design_text(template_text("social"))
    assert list(design.resources) == ["accounts", "posts", "follows", "likes", "comments", "shares"]


def test_social_accounts_have_unique_handles_and_exact_counters():
    accounts = load_design_text(template_text("social")).resources["accounts"]
    handle = accounts.field("handle")
    assert handle is not None
    # Not required: people signing in with Google or GitHub choose it afterwards.
    assert (handle.required, handle.unique, handle.pattern) == (False, True, "^[a-z0-9_]{3,30}$")
    counters = {f.name: f.count for f in accounts.counters}
    assert counters == {
        "follower_count": CountSource("follows", "followee"),
        "following_count": CountSource("follows", "follower"),
        "post_count": CountSource("posts", "author", hidden=True),
    }


def test_social_posts_cascade_from_their_author_and_default_to_public():
    posts = load_design_text(template_text("social")).resources["posts"]
    author, visibility = posts.field("author"), posts.field("visibility")
    assert author is not None
    assert visibility is not None
    assert (author.kind, author.ref, author.on_delete, author.immutable) == (
        Kind.REF,
        "accounts",
        OnDelete.CASCADE,
        True,
    )
    assert visibility.default == Default(value="public")
    assert [[(c.field, c.descending) for c in i.columns] for i in posts.indexes] == [
        [("author", False), ("created_at", True)],
        [("created_at", True)],
    ]


def test_social_follows_are_unique_and_never_of_oneself():
    follows = load_design_text(template_text("social")).resources["follows"]
    assert follows.unique == (("follower", "followee"),)
    assert [c.source for c in follows.checks] == ["follower != followee"]


def test_the_untouched_social_template_loads_without_a_warning():
    assert load_design_text(template_text("social")).warnings == ()


def test_every_template_loads_without_a_warning_and_blank_is_accounts_and_one_example():
    assert template_names() == ["blank", "social"]
    for name in template_names():
        assert load_design_text(template_text(name), name).warnings == (), name
    blank = load_design_text(template_text("blank"))
    assert sorted(blank.resources) == ["accounts", "notes"]


def test_init_lists_the_templates_with_what_each_holds():
    from typer.testing import CliRunner

    from charpente.cli.main import app

    result = CliRunner().invoke(app, ["init", "--list"])
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "blank   accounts, and one example resource to rename or replace.",
        "social  accounts that post, follow each other, like, comment and share.",
    ]
