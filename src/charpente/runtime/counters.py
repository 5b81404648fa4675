"""Counters (`count: likes.post`) kept exact, including through cascading deletes.

A counter counts the rows of a source resource whose ref points at a record. Creating,
moving or deleting such a row adjusts the counter in the same transaction (the service does
that per row). A delete can also remove rows the database cascades to: before it runs,
`release_cascaded` finds every row the cascade will remove and takes them off the counters
they were counted in, so no counter is left too high.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from charpente.design.model import Design, OnDelete
from charpente.runtime.ports import Transaction

__all__ = ["Counted", "counted_refs", "reaches_counted", "release_cascaded"]

_CHUNK = 500  # ids per IN (...) list: bounded statements whatever the cascade's size


@dataclass(frozen=True, slots=True)
class Counted:
    """A ref `field` of a source resource that the counter `target.counter` counts."""

    field: str
    target: str
    counter: str


def counted_refs(design: Design, resource: str) -> tuple[Counted, ...]:
    """Every ref of `resource` that some counter counts."""
    return tuple(
        Counted(c.count.field, target.name, c.name)
        for target in design.resources.values()
        for c in target.counters
        if c.count is not None and c.count.resource == resource
    )


def reaches_counted(design: Design, resource: str) -> bool:
    """Whether deleting a `resource` record can cascade to rows that some counter counts."""
    seen: set[str] = set()
    frontier = [resource]
    while frontier:
        name = frontier.pop()
        for referring, field in design.referencing(name):
            if field.on_delete is not OnDelete.CASCADE or referring.name in seen:
                continue
            if counted_refs(design, referring.name):
                return True
            seen.add(referring.name)
            frontier.append(referring.name)
    return False


async def release_cascaded(design: Design, tx: Transaction, resource: str, id: str) -> None:
    """Take the rows that deleting `resource` `id` will cascade to off their counters."""
    doomed = await _cascade_reach(design, tx, resource, id)
    for name, ids in doomed.items():
        for counted in counted_refs(design, name):
            for chunk in _chunks(sorted(ids)):
                counts = await tx.count_by(name, chunk, counted.field)
                for target_id, n in counts.items():
                    await tx.add_to_counter(counted.target, target_id, counted.counter, -n)


async def _cascade_reach(
    design: Design, tx: Transaction, resource: str, id: str
) -> dict[str, set[str]]:
    """Ids per resource of every row the delete cascades to (each once, whatever the path)."""
    doomed: dict[str, set[str]] = {resource: {id}}
    frontier: list[tuple[str, list[str]]] = [(resource, [id])]
    while frontier:
        name, ids = frontier.pop()
        for referring, field in design.referencing(name):
            if field.on_delete is not OnDelete.CASCADE:
                continue
            found: set[str] = set()
            for chunk in _chunks(ids):
                found.update(await tx.select_ids(referring.name, field.name, chunk))
            new = found - doomed.setdefault(referring.name, set())
            if new:
                doomed[referring.name] |= new
                frontier.append((referring.name, sorted(new)))
    doomed[resource].discard(id)  # the record itself: the service releases its own counts
    return {name: ids for name, ids in doomed.items() if ids}


def _chunks(ids: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(ids), _CHUNK):
        yield ids[start : start + _CHUNK]
