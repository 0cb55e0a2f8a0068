"""`signalbox tickets produce | process`: the stream's two long-lived programs.

Both read their settings from the environment; run beside `signalbox demo`, they find the
demo's broker, warehouse and object store through the local stack it left under
SIGNALBOX_HOME. Errors a person can fix (a bad argument, no broker) are one line and a
non-zero exit, not a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from signalbox.platform.kafka import KafkaError


def add_commands(commands: argparse._SubParsersAction) -> None:
    tickets = commands.add_parser("tickets", help="the customer-ticket stream")
    actions = tickets.add_subparsers(dest="action", required=True)
    produce = actions.add_parser("produce", help="send generated tickets to the topic")
    produce.add_argument("--count", type=_positive_int, default=100, help="tickets (default 100)")
    produce.add_argument(
        "--rate", type=_positive_float, default=None, help="tickets a second at most"
    )
    produce.add_argument("--quiet", action="store_true", help="no progress bar")
    process = actions.add_parser("process", help="route and aggregate tickets until stopped")
    process.add_argument(
        "--no-report", action="store_true", help="do not report batches to Dagster"
    )
    process.add_argument(
        "--idle-exit", type=_positive_float, default=None, help="exit after this many idle seconds"
    )


def run(args: argparse.Namespace) -> int:
    # the processor's modules (object store, warehouse) load only for a tickets command
    from signalbox.domains.tickets.process import ProcessorError
    from signalbox.stack import attach_to_local_stack

    attach_to_local_stack()
    try:
        if args.action == "produce":
            return produce(args.count, args.rate, quiet=args.quiet)
        return process(report=not args.no_report, idle_exit=args.idle_exit)
    except (KafkaError, ProcessorError) as exc:
        print(f"signalbox tickets {args.action}: {exc}", file=sys.stderr)
        return 1


def produce(count: int, rate: float | None, *, quiet: bool = False) -> int:
    from tqdm import tqdm

    from signalbox.domains.tickets.produce import produce_tickets
    from signalbox.domains.tickets.settings import TicketStreamResource
    from signalbox.platform.kafka import KafkaResource

    kafka = KafkaResource.from_env().process_config_and_initialize()
    stream = TicketStreamResource.from_env().process_config_and_initialize()
    kafka.require_reachable()
    with tqdm(total=count, unit="ticket", disable=quiet, file=sys.stderr) as bar:
        summary = produce_tickets(
            kafka, stream.topic, stream.partitions, count, rate=rate, on_delivered=bar.update
        )
    print(f"tickets produce: {summary.line()} to {stream.topic} at {kafka.bootstrap_servers}")
    return 0 if summary.failed == 0 else 1


def process(*, report: bool = True, idle_exit: float | None = None) -> int:
    import dagster as dg

    from signalbox.domains.tickets.process import TicketProcessor
    from signalbox.domains.tickets.raw import dagster_reporter
    from signalbox.domains.tickets.settings import TicketStreamResource
    from signalbox.platform.kafka import KafkaResource
    from signalbox.platform.object_store import ObjectStoreResource
    from signalbox.platform.settings import env_fields
    from signalbox.platform.warehouse import WarehouseResource

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logging.getLogger("signalbox").addHandler(handler)
    logging.getLogger("signalbox").setLevel(logging.INFO)
    kafka = KafkaResource.from_env().process_config_and_initialize()
    kafka.require_reachable()
    stream = TicketStreamResource.from_env().process_config_and_initialize()
    warehouse = WarehouseResource(**env_fields(url="SIGNALBOX_WAREHOUSE_URL"))
    store = ObjectStoreResource.from_env().process_config_and_initialize()
    reporter = None
    if report and os.environ.get("DAGSTER_HOME"):
        reporter = dagster_reporter(dg.DagsterInstance.get(), stream.topic)
    processor = TicketProcessor(
        kafka, warehouse.process_config_and_initialize(), store, stream, report=reporter
    )

    def stop(signum, frame) -> None:
        print(
            f"tickets process: {signal.Signals(signum).name}: finishing the batch in hand",
            file=sys.stderr,
        )
        processor.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(
        f"tickets process: group {stream.group_id} on {stream.topic} at {kafka.bootstrap_servers}"
        f"{'' if reporter else ' (not reporting to Dagster)'}",
        file=sys.stderr,
    )
    processor.run(idle_exit=idle_exit)
    totals = ", ".join(f"{k} {v}" for k, v in processor.totals.items())
    print(f"tickets process: stopped after {processor.batches} batches: {totals}")
    return 0


@contextmanager
def beside_the_demo(home: Path, *, trickle: bool) -> Iterator[Path]:
    """The processor, 100 tickets, and with `trickle` one ticket every five seconds, as
    child processes of the demo (which exported the stack's variables), stopped on exit
    with SIGTERM like a process manager would; yields their log file."""
    import dagster as dg

    from signalbox.domains.tickets.store import create_tables
    from signalbox.platform.settings import env_fields
    from signalbox.platform.warehouse import WarehouseResource

    dg.DagsterInstance.get()  # its storage created once, before the processor reports to it
    warehouse = WarehouseResource(**env_fields(url="SIGNALBOX_WAREHOUSE_URL"))
    with warehouse.process_config_and_initialize().connect() as conn, conn.cursor() as cur:
        create_tables(cur)  # the dbt models read them before the first batch lands
    command = [str(Path(sys.executable).with_name("signalbox")), "tickets"]
    log_path = home / "tickets.log"
    children: list[subprocess.Popen] = []
    with open(log_path, "ab") as log:

        def start(*args: str) -> None:
            children.append(
                subprocess.Popen([*command, *args], stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL, start_new_session=True)
            )  # fmt: skip

        start("process")
        start("produce", "--count", "100", "--quiet")
        if trickle:
            start("produce", "--count", "10000000", "--rate", "0.2", "--quiet")
    try:
        yield log_path
    finally:
        for child in reversed(children):  # producers first, the processor last
            if child.poll() is None:
                child.terminate()
            try:
                child.wait(30)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        summaries = [line for line in log_path.read_text(errors="replace").splitlines()
                     if line.startswith("tickets process: stopped")]  # fmt: skip
        if summaries:
            print(summaries[-1])


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {value}")
    return value
