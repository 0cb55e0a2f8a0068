"""The object store: parquet and JSON files in S3, through dagster-aws's `S3Resource`.

One code path for production and the demo: `SIGNALBOX_S3_ENDPOINT_URL` unset means AWS;
the local stack sets it to the embedded S3 server (`embedded/s3.py`). Credentials come
only from the standard AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, an
instance role): this resource has no credential fields, so none can reach run config.

Keys given to the methods are relative to `prefix`; datasets use hive-style keys
(`<dataset>/date=YYYY-MM-DD/part-0.parquet`, see `partition_key`).

Writes are atomic per object: a PUT, or the CompleteMultipartUpload of a multipart
upload, makes the whole object visible at once, so a reader sees the old object or the
new one, never a part; a failed multipart upload is aborted by boto3's transfer manager.
"""

from __future__ import annotations

import builtins
import io
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

import dagster as dg
import pyarrow as pa
import pyarrow.parquet as pq
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import Field, PrivateAttr

from signalbox.platform.settings import env_fields

if TYPE_CHECKING:  # imported where used: dagster-aws alone costs the code location 0.6 s
    from boto3.s3.transfer import TransferConfig
    from dagster_aws.s3 import S3Resource

DEFAULT_BUCKET = "signalbox"
DEFAULT_REGION = "us-east-1"
PARQUET_CONTENT_TYPE = "application/vnd.apache.parquet"
MiB = 1024 * 1024

_NOT_FOUND_CODES = {"NoSuchKey", "404", "NotFound"}
_NO_BUCKET_CODES = {"NoSuchBucket"}
_DAY_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ObjectStoreError(RuntimeError):
    """An S3 call failed; names the operation, the object (s3://bucket/key) and the code."""

    def __init__(self, message: str, *, url: str, operation: str, code: str | None = None):
        super().__init__(message)
        self.url = url
        self.operation = operation
        self.code = code


class ObjectNotFoundError(ObjectStoreError):
    """The key (or its bucket) does not exist."""


@dataclass(frozen=True)
class StoredObject:
    """What a write stored, for asset metadata and notifications."""

    key: str  # relative to the prefix, as passed in
    url: str  # s3://bucket/prefix/key
    size: int
    etag: str  # multipart uploads end in -<parts>

    @property
    def parts(self) -> int:
        """Number of multipart parts (1 for a single PUT)."""
        _, _, suffix = self.etag.strip('"').rpartition("-")
        return int(suffix) if suffix.isdigit() else 1


def partition_key(
    dataset: str, day: date | datetime | str, part: int = 0, ext: str = "parquet"
) -> str:
    """`<dataset>/date=YYYY-MM-DD/part-<part>.<ext>`: one daily partition's file."""
    dataset = dataset.strip("/")
    if not dataset or any(seg in ("", ".", "..") for seg in dataset.split("/")):
        raise ValueError(f"bad dataset name for an object key: {dataset!r}")
    if isinstance(day, datetime):
        day = day.date()
    if isinstance(day, date):
        shown = day.isoformat()
    else:
        shown = str(day)
        try:
            if not _DAY_RE.match(shown):
                raise ValueError("not YYYY-MM-DD")
            date.fromisoformat(shown)  # a real calendar day
        except ValueError as exc:
            raise ValueError(
                f"partition day of {dataset} must be a YYYY-MM-DD date, got {day!r} ({exc})"
            ) from None
    if part < 0:
        raise ValueError(f"part must be >= 0, got {part}")
    return f"{dataset}/date={shown}/part-{part}.{ext.lstrip('.')}"


BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
PREFIX_SEGMENT = re.compile(r"[A-Za-z0-9!_.*'()=+-]+")


def checked_bucket(name: str) -> str:
    """S3's bucket naming rules: 3-63 lowercase letters, digits, dots and hyphens."""
    if not BUCKET_NAME.fullmatch(name) or ".." in name:
        shown = name if len(name) <= 40 else name[:40] + "..."
        raise ValueError(
            f"SIGNALBOX_S3_BUCKET must be an S3 bucket name (3-63 lowercase letters, digits, "
            f"'.' and '-'), got {shown!r}"
        )
    return name


def checked_prefix(prefix: str) -> str:
    """A key prefix of plain segments: no `.` or `..` (a file-backed server would leave its
    folder), no control characters, nothing that needs escaping in a URL."""
    segments = [s for s in prefix.strip("/").split("/") if s] if prefix else []
    if len(prefix) > 256 or any(
        s in (".", "..") or not PREFIX_SEGMENT.fullmatch(s) for s in segments
    ):
        shown = prefix if len(prefix) <= 40 else prefix[:40] + "..."
        raise ValueError(
            "SIGNALBOX_S3_PREFIX must be '/'-separated segments of letters, digits and "
            f"!_.*'()=+- (no '.' or '..' segment, at most 256 characters), got {shown!r}"
        )
    return prefix


class ObjectStoreResource(dg.ConfigurableResource):
    """One bucket (and key prefix) in S3 or an S3-compatible server.

    Build it with `from_env()`; every field has an environment variable (outside a
    Dagster run, `from_env().process_config_and_initialize()` resolves them). The boto3
    client comes from dagster-aws's `S3Resource` (standard retry mode: throttling, 5xx
    and connection errors are retried with backoff up to `max_attempts`).
    """

    bucket: str = Field(default=DEFAULT_BUCKET, description="SIGNALBOX_S3_BUCKET")
    prefix: str = Field(default="", description="SIGNALBOX_S3_PREFIX: key prefix in the bucket.")
    region: str = Field(default=DEFAULT_REGION, description="AWS_REGION")
    endpoint_url: str | None = Field(
        default=None,
        description="SIGNALBOX_S3_ENDPOINT_URL: an S3-compatible server; unset = AWS S3.",
    )
    max_attempts: int = Field(default=5, description="boto3 tries per call (standard mode).")
    multipart_threshold_bytes: int = Field(
        default=64 * MiB, description="Objects at least this large are uploaded in parts."
    )
    multipart_chunksize_bytes: int = Field(
        default=16 * MiB, description="Part size of multipart uploads (S3 minimum: 5 MiB)."
    )
    max_concurrency: int = Field(default=4, description="Parallel part uploads/downloads.")
    spool_bytes: int = Field(
        default=256 * MiB,
        description="Parquet files up to this size are built in memory, larger on local disk.",
    )

    _client: Any = PrivateAttr(default=None)
    _client_lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def from_env(cls, **overrides: Any) -> ObjectStoreResource:
        """Fields from the environment variables that are set; the rest keep defaults."""
        fields = env_fields(
            bucket="SIGNALBOX_S3_BUCKET",
            prefix="SIGNALBOX_S3_PREFIX",
            region="AWS_REGION",
            endpoint_url="SIGNALBOX_S3_ENDPOINT_URL",
        )
        return cls(**{**fields, **overrides})

    # -- the library's resource and client

    def s3_resource(self) -> S3Resource:
        """dagster-aws's resource with this store's settings (e.g. for S3PickleIOManager)."""
        from dagster_aws.s3 import S3Resource

        return S3Resource(
            region_name=self.region or DEFAULT_REGION,
            endpoint_url=self.endpoint_url or None,
            max_attempts=self.max_attempts,
        )

    def client(self) -> Any:
        """The boto3 S3 client (thread-safe, shared by this resource instance)."""
        with self._client_lock:
            if self._client is None:
                self._client = self.s3_resource().get_client()
            return self._client

    def transfer_config(self) -> TransferConfig:
        from boto3.s3.transfer import TransferConfig

        return TransferConfig(
            multipart_threshold=self.multipart_threshold_bytes,
            multipart_chunksize=self.multipart_chunksize_bytes,
            max_concurrency=self.max_concurrency,
        )

    # -- keys

    def full_key(self, key: str) -> str:
        """The key in the bucket: prefix + key."""
        if not key or key.startswith("/"):
            raise ValueError(f"object key must be non-empty and relative, got {key!r}")
        prefix = checked_prefix(self.prefix).strip("/")
        checked_bucket(self.bucket)
        return f"{prefix}/{key}" if prefix else key

    def url(self, key: str) -> str:
        """`s3://bucket/prefix/key`, for people (logs, metadata, notifications)."""
        return f"s3://{self.bucket}/{self.full_key(key)}"

    def partition_key(
        self, dataset: str, day: date | datetime | str, part: int = 0, ext: str = "parquet"
    ) -> str:
        """Hive-style key of a daily partition's file (relative to the prefix)."""
        return partition_key(dataset, day, part, ext)

    # -- operations

    def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (idempotent)."""
        checked_bucket(self.bucket)
        client = self.client()
        where = f"s3://{self.bucket}"
        try:
            client.head_bucket(Bucket=self.bucket)
            return
        except ClientError as exc:
            if _code(exc) not in {"404", "NoSuchBucket", "NotFound"}:
                raise self._error(exc, "HeadBucket", where) from exc
        except BotoCoreError as exc:
            raise self._error(exc, "HeadBucket", where) from exc
        kwargs: dict[str, Any] = {"Bucket": self.bucket}
        region = self.region or DEFAULT_REGION
        if region != "us-east-1":
            kwargs["CreateBucketConfiguration"] = {"LocationConstraint": region}
        try:
            client.create_bucket(**kwargs)
        except ClientError as exc:
            if _code(exc) not in {"BucketAlreadyOwnedByYou"}:
                raise self._error(exc, "CreateBucket", where) from exc
        except BotoCoreError as exc:
            raise self._error(exc, "CreateBucket", where) from exc

    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> StoredObject:
        """Store `data` at `key`, replacing any object there (in parts above the threshold)."""
        if len(data) >= self.multipart_threshold_bytes:
            return self._upload(key, io.BytesIO(data), content_type)
        with self._calls("PutObject", key):
            response = self.client().put_object(
                Bucket=self.bucket, Key=self.full_key(key), Body=data, ContentType=content_type
            )
        return StoredObject(key, self.url(key), len(data), response["ETag"].strip('"'))

    def get_bytes(self, key: str) -> bytes:
        """The object's content; `ObjectNotFoundError` naming the key if there is none."""
        with self._calls("GetObject", key):
            response = self.client().get_object(Bucket=self.bucket, Key=self.full_key(key))
            return response["Body"].read()

    def exists(self, key: str) -> bool:
        try:
            self.head(key)
        except ObjectNotFoundError:
            return False
        return True

    def head(self, key: str) -> StoredObject:
        """Size and ETag of a stored object."""
        with self._calls("HeadObject", key):
            response = self.client().head_object(Bucket=self.bucket, Key=self.full_key(key))
        return StoredObject(
            key, self.url(key), int(response["ContentLength"]), response["ETag"].strip('"')
        )

    def list(self, prefix: str = "", *, page_size: int = 1000) -> builtins.list[str]:
        """Keys (relative to the store's prefix) that start with `prefix`, sorted."""
        base = self.prefix.strip("/")
        full = f"{base}/{prefix}" if base else prefix
        cut = len(base) + 1 if base else 0
        keys: builtins.list[str] = []
        with self._calls("ListObjectsV2", prefix, listing=True):
            pages = (
                self.client()
                .get_paginator("list_objects_v2")
                .paginate(Bucket=self.bucket, Prefix=full, PaginationConfig={"PageSize": page_size})
            )
            for page in pages:
                keys.extend(item["Key"][cut:] for item in page.get("Contents", ()))
        return sorted(keys)

    def delete(self, key: str) -> None:
        """Remove the object; deleting a missing key is not an error (S3 semantics)."""
        with self._calls("DeleteObject", key):
            self.client().delete_object(Bucket=self.bucket, Key=self.full_key(key))

    def write_parquet(
        self, key: str, table: pa.Table, *, compression: str = "snappy"
    ) -> StoredObject:
        """Write `table` as one parquet object (multipart above the threshold)."""
        with tempfile.SpooledTemporaryFile(max_size=self.spool_bytes) as buffer:
            pq.write_table(table, buffer, compression=compression)
            buffer.seek(0)
            return self._upload(key, buffer, PARQUET_CONTENT_TYPE)

    def read_parquet(self, key: str, columns: builtins.list[str] | None = None) -> pa.Table:
        """The parquet object at `key` as a table (ranged parallel download when large)."""
        with tempfile.SpooledTemporaryFile(max_size=self.spool_bytes) as buffer:
            with self._calls("GetObject", key):
                self.client().download_fileobj(
                    self.bucket, self.full_key(key), buffer, Config=self.transfer_config()
                )
            buffer.seek(0)
            try:
                return pq.read_table(buffer, columns=columns)
            except (pa.ArrowInvalid, OSError) as exc:
                raise ObjectStoreError(
                    f"{self.url(key)} is not a readable parquet file: {exc}",
                    url=self.url(key),
                    operation="read_parquet",
                ) from exc

    # -- internals

    def _upload(self, key: str, fileobj: Any, content_type: str) -> StoredObject:
        with self._calls("Upload", key):
            self.client().upload_fileobj(
                fileobj,
                self.bucket,
                self.full_key(key),
                ExtraArgs={"ContentType": content_type},
                Config=self.transfer_config(),
            )
        return self.head(key)

    @contextmanager
    def _calls(self, operation: str, key: str, listing: bool = False) -> Iterator[None]:
        if listing:  # a key prefix, possibly empty
            where = f"s3://{self.bucket}/" + "/".join(
                part for part in (self.prefix.strip("/"), key) if part
            )
        else:
            where = self.url(key)
        try:
            yield
        except ClientError as exc:
            raise self._error(exc, operation, where) from exc
        except BotoCoreError as exc:  # connection errors, missing credentials, ...
            raise self._error(exc, operation, where) from exc

    def _error(self, exc: Exception, operation: str, where: str) -> ObjectStoreError:
        endpoint = self.endpoint_url or f"AWS S3 ({self.region or DEFAULT_REGION})"
        if isinstance(exc, ClientError):
            code = _code(exc)
            detail = exc.response.get("Error", {}).get("Message") or ""
            if code in _NOT_FOUND_CODES:
                message = f"{where}: no such object ({operation} on {endpoint})"
                return ObjectNotFoundError(message, url=where, operation=operation, code=code)
            if code in _NO_BUCKET_CODES:
                message = (
                    f"{where}: bucket {self.bucket!r} does not exist ({operation} on "
                    f"{endpoint}); create it with ensure_bucket()"
                )
                return ObjectNotFoundError(message, url=where, operation=operation, code=code)
            message = f"{where}: {operation} failed on {endpoint}: {code} {detail}".rstrip()
        else:
            code = None
            message = f"{where}: {operation} failed on {endpoint}: {type(exc).__name__}: {exc}"
        return ObjectStoreError(self._redact(message), url=where, operation=operation, code=code)

    def _redact(self, text: str) -> str:
        """Belt and braces: S3 error texts carry no secrets, but never let a key through."""
        secrets = [
            os.environ.get(name, "")
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
        ]
        credentials = getattr(getattr(self._client, "_request_signer", None), "_credentials", None)
        if credentials is not None:
            frozen = credentials.get_frozen_credentials()
            secrets += [frozen.access_key, frozen.secret_key, frozen.token or ""]
        for secret in secrets:
            if secret and len(secret) >= 4:
                text = text.replace(secret, "***")
        return text


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
