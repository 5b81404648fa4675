"""Starter designs shipped with charpente (`charpente init <name>`); social is the default.

Each template is a design file in this package, read with importlib.resources.
"""

from __future__ import annotations

from importlib import resources

__all__ = ["template_names", "template_summary", "template_text"]

_SUFFIX = ".yaml"


def template_names() -> list[str]:
    """The names of the shipped templates, sorted."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name.removesuffix(_SUFFIX) for f in files if f.name.endswith(_SUFFIX))


def template_text(name: str) -> str:
    """The design text of template `name`; KeyError when there is no such template."""
    if name not in template_names():
        raise KeyError(name)
    return resources.files(__name__).joinpath(name + _SUFFIX).read_text(encoding="utf-8")


def template_summary(name: str) -> str:
    """What template `name` holds: its first comment line, after `The … template:`."""
    first = template_text(name).splitlines()[0].removeprefix("#").strip()
    return first.partition(" template: ")[2] or first
