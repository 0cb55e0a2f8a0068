"""Fixtures for the game-timelines slice: the Neople simulator over a seeded world, moto's
S3 server (started and stopped here), the SMTP sink and the Telegram simulator, and a fresh
warehouse database per test on the session's embedded PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from game_timelines_support import BOT_TOKEN, BUCKET, CHAT_ID, MAIL_TO, NOW, character_list
from moto_s3 import aws_environment, moto_server

from signalbox.domains.game_timelines.neople import NeopleResource
from signalbox.platform.email import EmailResource
from signalbox.platform.object_store import ObjectStoreResource
from signalbox.platform.telegram import TelegramResource
from signalbox.platform.warehouse import WarehouseResource
from signalbox.simulators.neople import DEFAULT_API_KEY, NeopleFaults, NeopleSimulator
from signalbox.simulators.neople_world import NeopleWorld
from signalbox.simulators.smtp import SmtpSink
from signalbox.simulators.telegram import TelegramSimulator


@pytest.fixture(scope="package")
def aws_env(tmp_path_factory) -> Iterator[None]:
    with aws_environment(tmp_path_factory.mktemp("aws")):
        yield


@pytest.fixture(scope="package")
def moto_url(aws_env) -> Iterator[str]:
    with moto_server() as url:
        ObjectStoreResource(bucket=BUCKET, endpoint_url=url).ensure_bucket()
        yield url


@pytest.fixture
def store(moto_url: str) -> ObjectStoreResource:
    """The bucket under a prefix of the test's own, so tests never see each other's files."""
    return ObjectStoreResource(
        bucket=BUCKET, endpoint_url=moto_url, prefix=f"t-{uuid.uuid4().hex[:8]}"
    )


@pytest.fixture(scope="package")
def world() -> NeopleWorld:
    return NeopleWorld(seed=7)


@pytest.fixture
def neople_sim(world: NeopleWorld) -> Iterator[NeopleSimulator]:
    with NeopleSimulator(world, now=NOW, rate_limit=100_000, faults=NeopleFaults()) as sim:
        yield sim


@pytest.fixture(scope="package")
def _sink() -> Iterator[SmtpSink]:
    with SmtpSink() as sink:
        yield sink


@pytest.fixture
def sink(_sink: SmtpSink) -> SmtpSink:
    _sink.reset()
    return _sink


@pytest.fixture
def warehouse(fresh_database) -> Iterator[WarehouseResource]:
    with fresh_database() as database:
        yield database


@pytest.fixture
def make_resources(
    neople_sim: NeopleSimulator,
    warehouse: WarehouseResource,
    store: ObjectStoreResource,
    sink: SmtpSink,
    chat: TelegramSimulator,
    world: NeopleWorld,
) -> Callable[..., dict[str, Any]]:
    def make(**neople_fields: Any) -> dict[str, Any]:
        fields = dict(
            base_url=neople_sim.url,
            api_key=DEFAULT_API_KEY,
            characters=character_list(world),
            rate_limit_per_minute=None,
            backoff_base_seconds=0.01,
            max_attempts=3,
            read_timeout_seconds=5,
        )
        return {
            "neople": NeopleResource(**{**fields, **neople_fields}),
            "warehouse": warehouse,
            "object_store": store,
            "email": EmailResource(
                host="127.0.0.1",
                port=sink.port,
                recipients=MAIL_TO,
                max_attempts=1,
                timeout_seconds=5,
            ),
            "telegram": TelegramResource(
                bot_token=BOT_TOKEN,
                chat_id=CHAT_ID,
                base_url=chat.url,
                max_attempts=1,
                backoff_base_seconds=0.01,
            ),
        }

    return make


@pytest.fixture
def resources(make_resources) -> dict[str, Any]:
    return make_resources()
