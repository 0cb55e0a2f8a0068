"""The local stack the CLI and tests run on: embedded engines plus API simulators.

For every service whose production variable is unset, a local stand-in is started and
the variable is pointed at it (in `os.environ`, so `dagster dev` and its subprocesses
inherit it). Everything started here is stopped here, in reverse order.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from signalbox.platform.embedded import embedded_postgres
from signalbox.platform.settings import dagster_home, signalbox_home

DEMO_HELPSCOUT_CLIENT_ID = "signalbox-demo"
DEMO_HELPSCOUT_SECRET = "demo-secret"  # the simulator's own credential, not a real secret
DEMO_TELEGRAM_TOKEN = "123456:signalbox-demo"  # the simulator's, not a real bot's
DEMO_TELEGRAM_CHAT = "-1001000000001"  # the on-call group in the simulator


@dataclass
class LocalStack:
    home: Path
    services: dict[str, str] = field(default_factory=dict)  # name -> URL, for people
    _stops: list[Callable[[], None]] = field(default_factory=list)

    def stop(self) -> None:
        while self._stops:
            stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:  # keep stopping the rest
                print(f"warning: stopping a local service failed: {exc}")


@contextmanager
def local_stack(demo_backfill_days: int = 45) -> Iterator[LocalStack]:
    """Start what production variables do not point elsewhere; stop it on exit."""
    home = signalbox_home()
    os.environ["SIGNALBOX_HOME"] = str(home)
    os.environ.setdefault("DAGSTER_HOME", str(dagster_home()))
    stack = LocalStack(home)
    try:
        if not os.environ.get("SIGNALBOX_WAREHOUSE_URL"):
            server = embedded_postgres()
            was_running = server.running_port() is not None
            url = server.start()
            if not was_running:
                stack._stops.append(server.stop)
            os.environ["SIGNALBOX_WAREHOUSE_URL"] = url
            stack.services["warehouse (embedded PostgreSQL)"] = url
        if not os.environ.get("SIGNALBOX_S3_ENDPOINT_URL"):
            from signalbox.platform.embedded.s3 import embedded_s3
            from signalbox.platform.object_store import ObjectStoreResource

            s3 = embedded_s3()
            s3.start()
            stack._stops.append(s3.stop)
            s3.export_env()  # endpoint, the local server's own key pair, region
            ObjectStoreResource.from_env().process_config_and_initialize().ensure_bucket()
            stack.services["object store (embedded S3, nanio)"] = f"{s3.url} ({s3.data_dir})"
        if not os.environ.get("SIGNALBOX_SMTP_HOST"):
            from signalbox.simulators.smtp import SmtpSink

            mail = SmtpSink(save_dir=home / "mail").start()
            stack._stops.append(mail.stop)
            os.environ["SIGNALBOX_SMTP_HOST"] = mail.host
            os.environ["SIGNALBOX_SMTP_PORT"] = str(mail.port)
            os.environ.setdefault("SIGNALBOX_MAIL_FROM", "signalbox@localhost")
            os.environ.setdefault("SIGNALBOX_MAIL_TO", "oncall@signalbox.local")
            stack.services["SMTP sink (e-mail saved as .eml)"] = str(home / "mail")
        if not os.environ.get("HELPSCOUT_BASE_URL"):
            from signalbox.simulators.helpscout import HelpScoutSimulator

            simulator = HelpScoutSimulator(
                client_id=DEMO_HELPSCOUT_CLIENT_ID,
                client_secret=DEMO_HELPSCOUT_SECRET,
                rate_limit_per_minute=800,
                live=True,
            ).start()
            stack._stops.append(simulator.stop)
            os.environ["HELPSCOUT_BASE_URL"] = simulator.url
            os.environ["HELPSCOUT_CLIENT_ID"] = DEMO_HELPSCOUT_CLIENT_ID
            os.environ["HELPSCOUT_CLIENT_SECRET"] = DEMO_HELPSCOUT_SECRET
            start = (datetime.now(UTC) - timedelta(days=demo_backfill_days)).date()
            os.environ.setdefault("HELPSCOUT_BACKFILL_START", start.isoformat())
            stack.services["Help Scout simulator"] = simulator.url
        if not os.environ.get("NEOPLE_BASE_URL"):
            from signalbox.simulators.neople import DEFAULT_API_KEY, NeopleSimulator

            neople = NeopleSimulator(live=True).start()
            stack._stops.append(neople.stop)
            os.environ["NEOPLE_BASE_URL"] = neople.url
            os.environ["NEOPLE_API_KEY"] = DEFAULT_API_KEY  # the simulator's own key
            os.environ.setdefault(
                "NEOPLE_CHARACTERS",
                ",".join(f"{c['serverId']}:{c['characterId']}" for c in neople.world.characters()),
            )
            stack.services["Neople API simulator"] = neople.url
        if not os.environ.get("CFPB_BASE_URL"):
            from signalbox.simulators.cfpb import SEARCH_PATH, CfpbSimulator
            from signalbox.simulators.cfpb_world import CfpbWorld

            today = datetime.now(UTC).date()
            cfpb = CfpbSimulator(
                world=CfpbWorld(start=today - timedelta(days=demo_backfill_days)),
                search_rate_per_minute=600,
                live=True,
            ).start()
            stack._stops.append(cfpb.stop)
            os.environ["CFPB_BASE_URL"] = f"{cfpb.url}{SEARCH_PATH}"
            os.environ.setdefault("CFPB_RATE_LIMIT_PER_MINUTE", "600")
            os.environ.setdefault("CFPB_BACKFILL_START", (today - timedelta(days=30)).isoformat())
            stack.services["CFPB complaint search simulator"] = os.environ["CFPB_BASE_URL"]
        if not os.environ.get("SIGNALBOX_CLICKHOUSE_URL"):
            stack.services["event store (embedded chDB)"] = str(home / "clickhouse")
        if not os.environ.get("TELEGRAM_BOT_TOKEN"):
            from signalbox.simulators.telegram import TelegramSimulator

            chat = TelegramSimulator(token=DEMO_TELEGRAM_TOKEN).start()
            stack._stops.append(chat.stop)
            os.environ["TELEGRAM_API_URL"] = chat.url
            os.environ["TELEGRAM_BOT_TOKEN"] = DEMO_TELEGRAM_TOKEN
            os.environ["TELEGRAM_CHAT_ID"] = DEMO_TELEGRAM_CHAT
            stack.services["Telegram simulator (on-call chat)"] = chat.page_url
        yield stack
    finally:
        stack.stop()
