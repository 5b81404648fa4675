"""`count_hidden: true`: a counter over rows not everyone may read, as a stated choice."""

from __future__ import annotations

import pytest

from charpente.errors import DesignError
from charpente.loader import load_design_text

DESIGN = """\
charpente: 1
name: t
resources:
  posts:
    access: {{read: true}}
    fields:
      body: text
      like_count: {{count: likes.post{option}}}
  likes:
    access: {{read: auth != null}}
    fields:
      post: {{ref: posts, required: true}}
"""


def test_a_counter_over_rows_not_everyone_may_read_warns_and_says_how_to_accept_it():
    [warning] = load_design_text(DESIGN.format(option=""), "d.yaml").warnings
    assert warning == (
        "d.yaml:8:27: warning: `like_count` counts `likes` records that not everyone may read: "
        "the count is visible to whoever reads this record "
        "(add `count_hidden: true` if that is intended)"
    )


def test_count_hidden_true_states_the_choice_and_silences_the_warning():
    design = load_design_text(DESIGN.format(option=", count_hidden: true"), "d.yaml")
    assert design.warnings == ()
    counter = design.resources["posts"].field("like_count")
    assert counter is not None
    assert counter.count is not None
    assert counter.count.hidden


def test_count_hidden_applies_to_counters_only():
    text = DESIGN.format(option="").replace("body: text", "body: {type: text, count_hidden: true}")
    with pytest.raises(DesignError) as info:
        load_design_text(text, "d.yaml")
    assert any("count_hidden" in p.message for p in info.value.problems)
