"""Hostile configuration values (quotes, `;`, `../`, line breaks, very long strings) in the
variables that reach SQL, a path, an object key, a header or a URL: each ends in a clear
error naming the variable, before anything is sent or written, or is passed on safely
(as a bound parameter or an encoded query value)."""

from __future__ import annotations

import pytest

from signalbox.domains.complaints.cfpb import CfpbResource
from signalbox.domains.game_timelines.neople import NeopleResource, parse_characters
from signalbox.domains.mailbox.helpscout import HelpScoutResource
from signalbox.platform.clickhouse import ClickHouseConfigError, ClickHouseResource
from signalbox.platform.email import split_addresses
from signalbox.platform.object_store import ObjectStoreResource

pytestmark = pytest.mark.unit

HOSTILE = [
    "x'; DROP TABLE raw.cfpb_complaints; --",
    'x"; rm -rf /',
    "../../etc/passwd",
    "line\nbreak: injected",
    "semi;colon`back`tick",
    "x" * 100_000,
]


def short(error: BaseException) -> bool:
    """A clear error is short enough to read: the value shown cut, never the whole of it."""
    return len(str(error)) < 400


@pytest.mark.parametrize("value", HOSTILE)
def test_object_store_bucket_and_prefix(value):
    with pytest.raises(ValueError, match="SIGNALBOX_S3_BUCKET") as error:
        ObjectStoreResource(bucket=value).full_key("a.json")
    assert short(error.value)
    with pytest.raises(ValueError, match="SIGNALBOX_S3_PREFIX") as error:
        ObjectStoreResource(bucket="signalbox", prefix=value).full_key("a.json")
    assert short(error.value)


def test_plain_prefixes_still_work():
    store = ObjectStoreResource(bucket="signalbox", prefix="/team-a/prod.v2/")
    assert store.full_key("x/y.parquet") == "team-a/prod.v2/x/y.parquet"


@pytest.mark.parametrize("value", HOSTILE)
def test_clickhouse_database_names(value):
    with pytest.raises(ClickHouseConfigError, match="SIGNALBOX_CLICKHOUSE_DATABASE") as error:
        ClickHouseResource(database=value).target_database()
    assert short(error.value)
    url = "http://default:pw@127.0.0.1:8123/" + value.replace("/", "_").replace("\n", "%0A")
    with pytest.raises(ClickHouseConfigError, match="SIGNALBOX_CLICKHOUSE_URL") as error:
        ClickHouseResource(url=url).target_database()
    assert short(error.value) and "pw" not in str(error.value).split("got")[0][-3:]


@pytest.mark.parametrize("value", HOSTILE)
def test_backfill_starts(value):
    with pytest.raises(ValueError, match="CFPB_BACKFILL_START") as error:
        CfpbResource(backfill_start=value).backfill_start_date()
    assert short(error.value)
    resource = HelpScoutResource(client_id="a", client_secret="b", backfill_start=value)
    with pytest.raises(ValueError, match="HELPSCOUT_BACKFILL_START") as error:
        resource.backfill_start_at()
    assert short(error.value)


@pytest.mark.parametrize("value", HOSTILE[:5])
def test_mail_recipients(value):
    with pytest.raises(ValueError, match="not an e-mail address") as error:
        split_addresses(f"oncall@example.com, {value}")
    assert short(error.value)


def test_a_recipient_that_would_start_a_header_is_refused():
    with pytest.raises(ValueError, match="not an e-mail address"):
        split_addresses("oncall@example.com\nBcc: someone@elsewhere.example")


@pytest.mark.parametrize("value", HOSTILE)
def test_characters_are_refused_or_sent_as_encoded_query_values(value):
    """A character name is a query value (requests encodes it); a malformed entry is an
    error naming NEOPLE_CHARACTERS."""
    try:
        refs = parse_characters(f"cain:{value}")
    except ValueError as error:
        assert "NEOPLE_CHARACTERS" in str(error) and short(error)
        return
    # a line break separates entries, as a comma does: each is one name, sent encoded
    first = value.splitlines()[0]
    assert refs[0].server_id == "cain" and refs[0].character_name == first.strip()
    with pytest.raises(ValueError, match="NEOPLE_CHARACTERS"):
        NeopleResource(api_key="k", characters=f"{value}:x").character_refs()
