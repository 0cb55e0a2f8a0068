"""The object store resource on real S3 servers over HTTP: moto's and the embedded nanio."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import numpy as np
import pyarrow as pa
import pytest
from moto_s3 import aws_environment, moto_server

from signalbox.platform.embedded.ports import free_port
from signalbox.platform.embedded.s3 import (
    DEMO_ACCESS_KEY,
    DEMO_SECRET_KEY,
    EmbeddedS3,
    EmbeddedS3Error,
)
from signalbox.platform.object_store import (
    ObjectNotFoundError,
    ObjectStoreError,
    ObjectStoreResource,
    partition_key,
)

pytestmark = pytest.mark.integration  # starts engines or processes itself

MiB = 1024 * 1024
BUCKET = "signalbox-test"


@pytest.fixture(scope="module")
def aws_env(tmp_path_factory) -> Iterator[None]:
    with aws_environment(tmp_path_factory.mktemp("aws")):
        yield


@pytest.fixture(scope="module")
def moto_url(aws_env) -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture(scope="module")
def nanio(aws_env, tmp_path_factory) -> Iterator[EmbeddedS3]:
    with EmbeddedS3(tmp_path_factory.mktemp("home") / "objectstore") as server:
        yield server


@pytest.fixture(scope="module", params=["moto", "nanio"])
def endpoint(request) -> str:
    if request.param == "moto":
        return request.getfixturevalue("moto_url")
    return request.getfixturevalue("nanio").url


def make_store(endpoint: str, **fields) -> ObjectStoreResource:
    store = ObjectStoreResource(bucket=BUCKET, endpoint_url=endpoint, **fields)
    store.ensure_bucket()
    return store


@pytest.fixture(scope="module")
def store(endpoint: str) -> ObjectStoreResource:
    """One resource per server (a boto3 client costs ~0.2-0.8 s to build here)."""
    return make_store(endpoint, prefix="tests")


@pytest.fixture
def folder() -> str:
    """A key folder of the test's own, so tests never see each other's objects."""
    return f"t-{uuid.uuid4().hex[:8]}"


def sample_table(rows: int = 1000) -> pa.Table:
    rng = np.random.default_rng(7)
    return pa.table(
        {
            "character_id": pa.array([f"c{i % 37:03d}" for i in range(rows)]),
            "code": pa.array(rng.integers(100, 600, rows), pa.int32()),
            "rarity": pa.array([None if i % 11 == 0 else "epic" for i in range(rows)]),
            "value": pa.array(rng.normal(size=rows)),
            "at": pa.array(
                [datetime(2024, 3, 1, 12, i % 60) for i in range(rows)], pa.timestamp("us", "UTC")
            ),
            "day": pa.array([date(2024, 3, 1)] * rows, pa.date32()),
        }
    )


# --------------------------------------------------------------------------- keys (pure)


def test_partition_keys_are_hive_style():
    assert (
        partition_key("timelines", date(2024, 3, 5)) == "timelines/date=2024-03-05/part-0.parquet"
    )
    assert partition_key("games/timelines", "2024-03-05", part=2, ext="csv") == (
        "games/timelines/date=2024-03-05/part-2.csv"
    )
    assert partition_key("x", datetime(2024, 3, 5, 23, 59)) == "x/date=2024-03-05/part-0.parquet"
    for bad in ("2024-3-5", "2024-02-30", "yesterday"):
        with pytest.raises(ValueError, match="timelines"):
            partition_key("timelines", bad)
    with pytest.raises(ValueError):
        partition_key("../escape", "2024-03-05")


def test_urls_and_keys_sit_under_the_prefix():
    store = ObjectStoreResource(bucket="bkt", prefix="/raw/games/")
    key = store.partition_key("timelines", date(2024, 3, 5))
    assert store.full_key(key) == "raw/games/timelines/date=2024-03-05/part-0.parquet"
    assert store.url(key) == "s3://bkt/raw/games/timelines/date=2024-03-05/part-0.parquet"
    assert ObjectStoreResource(bucket="bkt").url("a/b.json") == "s3://bkt/a/b.json"
    with pytest.raises(ValueError):
        store.full_key("/absolute")


# --------------------------------------------------------------------------- both servers


def test_put_get_list_delete(store: ObjectStoreResource, folder: str):
    export = f"{folder}/complaints/export.csv"
    stored = store.put_bytes(export, b"state,n\nCA,3\n", "text/csv")
    assert stored.size == 13 and stored.parts == 1
    assert stored.url == f"s3://{BUCKET}/tests/{export}"
    store.put_bytes(f"{folder}/timelines/date=2024-03-01/part-0.parquet", b"1")
    store.put_bytes(f"{folder}/timelines/date=2024-03-02/part-0.parquet", b"2")

    assert store.get_bytes(export) == b"state,n\nCA,3\n"
    assert store.exists(export)
    assert not store.exists(f"{folder}/complaints/other.csv")
    assert store.list(folder) == [
        export,
        f"{folder}/timelines/date=2024-03-01/part-0.parquet",
        f"{folder}/timelines/date=2024-03-02/part-0.parquet",
    ]
    assert store.list(f"{folder}/timelines/date=2024-03-02/") == [
        f"{folder}/timelines/date=2024-03-02/part-0.parquet"
    ]
    assert store.list(f"{folder}/nothing/") == []

    store.put_bytes(export, b"replaced")  # overwrite is one atomic PUT
    assert store.get_bytes(export) == b"replaced"
    store.delete(export)
    store.delete(export)  # idempotent
    assert not store.exists(export)
    assert export not in store.list(folder)


def test_listing_follows_pages(store: ObjectStoreResource, folder: str):
    keys = [f"{folder}/k{i:03d}" for i in range(25)]
    for key in keys:
        store.put_bytes(key, b"x")
    calls: list[str] = []

    def count(model, **_):
        calls.append(model.name)

    store.client().meta.events.register("before-call.s3.ListObjectsV2", count)
    try:
        assert store.list(f"{folder}/", page_size=10) == keys
    finally:
        store.client().meta.events.unregister("before-call.s3.ListObjectsV2", count)
    assert len(calls) == 3


def test_parquet_round_trip(store: ObjectStoreResource, folder: str):
    table = sample_table()
    key = store.partition_key(f"{folder}/timelines", "2024-03-01")
    stored = store.write_parquet(key, table)
    assert stored.key == key and stored.size > 0
    assert store.read_parquet(key).equals(table)
    assert store.read_parquet(key, columns=["code"]).column("code").equals(table.column("code"))


def test_forced_multipart_upload(endpoint: str):
    store = make_store(
        endpoint,
        prefix=f"multipart-{uuid.uuid4().hex[:8]}",
        multipart_threshold_bytes=5 * MiB,
        multipart_chunksize_bytes=5 * MiB,
    )
    calls: list[str] = []
    events = store.client().meta.events
    for op in ("CreateMultipartUpload", "UploadPart", "CompleteMultipartUpload", "PutObject"):
        events.register(f"before-call.s3.{op}", lambda model, **_: calls.append(model.name))

    rng = np.random.default_rng(1)
    table = pa.table({"x": rng.random(700_000), "i": rng.integers(0, 2**60, 700_000)})
    stored = store.write_parquet(store.partition_key("big", "2024-03-01"), table)
    assert stored.size > 10 * MiB
    assert stored.parts == -(-stored.size // (5 * MiB))  # the server's ETag ends in -<parts>
    assert calls.count("CreateMultipartUpload") == 1
    assert calls.count("UploadPart") == stored.parts
    assert calls.count("CompleteMultipartUpload") == 1 and "PutObject" not in calls
    assert store.read_parquet(stored.key).equals(table)

    blob = rng.bytes(11 * MiB)
    calls.clear()
    assert store.put_bytes("big/blob.bin", blob).parts == 3
    assert calls.count("UploadPart") == 3
    assert store.get_bytes("big/blob.bin") == blob


def test_missing_objects_name_bucket_and_key(store: ObjectStoreResource, folder: str):
    key = store.partition_key(f"{folder}/timelines", "1999-01-01")
    for read in (store.get_bytes, store.read_parquet, store.head):
        with pytest.raises(ObjectNotFoundError) as caught:
            read(key)
        assert f"s3://{BUCKET}/{store.prefix}/{key}" in str(caught.value)

    other = ObjectStoreResource(bucket="no-such-bucket-here", endpoint_url=store.endpoint_url)
    with pytest.raises(ObjectStoreError, match="no-such-bucket-here"):
        other.put_bytes("a.json", b"{}")


def test_corrupt_parquet_names_the_key(store: ObjectStoreResource, folder: str):
    store.put_bytes(f"{folder}/bad/part-0.parquet", b"not parquet at all")
    with pytest.raises(ObjectStoreError, match=f"{folder}/bad/part-0.parquet.*not a readable"):
        store.read_parquet(f"{folder}/bad/part-0.parquet")


def test_resource_runs_in_dagster_with_settings_from_env(
    store: ObjectStoreResource, folder: str, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("SIGNALBOX_S3_BUCKET", BUCKET)
    monkeypatch.setenv("SIGNALBOX_S3_PREFIX", "tests")
    monkeypatch.setenv("SIGNALBOX_S3_ENDPOINT_URL", str(store.endpoint_url))

    @dg.asset
    def daily_file(object_store: ObjectStoreResource) -> dg.MaterializeResult:
        object_store.ensure_bucket()
        stored = object_store.write_parquet(
            object_store.partition_key(f"{folder}/daily_file", "2024-03-01"), sample_table(10)
        )
        return dg.MaterializeResult(metadata={"url": stored.url, "parts": stored.parts})

    result = dg.materialize(
        [daily_file], resources={"object_store": ObjectStoreResource.from_env()}
    )
    assert result.success
    url = result.asset_materializations_for_node("daily_file")[0].metadata["url"].value
    key = f"{folder}/daily_file/date=2024-03-01/part-0.parquet"
    assert url == f"s3://{BUCKET}/tests/{key}"
    assert store.read_parquet(key).equals(sample_table(10))


# --------------------------------------------------------------------------- credentials


def test_credentials_never_in_errors_or_repr(nanio: EmbeddedS3, monkeypatch: pytest.MonkeyPatch):
    secret = "wrong-secret-Zq8vX2kP9"
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    store = ObjectStoreResource(bucket=BUCKET, endpoint_url=nanio.url, max_attempts=1)
    with pytest.raises(ObjectStoreError) as caught:
        store.put_bytes("x/secret-test.txt", b"1")
    text = f"{caught.value} {caught.value!r}"
    assert "SignatureDoesNotMatch" in text and "x/secret-test.txt" in text
    for credential in (secret, DEMO_ACCESS_KEY, DEMO_SECRET_KEY):
        assert credential not in text
        assert credential not in repr(store)
    assert not any("secret" in name or "key_id" in name for name in type(store).model_fields)


def test_unreachable_endpoint_names_endpoint_and_key(aws_env):
    endpoint = f"http://127.0.0.1:{free_port()}"
    store = ObjectStoreResource(bucket=BUCKET, endpoint_url=endpoint, max_attempts=1)
    with pytest.raises(ObjectStoreError) as caught:
        store.get_bytes("a/b.json")
    assert endpoint in str(caught.value) and f"s3://{BUCKET}/a/b.json" in str(caught.value)
    assert DEMO_SECRET_KEY not in str(caught.value)


# --------------------------------------------------------------------------- embedded nanio


def test_embedded_s3_persists_across_restarts(aws_env, tmp_path: Path):
    data_dir = tmp_path / "objectstore"
    started = time.monotonic()
    with EmbeddedS3(data_dir) as server:
        assert time.monotonic() - started < 10
        assert server.start_seconds is not None and server.start_seconds < 10
        env = server.client_env()
        assert env["SIGNALBOX_S3_ENDPOINT_URL"] == server.url
        assert env["AWS_ACCESS_KEY_ID"] == DEMO_ACCESS_KEY
        store = ObjectStoreResource(bucket="signalbox", endpoint_url=server.url)
        store.ensure_bucket()
        store.write_parquet("t/date=2024-03-01/part-0.parquet", sample_table(50))
        process = server._process
    assert process is not None and process.poll() is not None  # stopped
    assert not server.running
    assert (data_dir / "signalbox").is_dir()  # buckets are folders under the data dir

    with EmbeddedS3(data_dir) as again:
        store = ObjectStoreResource(bucket="signalbox", endpoint_url=again.url)
        store.ensure_bucket()  # already there
        assert store.list() == ["t/date=2024-03-01/part-0.parquet"]
        assert store.read_parquet("t/date=2024-03-01/part-0.parquet").equals(sample_table(50))


def test_embedded_s3_start_failure_is_reported(tmp_path: Path):
    with EmbeddedS3(tmp_path / "a") as first:
        taken = EmbeddedS3(tmp_path / "b", port=first.port, start_timeout=10)
        with pytest.raises(EmbeddedS3Error, match=f"127.0.0.1:{first.port}"):
            taken.start()
        assert not taken.running
        assert first.running
    first.stop()  # idempotent


def test_export_env_points_from_env_at_the_server(
    nanio: EmbeddedS3, monkeypatch: pytest.MonkeyPatch
):
    for name in nanio.client_env():  # registers each for restoring after the test
        monkeypatch.setenv(name, os.environ.get(name, ""))
    monkeypatch.setenv("AWS_SESSION_TOKEN", "stale")
    nanio.export_env()
    assert "AWS_SESSION_TOKEN" not in os.environ
    store = ObjectStoreResource.from_env(bucket=BUCKET).process_config_and_initialize()
    assert store.endpoint_url == nanio.url
    store.ensure_bucket()
    store.put_bytes("env/ok.txt", b"ok")
    assert store.get_bytes("env/ok.txt") == b"ok"
