"""What the SQL adapter reports of each statement: its duration (a metric) and, when
tracing is on, a client span.

A statement is named from the SQLAlchemy statement the engine built — its kind and its
table — never by parsing SQL text: `SELECT posts`, `INSERT charpente_outbox`. The span
carries `db.query.text` as compiled, with placeholders (`$1`, `?`) and never a value.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import sqlalchemy as sa

from charpente.runtime import metrics, tracing

__all__ = ["observed", "statement_name"]

_names: weakref.WeakKeyDictionary[Any, tuple[str, str]] = weakref.WeakKeyDictionary()
# One histogram child per (system, operation, table): a bounded set, looked up once.
_histograms: dict[tuple[str, str, str], Any] = {}


def statement_name(stmt: sa.Executable) -> tuple[str, str]:
    """(operation, collection) of a statement: ("SELECT", "posts"), ("INSERT", "likes")."""
    try:
        return _names[stmt]
    except (KeyError, TypeError):
        pass
    found = _name_of(stmt)
    with suppress(TypeError):
        _names[stmt] = found
    return found


def _name_of(stmt: Any) -> tuple[str, str]:
    if getattr(stmt, "is_insert", False):
        return "INSERT", _table_name(stmt.table)
    if getattr(stmt, "is_update", False):
        return "UPDATE", _table_name(stmt.table)
    if getattr(stmt, "is_delete", False):
        return "DELETE", _table_name(stmt.table)
    if isinstance(stmt, sa.Select):
        froms = stmt._from_obj or stmt.columns_clause_froms
        return "SELECT", _table_name(froms[0]) if froms else ""
    if getattr(stmt, "is_select", False):
        return "SELECT", ""
    return "OTHER", ""


def _table_name(table: Any) -> str:
    """A table's own name (an alias or a join is named by the table it starts from)."""
    while True:
        if isinstance(table, sa.TableClause):
            return str(table.name)
        if isinstance(table, sa.Join):
            table = table.left
            continue
        element = getattr(table, "element", None)
        if element is None or element is table:
            return ""
        table = element


@contextmanager
def observed(system: str, stmt: sa.Executable, text: Callable[[], str]) -> Iterator[None]:
    """Time `stmt` into db_client_operation_duration_seconds and, when tracing is on and a
    sampled span is current (a request's, a job's), run it inside a client span of that
    trace (`text()` gives the compiled SQL, asked only for the span). A statement of an
    unsampled request, or of a loop outside any trace, makes no span and compiles nothing."""
    counted = metrics.recording()
    traced = tracing.enabled() and tracing.recording()
    if not counted and not traced:
        yield
        return
    operation, collection = statement_name(stmt)
    started = time.perf_counter()
    try:
        if traced:
            with tracing.database_span(system, operation, collection, text()):
                yield
        else:
            yield
    finally:
        if counted:
            _histogram(system, operation, collection).observe(time.perf_counter() - started)


def _histogram(system: str, operation: str, collection: str) -> Any:
    key = (system, operation, collection)
    found = _histograms.get(key)
    if found is None:
        found = _histograms[key] = metrics.DB_DURATION.labels(*key)
    return found
