"""The local stack the CLI and tests run on: embedded engines plus stand-ins for the APIs.

For every service whose production variable is unset, a stand-in is started and the
variables are pointed at it (in `os.environ`, so `dagster dev` and its subprocesses
inherit them). The platform's engines register below; every module of
`signalbox.simulators` registers its own stand-in with `@stand_in`, so a new domain's
simulator needs no edit here. Everything started is stopped, in reverse order.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from signalbox.platform.settings import dagster_home, signalbox_home


@dataclass
class LocalStack:
    home: Path
    demo_backfill_days: int = 45  # how far back the simulators' worlds reach
    services: dict[str, str] = field(default_factory=dict)  # name -> URL, for people
    local_s3_url: str | None = None  # the embedded S3 server, when the stack started one
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def on_stop(self, stop: Callable[[], None]) -> None:
        self._stops.append(stop)

    def export(self, **variables: str) -> None:
        """Point production variables at a stand-in (this process and its children)."""
        os.environ.update(variables)

    def default(self, **variables: str) -> None:
        """Settings a person may still override from the environment."""
        for name, value in variables.items():
            os.environ.setdefault(name, value)

    def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                print(f"warning: stopping a local service failed: {exc}")


@dataclass(frozen=True)
class StandIn:
    name: str  # for people, e.g. "Help Scout simulator"
    unless: str  # the production variable that, when set, means the real service is used
    start: Callable[[LocalStack], str]  # starts it, exports its variables, returns its URL
    order: int


_REGISTRY: dict[str, StandIn] = {}


def stand_in(name: str, *, unless: str, order: int = 50):
    """Register `start(stack) -> url` as the local stand-in for `unless`'s service."""

    def register(start: Callable[[LocalStack], str]) -> Callable[[LocalStack], str]:
        _REGISTRY[name] = StandIn(name, unless, start, order)
        return start

    return register


def stand_ins() -> list[StandIn]:
    """Every registered stand-in, engines first (importing the simulators registers them)."""
    import signalbox.simulators

    for module in pkgutil.iter_modules(signalbox.simulators.__path__):
        importlib.import_module(f"{signalbox.simulators.__name__}.{module.name}")
    return sorted(_REGISTRY.values(), key=lambda s: (s.order, s.name))


@contextmanager
def local_stack(demo_backfill_days: int = 45) -> Iterator[LocalStack]:
    """Start what production variables do not point elsewhere; stop it on exit."""
    from signalbox.platform.settings import refuse_embedded

    refuse_embedded("the local stack (embedded engines and API simulators)")
    home = signalbox_home()
    os.environ["SIGNALBOX_HOME"] = str(home)
    os.environ.setdefault("DAGSTER_HOME", str(dagster_home()))
    stack = LocalStack(home, demo_backfill_days)
    before = dict(os.environ)
    try:
        for service in stand_ins():
            if not os.environ.get(service.unless):
                stack.services[service.name] = service.start(stack)
        exported = {k: v for k, v in os.environ.items() if before.get(k) != v}
        _write_attachment(home, exported)
        stack.on_stop(lambda: _attachment_path(home).unlink(missing_ok=True))
        yield stack
    finally:
        stack.stop()


# A command run in another terminal beside the demo (`signalbox tickets produce`) reaches
# the same stand-ins through the variables the running stack exported: kept in a file
# only its user can read, removed when the stack stops.


def _attachment_path(home: Path) -> Path:
    return home / "local-stack.json"


def _write_attachment(home: Path, variables: dict[str, str]) -> None:
    path = _attachment_path(home)
    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        json.dump({"pid": os.getpid(), "variables": variables}, file)


def attach_to_local_stack() -> bool:
    """Take the variables of a local stack running under SIGNALBOX_HOME (those already
    set win); False when none is running."""
    path = _attachment_path(signalbox_home())
    try:
        attachment = json.loads(path.read_text())
        os.kill(int(attachment["pid"]), 0)  # still running?
    except (OSError, ValueError, KeyError, TypeError):
        return False
    for name, value in attachment["variables"].items():
        os.environ.setdefault(name, value)
    return True


# --------------------------------------------------------------------------- engines


@stand_in("warehouse (embedded PostgreSQL)", unless="SIGNALBOX_WAREHOUSE_URL", order=0)
def _warehouse(stack: LocalStack) -> str:
    from signalbox.platform.embedded import LAZY_MARKER, embedded_postgres

    server = embedded_postgres()
    lazily_started = server.data_dir.parent / LAZY_MARKER  # by a Dagster process: adopted
    was_running = server.running_port() is not None and not lazily_started.exists()
    url = server.start()
    lazily_started.unlink(missing_ok=True)
    if not was_running:
        stack.on_stop(server.stop)
    stack.export(SIGNALBOX_WAREHOUSE_URL=url)
    return url


@stand_in("object store (embedded S3, nanio)", unless="SIGNALBOX_S3_ENDPOINT_URL", order=1)
def _object_store(stack: LocalStack) -> str:
    from signalbox.platform.embedded.s3 import embedded_s3
    from signalbox.platform.object_store import ObjectStoreResource

    s3 = embedded_s3()
    s3.start()
    stack.on_stop(s3.stop)
    s3.export_env()  # endpoint, the local server's own key pair, region
    stack.local_s3_url = s3.url
    ObjectStoreResource.from_env().process_config_and_initialize().ensure_bucket()
    return f"{s3.url} ({s3.data_dir})"


@stand_in("stream broker (embedded Kafka API, Tansu)", unless="SIGNALBOX_KAFKA_BOOTSTRAP", order=2)
def _kafka(stack: LocalStack) -> str:
    """Persisted on the embedded S3 server when there is one (topics, data and committed
    offsets survive a restart), in memory when the object store is a real one."""
    from signalbox.platform.embedded.kafka import EmbeddedKafka
    from signalbox.platform.object_store import ObjectStoreResource

    in_memory = os.environ.get("SIGNALBOX_KAFKA_EMBEDDED_STORAGE", "s3").lower() == "memory"
    s3_endpoint = None if in_memory else stack.local_s3_url
    broker = EmbeddedKafka(
        s3_endpoint=s3_endpoint,
        # the embedded S3 server's key pair, exported by its stand-in
        access_key=os.environ.get("AWS_ACCESS_KEY_ID", ""),
        secret_key=os.environ.get("AWS_SECRET_ACCESS_KEY", ""),
        log_path=stack.home / "kafka.log",
    )
    if s3_endpoint:
        store = ObjectStoreResource.from_env(bucket=broker.bucket, prefix="")
        store.process_config_and_initialize().ensure_bucket()
    bootstrap = broker.start()
    stack.on_stop(broker.stop)
    stack.export(SIGNALBOX_KAFKA_BOOTSTRAP=bootstrap)
    return f"{bootstrap} ({broker.storage_url})"
