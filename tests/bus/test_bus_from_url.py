"""bus_from_url picks the adapter by scheme, takes its own query parameters, and refuses
what would fail later; broker URLs never reach a message with their credentials."""

from __future__ import annotations

import sys

import pytest

from charpente.bus import bus_from_url
from charpente.bus.memory import MemoryBus
from charpente.bus.names import check_key, check_name, masked_url, without_secrets
from charpente.bus.nats import NatsBus
from charpente.bus.rabbitmq import RabbitBus
from charpente.bus.redis_streams import RedisStreamBus
from charpente.errors import ConfigError


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        (None, MemoryBus),
        ("", MemoryBus),
        ("memory://", MemoryBus),
        ("amqp://guest:guest@127.0.0.1:5672/", RabbitBus),
        ("amqps://user:pw@broker.example/vhost", RabbitBus),
        ("nats://127.0.0.1:4222", NatsBus),
        ("tls://nats.example:4222", NatsBus),
        ("redis://127.0.0.1:6379/0", RedisStreamBus),
        ("rediss://:pw@cache.example:6380/1", RedisStreamBus),
        ("  REDIS://127.0.0.1:6379/0  ", RedisStreamBus),
    ],
)
def test_the_scheme_picks_the_adapter(url, kind):
    assert isinstance(bus_from_url(url, name="social"), kind)


def test_each_adapter_names_itself_by_technology():
    names = {
        bus_from_url(u, name="social").name for u in (None, "amqp://h", "nats://h", "redis://h")
    }
    assert names == {"memory", "rabbitmq", "nats", "redis"}


def test_an_unknown_scheme_names_the_ones_it_knows_and_hides_the_rest_of_the_url():
    with pytest.raises(ValueError, match="amqp://") as raised:
        bus_from_url("kafka://user:s3cret@host:9092", name="social")
    assert "s3cret" not in str(raised.value)
    assert "'kafka'" in str(raised.value)


def test_the_nats_stream_follows_the_prefix_unless_named():
    assert bus_from_url("nats://h", name="social").stream == "CHARPENTE"
    prefixed = bus_from_url("nats://h?prefix=social.events", name="social")
    assert prefixed.stream == "SOCIAL_EVENTS"
    named = bus_from_url("nats://h?prefix=social&stream=SOCIAL_LOG", name="social")
    assert named.stream == "SOCIAL_LOG"


def test_the_bus_takes_its_own_parameters_out_and_leaves_the_library_its_own():
    bus = bus_from_url("amqp://h/?heartbeat=30&exchange=social&timeout=2.5", name="social")
    assert bus._url == "amqp://h/?heartbeat=30"
    assert bus._exchange_name == "social"
    assert bus._timeout == 2.5
    redis_bus = bus_from_url("redis://h/0?stream=social:events&maxlen=5000", name="social")
    assert redis_bus._url == "redis://h/0"
    assert redis_bus._maxlen == 5000


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("memory://?size=3", "no parameters"),
        ("amqp://h/?timeout=soon", "must be a number"),
        ("amqp://h/?timeout=0", "above 0"),
        ("amqp://h/?timeout=1&timeout=2", "twice"),
        ("amqp://h/?exchange=a%20b", "only letters"),
        ("nats://h?prefix=events.>", "only letters"),
        ("nats://h?stream=A.B", "only letters"),
        ("nats://h?max_messages=-1", "whole number"),
        ("redis://h?maxlen=0", "between 1"),
        ("redis://h?maxlen=1e6", "whole number"),
        ("redis://h?stream=" + "x" * 201, "1 to 200"),
    ],
)
def test_bad_parameters_are_refused_when_the_bus_is_built(url, message):
    with pytest.raises(ValueError, match=message):
        bus_from_url(url, name="social")


def test_a_missing_client_library_says_which_extra_to_install(monkeypatch):
    monkeypatch.delitem(sys.modules, "charpente.bus.rabbitmq")
    monkeypatch.setitem(sys.modules, "aio_pika", None)  # what an absent package looks like
    with pytest.raises(ConfigError, match=r"pip install 'charpente\[rabbitmq\]'"):
        bus_from_url("amqp://guest:guest@h/", name="social")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("amqp://guest:s3cret@broker:5672/vhost", "amqp://***@broker:5672/vhost"),
        ("nats://t0ken@nats:4222", "nats://***@nats:4222"),
        ("redis://:s3cret@[::1]:6379/0", "redis://***@[::1]:6379/0"),
        ("rediss://cache/0?password=s3cret&db=1", "rediss://cache/0?password=***&db=1"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ],
)
def test_a_masked_url_shows_where_never_who(url, shown):
    assert masked_url(url) == shown


def test_secrets_of_the_url_are_masked_in_a_drivers_message():
    assert without_secrets("auth failed for s3cret", "amqp://u:s3cret@h/") == "auth failed for ***"
    assert without_secrets("bad token t0ken", "nats://t0ken@h") == "bad token ***"
    assert without_secrets("refused", "redis://h") == "refused"


@pytest.mark.parametrize("key", ["posts.created", "a", "like_2.deleted", "x-y.z"])
def test_resource_and_action_keys_are_accepted(key):
    assert check_key(key) == key


@pytest.mark.parametrize("key", ["", "posts.*", "posts.>", "posts..created", ".posts", "a b"])
def test_keys_that_are_wildcards_or_empty_tokens_are_refused(key):
    with pytest.raises(ValueError, match="routing key"):
        check_key(key)


def test_a_name_says_what_it_names_when_refused():
    with pytest.raises(ValueError, match="exchange 'a/b'"):
        check_name("exchange", "a/b")
