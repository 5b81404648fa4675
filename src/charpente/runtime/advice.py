"""`charpente advise`: for each costly shape of the log, the indexes that would serve it.

The shapes come from the shape log; the candidates from compile.advice; an `IndexPlanner`
(sql.advisor: hypothetical indexes on PostgreSQL, the `.expert` method on SQLite) says
which candidate the database's own planner would use and what it would save. A table
written far more often than the shape is read gets a note instead of an index. Nothing
here changes the database.
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from charpente.compile.advice import IndexCandidate, candidates_for, design_columns
from charpente.design.model import IndexColumn
from charpente.runtime.shapes import ShapeStats

__all__ = [
    "WRITE_HEAVY",
    "Advice",
    "AdviceOptions",
    "IndexPlanner",
    "IndexVerifier",
    "Planned",
    "ShapeAdvice",
    "Suggestion",
    "advise",
    "verify_advice",
]

WRITE_HEAVY = 10  # writes per read of the shape beyond which an index is not worth it
MIN_SAVING = 0.5  # a candidate must halve the planner's cost (PostgreSQL), as dexter asks


@dataclass(frozen=True, slots=True)
class Suggestion:
    """An index the planner uses for the shape; costs are the planner's (PostgreSQL)."""

    candidate: IndexCandidate
    cost_before: float | None = None
    cost_after: float | None = None
    verified: Mapping[str, object] | None = None  # timings before and after (--verify)

    def summary(self) -> dict[str, object]:
        return {
            "index": self.candidate.label,
            "resource": self.candidate.resource,
            "columns": design_columns(self.candidate),
            "reason": self.candidate.reason,
            "cost_before": self.cost_before,
            "cost_after": self.cost_after,
            "verified": None if self.verified is None else dict(self.verified),
        }


@dataclass(frozen=True, slots=True)
class Planned:
    """What the planner said about one shape: the candidates it used, and plan notes."""

    used: tuple[Suggestion, ...]
    plan_before: str = ""
    notes: tuple[str, ...] = ()


class IndexPlanner(Protocol):
    """The database's planner, asked about indexes that do not exist (nothing is built)."""

    dialect: str

    def existing(self) -> Mapping[str, Sequence[tuple[IndexColumn, ...]]]:
        """Each resource's indexes (primary key and unique constraints included)."""

    def columns(self) -> Mapping[str, Sequence[str]]:
        """Each resource's column names."""

    async def plan(self, spec: Mapping[str, Any], candidates: Sequence[IndexCandidate]) -> Planned:
        """Which of `candidates` the planner would use for the shape, and the costs."""

    async def writes_since(self, resource: str, since: datetime.datetime) -> int:
        """Records of `resource` created, changed or deleted since `since`."""


class IndexVerifier(Protocol):
    """Builds an index where it harms nothing and times the shape before and after."""

    async def verify(
        self, spec: Mapping[str, Any], candidate: IndexCandidate
    ) -> Mapping[str, object]:
        """p50 and p99 before and after (ms), and the index's size."""


@dataclass(frozen=True, slots=True)
class AdviceOptions:
    """Which shapes are looked at: at least `min_calls` calls and `min_total_ms` in all."""

    min_calls: int = 1
    min_total_ms: float = 0.0
    limit: int = 200


@dataclass(frozen=True, slots=True)
class ShapeAdvice:
    """One shape, what to build for it, and what no index fixes."""

    stats: ShapeStats
    suggestions: tuple[Suggestion, ...]
    notes: tuple[str, ...] = ()
    plan_before: str = ""

    def summary(self) -> dict[str, object]:
        s = self.stats.summary()
        return {
            "shape": s["shape"],
            "id": s["id"],
            "calls": s["calls"],
            "mean_ms": s["mean_ms"],
            "p99_ms": s["p99_ms"],
            "total_ms": s["total_ms"],
            "suggestions": [x.summary() for x in self.suggestions],
            "notes": list(self.notes),
            "plan_before": self.plan_before,
        }


@dataclass(frozen=True, slots=True)
class Advice:
    """The whole report: every shape looked at, in the order of the total time they cost."""

    dialect: str
    shapes: tuple[ShapeAdvice, ...] = field(default=())

    def indexes(self) -> dict[str, list[list[str]]]:
        """The design patch: for each resource, the `indexes:` entries to add (deduplicated)."""
        found: dict[str, list[list[str]]] = {}
        for shape in self.shapes:
            for suggestion in shape.suggestions:
                entries = found.setdefault(suggestion.candidate.resource, [])
                columns = design_columns(suggestion.candidate)
                if columns not in entries:
                    entries.append(columns)
        return found

    def failing(self, over_ms: float) -> list[ShapeAdvice]:
        """Shapes slower than `over_ms` on average that have a suggestion not yet applied."""
        return [s for s in self.shapes if s.suggestions and s.stats.total_us / max(
            s.stats.calls, 1) / 1000 > over_ms]  # fmt: skip

    def summary(self) -> dict[str, object]:
        return {
            "dialect": self.dialect,
            "shapes": [s.summary() for s in self.shapes],
            "indexes": self.indexes(),
        }


async def advise(
    shapes: Sequence[ShapeStats],
    planner: IndexPlanner,
    options: AdviceOptions = AdviceOptions(),
    progress: Callable[[int, int], None] | None = None,
) -> Advice:
    """Advice for each shape above the thresholds (in the order given)."""
    chosen = [
        s
        for s in shapes
        if s.calls >= options.min_calls and s.total_us / 1000 >= options.min_total_ms
    ][: options.limit]
    existing, columns = planner.existing(), planner.columns()
    advised = []
    for done, stats in enumerate(chosen, 1):
        advised.append(await _advise_one(stats, planner, existing, columns))
        if progress is not None:
            progress(done, len(chosen))
    return Advice(planner.dialect, tuple(advised))


async def _advise_one(
    stats: ShapeStats,
    planner: IndexPlanner,
    existing: Mapping[str, Sequence[tuple[IndexColumn, ...]]],
    columns: Mapping[str, Sequence[str]],
) -> ShapeAdvice:
    if stats.resource not in columns:
        return ShapeAdvice(stats, (), (f"{stats.resource}: not in the design any more",))
    found = candidates_for(stats.spec, existing, columns)
    notes = list(found.notes)
    if not found.candidates:
        return ShapeAdvice(stats, (), tuple(notes))
    planned = await planner.plan(stats.spec, found.candidates)
    notes += planned.notes
    kept = []
    for suggestion in planned.used:
        resource = suggestion.candidate.resource
        writes = await planner.writes_since(resource, stats.first_seen)
        if writes > WRITE_HEAVY * stats.calls:
            notes.append(
                f"{suggestion.candidate.label} would serve this shape, but {resource} was "
                f"written {writes} times for {stats.calls} reads: not worth the write cost"
            )
        else:
            kept.append(suggestion)
    return ShapeAdvice(stats, tuple(kept), tuple(notes), planned.plan_before)


async def verify_advice(
    advice: Advice,
    verifier: IndexVerifier,
    progress: Callable[[int, int], None] | None = None,
) -> Advice:
    """The same advice, each list shape's suggestions timed before and after."""
    total = sum(len(s.suggestions) for s in advice.shapes if s.stats.kind == "list")
    done, shapes = 0, []
    for shape in advice.shapes:
        if shape.stats.kind != "list":
            shapes.append(shape)
            continue
        verified = []
        for suggestion in shape.suggestions:
            timings = await verifier.verify(shape.stats.spec, suggestion.candidate)
            verified.append(dataclasses.replace(suggestion, verified=timings))
            done += 1
            if progress is not None:
                progress(done, total)
        shapes.append(dataclasses.replace(shape, suggestions=tuple(verified)))
    return dataclasses.replace(advice, shapes=tuple(shapes))
