"""`signalbox tickets produce | process` as a person runs them: one-line errors, a summary,
and SIGTERM that finishes the batch in hand, commits and exits."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from signalbox.domains.tickets import store as ticket_store
from signalbox.domains.tickets.produce import produce_tickets

pytestmark = pytest.mark.timeout(300)
SIGNALBOX = [str(Path(sys.executable).with_name("signalbox")), "tickets"]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [*SIGNALBOX, *args], env=env or os.environ.copy(), capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--count", "0"], "must be at least 1"),
        (["--count", "many"], "not a whole number"),
        (["--rate", "-3"], "must be greater than 0"),
    ],
)
def test_bad_arguments_get_one_line_and_exit_2(args, message):
    run = cli("produce", *args)
    assert run.returncode == 2
    assert message in run.stderr and "Traceback" not in run.stderr


def test_no_broker_gets_one_line_and_a_non_zero_exit(tmp_path):
    env = {**os.environ, "SIGNALBOX_HOME": str(tmp_path)}
    env.pop("SIGNALBOX_KAFKA_BOOTSTRAP", None)
    unset = cli("produce", env=env)
    assert unset.returncode == 1 and "SIGNALBOX_KAFKA_BOOTSTRAP is not set" in unset.stderr
    down = cli("produce", env={**env, "SIGNALBOX_KAFKA_BOOTSTRAP": "127.0.0.1:1"})
    assert down.returncode == 1 and "no Kafka broker answers at 127.0.0.1:1" in down.stderr
    for run in (unset, down):
        assert "Traceback" not in run.stderr
        assert len([line for line in run.stderr.splitlines() if "signalbox tickets" in line]) == 1


def test_produce_prints_a_summary_and_process_stops_cleanly_on_sigterm(
    kafka, stream, store, warehouse, tmp_path
):
    env = {
        **os.environ,
        "SIGNALBOX_HOME": str(tmp_path),
        "SIGNALBOX_KAFKA_BOOTSTRAP": kafka.bootstrap_servers,
        "SIGNALBOX_TICKETS_TOPIC": stream.topic,
        "SIGNALBOX_TICKETS_GROUP": stream.group_id,
        "SIGNALBOX_TICKETS_DEAD_LETTER_TOPIC": stream.dead_letter_topic,
        "SIGNALBOX_TICKETS_SESSION_TIMEOUT_MS": "2000",
        "SIGNALBOX_WAREHOUSE_URL": warehouse.url,
        "SIGNALBOX_S3_ENDPOINT_URL": store.endpoint_url,
        "SIGNALBOX_S3_BUCKET": store.bucket,
        "SIGNALBOX_S3_PREFIX": store.prefix,
        "DAGSTER_HOME": str(tmp_path),
    }
    produced = cli("produce", "--count", "150", "--quiet", env=env)
    assert produced.returncode == 0, produced.stderr
    assert "sent 150, failed 0" in produced.stdout

    processor = subprocess.Popen(
        [*SIGNALBOX, "process"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        exists = f"SELECT to_regclass('{ticket_store.ROUTED_TABLE}') IS NOT NULL"
        count = f"SELECT count(*) FROM {ticket_store.ROUTED_TABLE}"
        if warehouse.scalar(exists) and warehouse.scalar(count) == 150:
            break
        time.sleep(0.3)
    produce_tickets(kafka, stream.topic, stream.partitions, 50)  # in flight when SIGTERM comes
    processor.send_signal(signal.SIGTERM)
    out, err = processor.communicate(timeout=60)
    assert processor.returncode == 0, err[-2000:]
    assert "SIGTERM: finishing the batch in hand" in err
    assert "stopped after" in out and "Traceback" not in err
    # what it took was committed: the lag is what it never took, nothing was written twice
    routed = warehouse.scalar(f"SELECT count(*) FROM {ticket_store.ROUTED_TABLE}")
    lag = sum(kafka.lag(stream.group_id, stream.topic).values())
    assert routed + lag == 200
