"""Open live streams whose read rule reads a flag are judged again when the flag changes."""

from __future__ import annotations

import datetime
import uuid
from pathlib import Path

import pytest

from charpente.bus.memory import MemoryBus
from charpente.loader import load_design_text
from charpente.runtime.caller import ANONYMOUS
from charpente.runtime.changes import ChangeFeed, StreamEnded
from charpente.runtime.events import Event, to_cloudevent
from charpente.runtime.flags import FlagBoard, FlagSetting
from charpente.runtime.ids import new_id
from charpente.runtime.service import Service
from charpente.sql.database import SqlDatabase
from charpente.sql.engine import create_engine
from charpente.sql.schema import build_metadata
from charpente.wiring import build_flags

pytestmark = pytest.mark.anyio

DESIGN = """
charpente: 1
name: feed
flags:
  reposts: {rollout: 0%}
resources:
  posts:
    fields: {body: string, shared: bool}
    events: true
    access:
      read: {read}
"""


async def _feed(tmp_path: Path, rule: str):
    design = load_design_text(DESIGN.replace("{read}", rule))
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'feed.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(build_metadata(design).create_all)
    bus = MemoryBus()
    feed = ChangeFeed(design, SqlDatabase(engine, design), bus)
    await feed.start()
    return design, bus, feed, engine


async def _publish(bus: MemoryBus, shared: bool) -> str:
    record_id = str(uuid.uuid4())
    record = {"id": record_id, "body": "b", "shared": shared, "version": 1}
    at = datetime.datetime.now(datetime.UTC)
    event = Event(new_id(), "posts", record_id, "created", at, 1, record, record)
    await bus.publish([to_cloudevent(event, "urn:charpente:feed")])
    return record_id


async def test_a_stream_shows_what_the_flag_now_allows(tmp_path):
    design, bus, feed, engine = await _feed(tmp_path, 'flag("reposts") or shared == false')
    board = FlagBoard(design.flags)
    stream = feed.open("posts", board.with_flags(ANONYMOUS, "device-1"))
    try:
        await _publish(bus, shared=True)
        assert await stream.next(0.2) is None  # the flag is off: a shared post is hidden
        board.apply([("reposts", FlagSetting(rollout=100))])
        feed.rebind(["posts"], board)
        shown = await _publish(bus, shared=True)
        change = await stream.next(2)
        assert change is not None
        assert change.data["id"] == shown
    finally:
        stream.close()
        await feed.stop()
        await engine.dispose()


async def test_a_stream_its_caller_may_no_longer_read_ends(tmp_path):
    design, _bus, feed, engine = await _feed(tmp_path, 'flag("reposts")')
    board = FlagBoard(design.flags)
    board.apply([("reposts", FlagSetting(rollout=100))])
    stream = feed.open("posts", board.with_flags(ANONYMOUS))
    try:
        board.apply([("reposts", FlagSetting(rollout=0))])
        feed.rebind(["posts"], board)
        with pytest.raises(StreamEnded, match="a feature flag changed"):
            await stream.next(0.5)
    finally:
        await feed.stop()
        await engine.dispose()


class RecordingFeed:
    def __init__(self) -> None:
        self.rebound: list[list[str]] = []

    def rebind(self, resources, flags) -> None:
        self.rebound.append(sorted(resources))


async def test_the_served_app_rebinds_the_streams_of_resources_whose_rules_read_the_flag(
    tmp_path,
):
    text = DESIGN.replace("{read}", 'flag("reposts")').replace(
        "  reposts: {rollout: 0%}\n", "  reposts: {rollout: 0%}\n  other: {}\n"
    )
    text += '  notes:\n    fields: {body: string}\n    access: {read: flag("other")}\n'
    design = load_design_text(text)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    database = SqlDatabase(engine, design)
    feed = RecordingFeed()
    control, _ = build_flags(design, Service(design, database), database, MemoryBus(), feed)
    assert control is not None
    (listener,) = control.listeners
    await listener(["reposts"])
    await listener(["other", "reposts"])
    assert feed.rebound == [["posts"], ["notes", "posts"]]
    await engine.dispose()
