"""dbt adapter `chdb`: dbt-clickhouse with its HTTP client swapped for an in-process chDB one.

Everything else (SQL generation, materializations, relation cache, catalog for docs) is
dbt-clickhouse's own code, reused by subclassing and by `dependencies=['clickhouse']`.
"""

from dataclasses import dataclass

import clickhouse_connect
from dbt.adapters.base import AdapterPlugin
from dbt.adapters.clickhouse import ClickHouseAdapter, ClickHouseCredentials
from dbt.adapters.clickhouse.connections import ClickHouseConnectionManager
from dbt.adapters.clickhouse.dbclient import ChRetryableException
from dbt.adapters.clickhouse.httpclient import ChHttpClient
from dbt.adapters.clickhouse.logger import logger
from dbt.include import chdb


@dataclass
class ChdbCredentials(ClickHouseCredentials):
    # the engine's data directory; host/port/user/password are inherited and unused
    path: str = ""

    @property
    def type(self):  # profiles.yml `type: chdb` selects this adapter
        return "chdb"

    @property
    def unique_field(self):  # what identifies "the same warehouse" in dbt's anonymised stats
        return self.path

    def _connection_keys(self):  # shown by `dbt debug`
        return ("path", "schema", "custom_settings")


class ChdbClient(ChHttpClient):
    # ChHttpClient wraps a clickhouse-connect client (query/command/columns/close); chDB's
    # client has the same API, so only its construction differs. The base __init__ also
    # creates the target database and probes settings through it, so those run on chDB too.
    def _create_client(self, credentials):
        return clickhouse_connect.get_client(
            interface="chdb",
            path=credentials.path,
            query_limit=0,  # as dbt-clickhouse: never truncate results
            # dbt-clickhouse's session settings (mutations_sync, alter_sync, ...); chDB drops
            # the HTTP-only ones (session_id) itself
            settings=self._conn_settings,
        )


class ChdbConnectionManager(ClickHouseConnectionManager):
    TYPE = "chdb"  # the adapter type: dispatch tries chdb__ macros, then clickhouse__

    @classmethod
    def open(cls, connection):
        # as ClickHouseConnectionManager.open, which hard-codes its HTTP/native client choice
        if connection.state == "open":
            return connection
        credentials = cls.get_credentials(connection.credentials)
        return cls.retry_connection(
            connection,
            connect=lambda: ChdbClient(credentials),
            logger=logger,
            retry_limit=credentials.retries,
            retryable_exceptions=[ChRetryableException],
        )


class ChdbAdapter(ClickHouseAdapter):
    ConnectionManager = ChdbConnectionManager


Plugin = AdapterPlugin(
    adapter=ChdbAdapter,
    credentials=ChdbCredentials,
    include_path=chdb.PACKAGE_PATH,
    dependencies=["clickhouse"],  # load dbt-clickhouse's macros and materializations too
)
