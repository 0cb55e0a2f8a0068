"""The Neople (Dungeon&Fighter) simulator over plain HTTP, and the world behind it."""

from __future__ import annotations

import json
import re
import time
from collections import Counter, defaultdict
from datetime import date, datetime, timedelta

import pytest
import requests
from clocks import FakeClock

from signalbox.simulators.neople import DEFAULT_API_KEY, NeopleFaults, NeopleSimulator
from signalbox.simulators.neople_world import (
    KNOWN_CODES,
    KST,
    RARITIES,
    UNEXPECTED_DATA_KEY,
    NeopleWorld,
)

NOW = datetime(2024, 4, 1, 12, 0, tzinfo=KST)
START, END = datetime(2024, 1, 2, 0, 0), datetime(2024, 3, 31, 23, 59)  # 90 days apart
KEY = {"apikey": DEFAULT_API_KEY}
DATE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d$")
HEX32 = re.compile(r"^[0-9a-f]{32}$")
# the data keys each known code carries, in the API's order
DATA_KEYS = {
    505: [
        "itemId",
        "itemName",
        "itemRarity",
        "channelName",
        "channelNo",
        "dungeonName",
        "mistGear",
    ],
    513: ["itemId", "itemName", "itemRarity", "dungeonName", "mistGear"],
    504: ["itemId", "itemName", "itemRarity", "channelName", "channelNo", "dungeonName"],
    507: ["itemId", "itemName", "itemRarity", "raidName", "mistGear"],
    511: ["itemId", "itemName", "itemRarity"],
    501: ["itemId", "itemName", "itemRarity"],
    210: ["dungeonName", "regionName", "modeName", "hard", "single", "matching"],
    201: ["raidName", "raidPartyName", "modeName", "hard"],
    401: ["itemId", "itemName", "itemRarity", "before", "after", "result", "safe"],
    402: ["itemId", "itemName", "itemRarity", "before", "after", "result", "safe"],
    406: ["itemId", "itemName", "itemRarity", "cardItemId", "cardItemName"],
}


@pytest.fixture(scope="module")
def world() -> NeopleWorld:
    return NeopleWorld(seed=7)


@pytest.fixture(scope="module")
def sim(world):
    with NeopleSimulator(world, now=NOW, rate_limit=100_000) as server:
        yield server


@pytest.fixture
def api(sim):
    sim.now = NOW
    sim.faults = NeopleFaults()
    session = requests.Session()

    def get(path: str, **params):
        return session.get(f"{sim.url}{path}", params={**KEY, **params}, timeout=30)

    return get


def timeline_path(spec) -> str:
    return f"/df/servers/{spec.server_id}/characters/{spec.character_id}/timeline"


def walk(api, spec, **params) -> tuple[list[dict], list[dict]]:
    """Every page of a timeline: (rows, bodies)."""
    bodies = [api(timeline_path(spec), **params).json()]
    while bodies[-1]["timeline"]["next"]:
        token = bodies[-1]["timeline"]["next"]
        bodies.append(api(timeline_path(spec), **params, next=token).json())
    return [row for body in bodies for row in body["timeline"]["rows"]], bodies


def window(start: datetime = START, end: datetime = END) -> dict[str, str]:
    return {"startDate": start.strftime("%Y-%m-%d %H:%M"), "endDate": end.strftime("%Y%m%dT%H%M")}


# --------------------------------------------------------------------------- keys, servers, search


def test_api_key_is_required_and_checked(sim):
    url = f"{sim.url}/df/servers"
    missing = requests.get(url)
    assert missing.status_code == 401 and missing.json()["error"]["code"] == "API000"
    wrong = requests.get(url, params={"apikey": "nope"})
    assert wrong.status_code == 401
    assert wrong.json() == {"error": {"status": 401, "code": "API003", "message": "INVALID_APIKEY"}}
    assert requests.get(url, params=KEY).status_code == 200
    assert requests.get(url, headers={"apikey": DEFAULT_API_KEY}).status_code == 200  # header too


def test_blocked_key(world):
    with NeopleSimulator(world, now=NOW, blocked_keys=["stolen"], api_keys=["ok", "stolen"]) as s:
        blocked = requests.get(f"{s.url}/df/servers", params={"apikey": "stolen"})
        assert blocked.status_code == 403 and blocked.json()["error"]["code"] == "API004"


def test_server_list(api):
    response = api("/df/servers")
    assert response.headers["Content-Type"].startswith("application/json")
    rows = response.json()["rows"]
    assert {"serverId": "cain", "serverName": "카인"} in rows
    assert len(rows) == 8 and all(set(r) == {"serverId", "serverName"} for r in rows)


def test_character_search(api, world):
    spec = world.specs[0]
    exact = api(f"/df/servers/{spec.server_id}/characters", characterName=spec.character_name)
    rows = exact.json()["rows"]
    assert rows == [spec.search_row()]
    assert set(rows[0]) == {
        "serverId", "characterId", "characterName", "level", "jobId", "jobGrowId", "jobName",
        "jobGrowName", "fame",
    }  # fmt: skip
    assert HEX32.match(rows[0]["characterId"]) and HEX32.match(rows[0]["jobGrowId"])
    assert rows[0]["jobGrowName"].startswith("眞 ")
    # a part of the name finds nothing with `match`, something with `full`
    part = spec.character_name[:2]
    assert api("/df/servers/all/characters", characterName=part).json()["rows"] == []
    full = api("/df/servers/all/characters", characterName=part, wordType="full").json()["rows"]
    assert spec.search_row() in full and all(part in r["characterName"] for r in full)
    # servers other than the character's don't list it; `all` does
    other = api("/df/servers/bakal/characters", characterName=spec.character_name).json()
    assert other["rows"] == []
    assert api("/df/servers/all/characters", characterName=spec.character_name).json()["rows"]


def test_search_limit_and_errors():
    world = NeopleWorld(seed=7, characters=400)
    with NeopleSimulator(world, now=NOW) as sim:
        get = lambda path, **p: requests.get(f"{sim.url}{path}", params={**KEY, **p})  # noqa: E731
        common = Counter(ch for spec in world.specs for ch in set(spec.character_name))
        letter = common.most_common(1)[0][0]
        assert common[letter] > 10
        found = get("/df/servers/all/characters", characterName=letter, wordType="full").json()
        assert len(found["rows"]) == 10  # the default limit
        more = get(
            "/df/servers/all/characters", characterName=letter, wordType="full", limit=500
        ).json()
        assert len(more["rows"]) == min(200, common[letter])
        bad_server = get("/df/servers/mars/characters", characterName="x")
        assert bad_server.status_code == 400 and bad_server.json()["error"]["code"] == "DNF000"
        assert get("/df/servers/cain/characters").status_code == 400
        assert get("/df/servers/cain/characters", characterName="x", limit="ten").status_code == 400


def test_character_info_and_not_found(api, world):
    spec = world.specs[1]
    info = api(f"/df/servers/{spec.server_id}/characters/{spec.character_id}").json()
    assert info == spec.profile()
    assert info["adventureName"] and HEX32.match(info["guildId"])
    missing = api(f"/df/servers/cain/characters/{'0' * 32}/timeline")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {"status": 404, "code": "DNF001", "message": "NOT_FOUND_CHARACTER"}
    }
    wrong_server = api(f"/df/servers/bakal/characters/{spec.character_id}/timeline")
    assert wrong_server.status_code == 404
    bad_server = api(f"/df/servers/mars/characters/{spec.character_id}/timeline")
    assert bad_server.status_code == 400 and bad_server.json()["error"]["code"] == "DNF000"
    unknown = api("/df/nothing-here")
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "API900"


# --------------------------------------------------------------------------- timeline shape


def test_timeline_shape(api, world):
    spec = world.specs[0]
    body = api(timeline_path(spec), **window(), limit=100).json()
    profile = {k: v for k, v in body.items() if k != "timeline"}
    assert profile == spec.profile()
    assert list(body)[:9] == [
        "serverId", "characterId", "characterName", "level", "jobId", "jobGrowId", "jobName",
        "jobGrowName", "fame",
    ]  # fmt: skip
    timeline = body["timeline"]
    assert timeline["date"] == {"start": "2024-01-02 00:00", "end": "2024-03-31 23:59"}
    assert isinstance(timeline["next"], str) and len(timeline["next"]) > 20
    rows = timeline["rows"]
    assert len(rows) == 100
    dates = [r["date"] for r in rows]
    assert dates == sorted(dates, reverse=True)  # newest first
    for row in rows:
        assert list(row) == ["code", "name", "date", "data"]
        assert DATE.match(row["date"]) and "2024-01-02 00:00" <= row["date"] <= "2024-03-31 23:59"
        assert row["code"] in KNOWN_CODES and row["name"]
        assert list(row["data"]) == DATA_KEYS[row["code"]]
        if "itemRarity" in row["data"]:
            assert row["data"]["itemRarity"] in RARITIES
            assert HEX32.match(row["data"]["itemId"])


def test_default_limit_and_clamp(api, world):
    spec = world.specs[0]
    assert len(api(timeline_path(spec), **window()).json()["timeline"]["rows"]) == 10
    assert len(api(timeline_path(spec), **window(), limit=1000).json()["timeline"]["rows"]) == 100
    for bad in ("0", "-3", "many"):
        response = api(timeline_path(spec), **window(), limit=bad)
        assert response.status_code == 400 and response.json()["error"]["code"] == "DNF901"


def test_date_params(api, world):
    spec = world.specs[0]
    path = timeline_path(spec)
    dashed = api(path, startDate="2024-03-01 00:00", endDate="2024-03-10 23:59", limit=100)
    compact = api(path, startDate="20240301T0000", endDate="20240310T2359", limit=100)
    assert dashed.json() == compact.json()
    exactly_90 = api(path, startDate="2024-01-01 00:00", endDate="2024-03-31 00:00")
    assert exactly_90.status_code == 200
    for start, end in (
        ("2024-01-01 00:00", "2024-03-31 00:01"),  # 90 days and a minute
        ("2024-03-10 00:00", "2024-03-01 00:00"),  # backwards
        ("2017-09-20 00:00", "2017-10-01 00:00"),  # before the first timeline day
        ("2024/03/01 00:00", "2024-03-10 00:00"),  # neither format
        ("20240301T000", "20240310T0000"),  # three digits of time (a seed's typo)
    ):
        response = api(path, startDate=start, endDate=end)
        assert response.status_code == 400, (start, end)
        assert response.json()["error"] == {
            "status": 400,
            "code": "DNF006",
            "message": "INVALID_TIMELINE_DATE_PARAMS",
        }
    # without dates: the 90 days up to the simulator's clock
    default = api(path).json()["timeline"]["date"]
    assert default == {"start": "2024-01-02 12:00", "end": "2024-04-01 12:00"}


def test_window_ends_are_inclusive(api, world):
    spec = world.specs[0]
    rows = world.timeline(spec.character_id, START, END)
    minute = datetime.strptime(rows[len(rows) // 2]["date"], "%Y-%m-%d %H:%M")
    at = [r for r in rows if r["date"] == rows[len(rows) // 2]["date"]]
    exact = api(timeline_path(spec), **window(minute, minute), limit=100).json()
    assert exact["timeline"]["rows"] == at
    after = api(timeline_path(spec), **window(minute + timedelta(minutes=1), END), limit=100)
    assert all(r["date"] > at[0]["date"] for r in after.json()["timeline"]["rows"])


# --------------------------------------------------------------------------- paging


def test_paging_covers_the_window_once(api, world):
    for spec in world.specs[:4]:
        rows, bodies = walk(api, spec, **window(), limit=100)
        expected = world.timeline(spec.character_id, START, END)
        assert rows == expected and len(rows) > 300
        assert bodies[-1]["timeline"]["next"] is None
        assert all(body["timeline"]["next"] for body in bodies[:-1])
        assert [len(b["timeline"]["rows"]) for b in bodies[:-1]] == [100] * (len(bodies) - 1)


def test_paging_with_small_limit_and_exact_multiple(api, world):
    spec = world.specs[3]
    day = (datetime(2024, 3, 14), datetime(2024, 3, 14, 23, 59))
    expected = world.timeline(spec.character_id, *day)
    assert len(expected) > 10
    rows, _ = walk(api, spec, **window(*day), limit=7)
    assert rows == expected
    # a window whose size is a multiple of the limit ends with next: null, no empty page
    for other in world.specs:
        day_rows = world.timeline(other.character_id, *day)
        if 4 <= len(day_rows) <= 100 and len(day_rows) % 2 == 0:
            break
    else:
        pytest.fail("no character with an even, small day")
    for limit, pages in ((len(day_rows), 1), (len(day_rows) // 2, 2)):
        rows, bodies = walk(api, other, **window(*day), limit=limit)
        assert rows == day_rows and len(bodies) == pages
        assert bodies[-1]["timeline"]["next"] is None


def test_next_token_rules(api, world):
    spec, other = world.specs[0], world.specs[1]
    first = api(timeline_path(spec), **window(), limit=5).json()
    token = first["timeline"]["next"]
    # the other params may be re-sent unchanged, or left out
    again = api(timeline_path(spec), **window(), limit=5, next=token).json()
    bare = api(timeline_path(spec), limit=5, next=token).json()
    assert again == bare and again["timeline"]["rows"] != first["timeline"]["rows"]
    assert again["timeline"]["date"] == first["timeline"]["date"]
    # changed params, another character, or a forged token are refused
    changed = api(timeline_path(spec), startDate="2024-02-01 00:00", endDate="2024-03-01 00:00")
    assert changed.status_code == 200
    for params in (
        {"startDate": "2024-02-01 00:00", "endDate": "2024-03-01 00:00", "next": token},
        {"code": "505", "next": token},
        {"next": token[:-2] + ("00" if token[-2:] != "00" else "11")},
        {"next": "not-a-token"},
    ):
        response = api(timeline_path(spec), **params)
        assert response.status_code == 400, params
        assert response.json()["error"]["code"] == "DNF901"
    assert api(timeline_path(other), next=token).status_code == 400


def test_code_filter(api, world):
    spec = world.specs[0]
    rows, _ = walk(api, spec, **window(), code="505,513", limit=100)
    assert {r["code"] for r in rows} == {505, 513}
    assert rows == world.timeline(spec.character_id, START, END, codes=[505, 513])
    single, _ = walk(api, spec, **window(), code="201", limit=100)
    assert single and {r["code"] for r in single} == {201}
    assert api(timeline_path(spec), **window(), code="999").json()["timeline"]["rows"] == []
    bad = api(timeline_path(spec), **window(), code="505,abc")
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "DNF901"


# --------------------------------------------------------------------------- clock


def test_rows_after_now_are_not_there_yet(sim, api, world):
    spec = world.specs[0]
    today = (datetime(2024, 3, 30), datetime(2024, 3, 30, 23, 59))
    whole = world.timeline(spec.character_id, *today)
    assert len(whole) > 4
    middle = datetime.strptime(whole[len(whole) // 2]["date"], "%Y-%m-%d %H:%M")
    sim.now = middle.replace(tzinfo=KST)
    seen = walk(api, spec, **window(*today), limit=100)[0]
    assert seen == [r for r in whole if r["date"] <= whole[len(whole) // 2]["date"]]
    assert len(seen) < len(whole)
    response = api(timeline_path(spec), **window(*today))
    assert response.headers["Date"] == "Sat, 30 Mar 2024 " + (
        (middle - timedelta(hours=9)).strftime("%H:%M:00 GMT")
    )
    sim.advance(timedelta(days=1))
    assert walk(api, spec, **window(*today), limit=100)[0] == whole


def test_live_clock_follows_wall_time(world):
    sim = NeopleSimulator(world, live=True)
    before = sim.now
    assert abs((datetime.now(KST) - before).total_seconds()) < 120
    sim.advance(timedelta(days=-3))
    assert abs((datetime.now(KST) - sim.now) - timedelta(days=3)) < timedelta(minutes=2)


# --------------------------------------------------------------------------- the world


def test_activity_is_realistic(world):
    spec = world.specs[0]
    rows = world.timeline(spec.character_id, START, END)
    per_day = Counter(r["date"][:10] for r in rows)
    assert len(per_day) < 90  # some days without play
    assert min(per_day.values()) >= 1 and max(per_day.values()) > 3 * min(per_day.values())
    hours = Counter(int(r["date"][11:13]) for r in rows)
    assert sum(hours[h] for h in range(18, 24)) > 2 * sum(hours[h] for h in range(3, 12))
    codes = Counter(r["code"] for r in rows)
    assert set(codes) == KNOWN_CODES and codes[505] == max(codes.values())
    rarity = Counter(r["data"]["itemRarity"] for r in rows if r["code"] == 505)
    assert rarity["태초"] < rarity["에픽"] < rarity["레어"] and set(rarity) == set(RARITIES)
    # a dedicated player plays more than a casual one
    casual = world.timeline(world.specs[7].character_id, START, END)
    assert len(casual) * 3 < len(rows)


def test_weekday_seasonality():
    world = NeopleWorld(seed=11, characters=3000)
    by_weekday = defaultdict(list)
    for offset in range(56):
        day = date(2024, 1, 1) + timedelta(days=offset)
        by_weekday[day.weekday()].append(world.count_rows(day))
    mean = {d: sum(v) / len(v) for d, v in by_weekday.items()}
    assert mean[3] > 1.3 * mean[1]  # Thursday's reset beats Tuesday
    assert mean[5] > 1.3 * mean[1] and mean[6] > 1.2 * mean[2]


def test_characters_before_creation_have_nothing(world):
    spec = world.specs[7]  # created 2024-01-20
    early = world.timeline(spec.character_id, datetime(2024, 1, 1), datetime(2024, 1, 19, 23, 59))
    assert early == []


def test_determinism_and_independence():
    a, b = NeopleWorld(seed=3), NeopleWorld(seed=3)
    cid = a.specs[2].character_id
    assert a.timeline(cid, START, END) == b.timeline(cid, START, END)
    assert NeopleWorld(seed=4).timeline(cid, START, END) != a.timeline(cid, START, END)
    # a character's timeline doesn't depend on who else is simulated or what was asked first
    big = NeopleWorld(seed=3, characters=500)
    assert big.specs[:8] == a.specs
    big.timeline(big.specs[300].character_id, START, END)
    assert big.timeline(cid, START, END) == a.timeline(cid, START, END)
    # a longer generated list extends a shorter one
    assert NeopleWorld(seed=3, characters=40).specs == big.specs[:40]


def test_two_simulators_serve_identical_bytes(world):
    bodies = []
    for _ in range(2):
        with NeopleSimulator(NeopleWorld(seed=7), now=NOW) as sim:
            spec = sim.world.specs[3]
            url = f"{sim.url}{timeline_path(spec)}"
            bodies.append(requests.get(url, params={**KEY, **window(), "limit": 100}).content)
    assert bodies[0] == bodies[1]


def test_custom_characters():
    from signalbox.simulators.neople_world import CharacterSpec

    specs = [
        CharacterSpec("hilder", "테스트용", "아처", "헌터", 115, 50_000, "시험단", None, 0.9),
        CharacterSpec("anton", "둘째", "총검사", "요원", 100, 9_000, "시험단", "길드", 0.4),
    ]
    world = NeopleWorld(seed=1, characters=specs)
    assert [c["characterName"] for c in world.characters()] == ["테스트용", "둘째"]
    assert world.characters()[1]["jobGrowName"] == "요원"  # no 眞 below level 110
    assert world.timeline(specs[0].character_id, START, END)
    with pytest.raises(ValueError):
        CharacterSpec("mars", "x", "아처", "헌터")
    with pytest.raises(ValueError):
        NeopleWorld(characters=[specs[0], specs[0]])


# --------------------------------------------------------------------------- bulk days


def test_day_columns_match_the_api():
    world = NeopleWorld(seed=5, characters=300)
    day = date(2024, 3, 14)
    columns = world.day_columns(day)
    assert set(columns) == {"serverId", "characterId", "code", "name", "date", "data"}
    n = len(columns["data"])
    assert n == world.count_rows(day) and all(len(v) == n for v in columns.values())
    by_character = defaultdict(list)
    for i, character_id in enumerate(columns["characterId"]):
        by_character[character_id].append(i)
    for spec in world.specs[::37]:
        expected = world.timeline(
            spec.character_id, datetime(2024, 3, 14), datetime(2024, 3, 14, 23, 59)
        )
        got = [
            {
                "code": columns["code"][i],
                "name": columns["name"][i],
                "date": columns["date"][i],
                "data": json.loads(columns["data"][i]),
            }
            for i in by_character[spec.character_id]
        ]
        assert got == expected
    dicts = list(world.rows_for_day(day))
    assert len(dicts) == n
    assert dicts[5] == {
        "serverId": columns["serverId"][5],
        "characterId": columns["characterId"][5],
        "code": columns["code"][5],
        "name": columns["name"][5],
        "date": columns["date"][5],
        "data": json.loads(columns["data"][5]),
    }
    subset = world.day_columns(day, character_ids=[world.specs[10].character_id], limit=3)
    assert len(subset["data"]) == min(3, len(by_character[world.specs[10].character_id]))


def test_sized_for_a_benchmark_day_is_fast():
    day = date(2024, 3, 14)
    world = NeopleWorld.sized_for(200_000, day, seed=9)
    started = time.perf_counter()
    columns = world.day_columns(day, limit=200_000)
    elapsed = time.perf_counter() - started
    assert len(columns["data"]) == 200_000
    assert elapsed < 5.0, f"200k rows took {elapsed:.1f}s"  # ~0.4 s unloaded


# --------------------------------------------------------------------------- limits and faults


def test_rate_limit_per_key(world):
    with NeopleSimulator(world, now=NOW, api_keys=["a", "b"], rate_limit=3) as sim:
        url = f"{sim.url}/df/servers"
        assert [requests.get(url, params={"apikey": "a"}).status_code for _ in range(3)] == [
            200
        ] * 3
        limited = requests.get(url, params={"apikey": "a"})
        assert limited.status_code == 429
        assert limited.json()["error"]["code"] == "API002"
        assert 1 <= int(limited.headers["Retry-After"]) <= 60
        assert requests.get(url, params={"apikey": "b"}).status_code == 200  # per key
        assert requests.get(url, params={"apikey": "bad"}).status_code == 401  # not counted


def test_rate_limit_window_slides(world):
    with NeopleSimulator(world, now=NOW, rate_limit=2, rate_window_seconds=1.0) as sim:
        sim.rate_limit.clock = clock = FakeClock()
        url = f"{sim.url}/df/servers"
        assert [requests.get(url, params=KEY).status_code for _ in range(3)] == [200, 200, 429]
        clock.advance(1.05)
        assert requests.get(url, params=KEY).status_code == 200


def test_maintenance(api, sim, world):
    sim.faults.maintenance = True
    response = api(timeline_path(world.specs[0]), **window())
    assert response.status_code == 503
    assert response.json() == {
        "error": {"status": 503, "code": "DNF980", "message": "SYSTEM_INSPECT"}
    }
    assert api("/df/servers").status_code == 503
    sim.faults.maintenance = False
    assert api("/df/servers").status_code == 200


def test_base_faults_speak_neople(api, sim, world):
    path = timeline_path(world.specs[0])
    sim.faults.fail_next = [500, 429, 503, 502]
    error = api(path, **window())
    assert error.status_code == 500 and error.json()["error"]["code"] == "DNF999"
    limited = api(path, **window())
    assert limited.status_code == 429 and limited.json()["error"]["code"] == "API002"
    assert limited.headers["Retry-After"] == "1"
    inspect = api(path, **window())
    assert inspect.status_code == 503 and inspect.json()["error"]["code"] == "DNF980"
    gateway = api(path, **window())
    assert gateway.status_code == 502 and gateway.headers["Content-Type"] == "text/html"
    assert api(path, **window()).status_code == 200
    sim.faults.truncate_next = 1
    truncated = api(path, **window(), limit=100)
    with pytest.raises(ValueError):
        truncated.json()
    assert len(api(path, **window(), limit=100).json()["timeline"]["rows"]) == 100


def test_error_rate_and_slow_answers(api, sim):
    sim.faults.error_rate = 0.5
    statuses = Counter(api("/df/servers").status_code for _ in range(40))
    assert statuses[200] > 5 and statuses[503] > 5
    sim.faults.error_rate = 0.0
    sim.faults.slow_seconds = 0.4
    started = time.perf_counter()
    assert api("/df/servers").status_code == 200
    assert time.perf_counter() - started >= 0.4
    with pytest.raises(requests.Timeout):
        requests.get(f"{sim.url}/df/servers", params=KEY, timeout=0.1)
    sim.faults.slow_seconds = 0.0


def test_unknown_codes(api, sim, world):
    spec = world.specs[0]
    clean, _ = walk(api, spec, **window(), limit=100)
    sim.faults.unknown_codes = True
    drifted, _ = walk(api, spec, **window(), limit=100)
    assert drifted == walk(api, spec, **window(), limit=100)[0]  # deterministic
    unknown = [r for r in drifted if r["code"] not in KNOWN_CODES]
    assert unknown and all(DATE.match(r["date"]) and r["name"] for r in unknown)
    assert any(UNEXPECTED_DATA_KEY in r["data"] for r in drifted if r["code"] in KNOWN_CODES)
    # every clean row is still there, only with the odd extra key
    known = [
        {**r, "data": {k: v for k, v in r["data"].items() if k != UNEXPECTED_DATA_KEY}}
        for r in drifted
        if r["code"] in KNOWN_CODES
    ]
    assert known == clean
    dates = [r["date"] for r in drifted]
    assert dates == sorted(dates, reverse=True)
    assert drifted == world.timeline(spec.character_id, START, END, unknown_codes=True)
    # a code filter still works and finds the unknown code when asked
    code = unknown[0]["code"]
    filtered, _ = walk(api, spec, **window(), code=str(code), limit=100)
    assert filtered and {r["code"] for r in filtered} == {code}


def test_missing_fields(api, sim, world):
    spec = world.specs[0]
    clean, _ = walk(api, spec, **window(), limit=100)
    sim.faults.missing_fields = True
    broken, _ = walk(api, spec, **window(), limit=100)
    assert len(broken) == len(clean)
    lacking = [r for r in broken if "date" not in r or "code" not in r]
    assert 0 < len(lacking) < len(broken) // 10
    assert any("date" not in r for r in lacking) and any("code" not in r for r in lacking)
    assert broken == world.timeline(spec.character_id, START, END, missing_fields=True)
