"""A deterministic Dungeon&Fighter world: characters and their timelines from a seed.

Every random quantity is a hash of (seed, character, KST day, event, field) rather than a
draw from a sequential RNG, so any (character, day) comes out the same whichever other
characters or days are asked for, and a whole day for 100k characters is generated at
once with numpy (a million rows in under 2 s, see `day_columns`).

A character plays on a day with a probability set by its dedication and the weekday
(Thursday's weekly reset and weekends are busier), in one to three evening-heavy
sessions; each event is a timeline row: item drops with rarity (커먼 ... 태초), dungeon
and raid clears, reinforcement, amplification and enchants. Days before a character was
created are empty.

Timeline codes: 201, 504, 505, 507, 511 and 513 and their `data` keys follow public
client samples of the real API; 210, 401, 402, 406 and 501 are this simulator's own
stand-ins for the other kinds of event (see API_CONTRACTS.md 2).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any

import numpy as np

KST = timezone(timedelta(hours=9), "KST")
EARLIEST = datetime(2017, 9, 21, 0, 0)  # the API's first timeline minute (KST, naive)
MAX_SPAN = timedelta(days=90)
RARITIES = ("커먼", "언커먼", "레어", "유니크", "레전더리", "에픽", "태초")

SERVERS = (
    ("anton", "안톤"),
    ("bakal", "바칼"),
    ("cain", "카인"),
    ("casillas", "카시야스"),
    ("diregie", "디레지에"),
    ("hilder", "힐더"),
    ("prey", "프레이"),
    ("siroco", "시로코"),
)
SERVER_NAMES = dict(SERVERS)

JOBS: dict[str, tuple[str, ...]] = {
    "귀검사(남)": ("웨펀마스터", "소울브링어", "버서커", "아수라", "검귀"),
    "귀검사(여)": ("소드마스터", "다크템플러", "데몬슬레이어", "베가본드", "블레이드"),
    "격투가(여)": ("넨마스터", "스트라이커", "스트리트파이터", "그래플러"),
    "격투가(남)": ("넨마스터", "스트라이커", "스트리트파이터", "그래플러"),
    "거너(남)": ("레인저", "런처", "메카닉", "스핏파이어", "어썰트"),
    "거너(여)": ("레인저", "런처", "메카닉", "스핏파이어", "패라메딕"),
    "마법사(여)": ("엘레멘탈마스터", "소환사", "배틀메이지", "마도학자", "인챈트리스"),
    "마법사(남)": ("엘레멘탈 바머", "빙결사", "블러드 메이지", "스위프트 마스터", "디멘션워커"),
    "프리스트(남)": ("크루세이더", "인파이터", "퇴마사", "어벤저"),
    "프리스트(여)": ("크루세이더", "이단심판관", "무녀", "미스트리스"),
    "도적": ("로그", "사령술사", "쿠노이치", "섀도우댄서"),
    "나이트": ("엘븐나이트", "카오스", "팔라딘", "드래곤나이트"),
    "마창사": ("뱅가드", "듀얼리스트", "드래고니안 랜서", "다크 랜서"),
    "총검사": ("히트맨", "요원", "트러블 슈터", "스페셜리스트"),
    "아처": ("뮤즈", "트래블러", "헌터", "비질란테", "키메라"),
}

# --------------------------------------------------------------------------- event catalog

ITEMS: dict[str, tuple[str, ...]] = {
    "커먼": ("무색 큐브 조각", "하급 원소결정", "빛나는 가죽 조각", "녹슨 철 조각", "질긴 면포"),
    "언커먼": ("강철 조각", "정령의 숨결", "보석 원석", "모험가의 물약", "투박한 가죽 장갑"),
    "레어": ("고급 원소결정", "마력의 결정체", "단단한 강철 투구", "봉인된 정수", "골드 주머니"),
    "유니크": (
        "형상화된 요기의 단서",
        "찬란한 붉은빛 엠블렘[지능]",
        "찬란한 노란빛 엠블렘[힘]",
        "고대 지식의 파편",
        "정제된 이계의 마력",
    ),
    "레전더리": (
        "오버클럭 하트",
        "수습 여우의 매혹 반지",
        "은은한 마력의 영역 반지",
        "화려한 황금향의 축복 - 목걸이",
        "심연의 편린 팔찌",
        "검은 별의 귀걸이",
    ),
    "에픽": (
        "잠식 : 칠흑의 정화 상의",
        "욕망 : 잃어버린 영혼",
        "전장의 매",
        "구속의 퀴스",
        "눈부신 영광",
        "대자연의 숨결 벨트",
        "흑화된 꽃의 반지",
        "결전의 대검 - 웨펀마스터",
    ),
    "태초": ("리리스, 디 이블", "창조의 빛 : 시작", "태초의 심장", "근원의 검 - 아스테라"),
}
# (dungeon, the region its channel is in)
DUNGEONS = (
    ("종말의 숭배자", "마계"),
    ("침묵의 성소", "천계"),
    ("모독 : 일렁이는 군도", "어둑섬"),
    ("달이 잠긴 호수", "베히모스"),
    ("애쥬어 메인", "바하이트"),
    ("솔리다리스", "그란플로리스"),
    ("검은 신전", "할렘"),
    ("고통의 지하실", "할렘"),
    ("이면 경계", "기계혁명"),
    ("죽음의 여신전", "천계"),
)
RAIDS = ("안개신 레이드 : 무", "기계 혁명 : 바칼 레이드", "이내 황혼전", "아스라한 : 무의 장막")
RAID_PARTIES = ("1 파티", "2 파티", "3 파티", "4 파티")
RAID_MODES = ("노말", "하드", "매칭")
CLEAR_MODES = ("일반", "상급 던전", "지옥 파티")
ENCHANT_CARDS = (
    "숙련된 용병단장 카드",
    "타락한 무희 카드",
    "어둠 속 조력자 카드",
    "영원의 파수꾼 카드",
)


@dataclass(frozen=True)
class TimelineCode:
    code: int
    name: str
    kind: str  # which `data` keys the row carries
    weight: float  # share of all events
    rarity_weights: tuple[float, ...] = ()  # over RARITIES, for kinds carrying an item


CODES = (
    TimelineCode(505, "아이템 획득(던전 드랍)", "drop", 0.33, (18, 22, 25, 15, 15, 4.5, 0.5)),
    TimelineCode(513, "아이템 획득(던전 카드 보상)", "card", 0.15, (0, 0, 20, 30, 40, 9, 1)),
    TimelineCode(504, "아이템 획득(항아리)", "pot", 0.06, (0, 0, 0, 40, 45, 14, 1)),
    TimelineCode(507, "아이템 획득(레이드 카드 보상)", "raid_card", 0.03, (0, 0, 0, 0, 30, 60, 10)),
    TimelineCode(511, "아이템 획득(업그레이드)", "item", 0.04, (0, 0, 0, 0, 0, 90, 10)),
    TimelineCode(501, "아이템 획득(NPC 교환)", "item", 0.04, (30, 30, 20, 20, 0, 0, 0)),
    TimelineCode(210, "던전 클리어", "clear", 0.19, ()),
    TimelineCode(201, "레이드", "raid", 0.04, ()),
    TimelineCode(401, "아이템 강화", "reinforce", 0.06, (0, 0, 0, 0, 20, 70, 10)),
    TimelineCode(402, "아이템 증폭", "reinforce", 0.03, (0, 0, 0, 0, 20, 70, 10)),
    TimelineCode(406, "아이템 마법부여", "enchant", 0.03, (0, 0, 0, 0, 20, 70, 10)),
)
CODE_NAMES = {c.code: c.name for c in CODES}
KNOWN_CODES = frozenset(CODE_NAMES)
# injected by the unknown_codes fault: codes no client has heard of, with data keys to match
UNKNOWN_CODES = (
    (530, "아이템 획득(시즌 패스 보상)"),
    (950, "모험단 안전 이동"),
)
UNEXPECTED_DATA_KEY = "upgradeLevel"  # added to some known rows by the unknown_codes fault

# arrival curve over KST hours (evenings are the peak) and weekday factors, Monday first
_HOUR_WEIGHTS = np.array(
    [
        3.0, 1.8, 1.0, 0.5, 0.3, 0.3, 0.4, 0.6, 0.9, 1.2, 1.6, 2.0,
        2.6, 2.8, 2.8, 2.9, 3.2, 3.6, 4.5, 5.6, 6.6, 7.2, 6.8, 5.0,
    ]
)  # fmt: skip
_HOUR_CUM = np.cumsum(_HOUR_WEIGHTS) / _HOUR_WEIGHTS.sum()
_PLAY_FACTOR = np.array([0.85, 0.8, 0.85, 1.12, 1.0, 1.2, 1.18])
_VOLUME_FACTOR = np.array([0.9, 0.85, 0.9, 1.35, 1.05, 1.35, 1.25])

# field numbers of the per-day and per-event hashes
_F_PLAY, _F_Z1, _F_Z2, _F_SESS2, _F_SESS3 = 1, 2, 3, 4, 5
_F_START, _F_START_MIN, _F_LENGTH = 6, 9, 12  # three sessions each

# flag bits of an event
HARD, SINGLE, MIST, SUCCESS, SAFE, MATCHING = 1, 2, 4, 8, 16, 32

_U64 = np.uint64
_GOLDEN = _U64(0x9E3779B97F4A7C15)
_M1 = _U64(0xBF58476D1CE4E5B9)
_M2 = _U64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = _U64(30), _U64(27), _U64(31), _U64(11)
_FIELD = [_U64((f * 0xD6E8FEB86659FD93 + 0x632BE59BD9B4E019) % 2**64) for f in range(32)]


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array: a stable, well-spread hash."""
    with np.errstate(over="ignore"):
        x = x + _GOLDEN
        x = (x ^ (x >> _S30)) * _M1
        x = (x ^ (x >> _S27)) * _M2
        return x ^ (x >> _S31)


def _unit(h: np.ndarray, field_no: int) -> np.ndarray:
    """A uniform [0, 1) float per hash for one field."""
    with np.errstate(over="ignore"):
        return (_mix(h + _FIELD[field_no]) >> _S11).astype(np.float64) * (1.0 / 2**53)


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def _int_hash(*parts: Any) -> int:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little")


def kst_now() -> datetime:
    return datetime.now(KST).replace(second=0, microsecond=0)


def to_kst_minute(value: datetime) -> datetime:
    """An aware instant, or a naive KST wall time, as a naive KST minute."""
    if value.tzinfo is not None:
        value = value.astimezone(KST).replace(tzinfo=None)
    return value.replace(second=0, microsecond=0)


def minute_index(value: datetime) -> int:
    """Minutes since 0001-01-01 00:00 KST: the world's clock unit."""
    value = to_kst_minute(value)
    return value.toordinal() * 1440 + value.hour * 60 + value.minute


_HHMM = [f"{h:02d}:{m:02d}" for h in range(24) for m in range(60)]


def format_minute(index: int) -> str:
    """`YYYY-MM-DD HH:MM`, the API's date format, for a minute index."""
    day, minute = divmod(index, 1440)
    return f"{date.fromordinal(day).isoformat()} {_HHMM[minute]}"


# --------------------------------------------------------------------------- characters


@dataclass(frozen=True)
class CharacterSpec:
    """A character to simulate; ids derive from (server, name) when not given."""

    server_id: str
    character_name: str
    job_name: str
    job_grow: str  # the base growth; level >= 110 shows it as "眞 <grow>"
    level: int = 115
    fame: int = 60_000
    adventure_name: str = ""
    guild_name: str | None = None
    dedication: float = 0.6  # 0..1: how often and how much the character plays
    created: date = date(2020, 1, 9)
    character_id: str = field(default="")

    def __post_init__(self):
        if self.server_id not in SERVER_NAMES:
            raise ValueError(f"unknown serverId {self.server_id!r}")
        if self.job_name not in JOBS or self.job_grow not in JOBS[self.job_name]:
            raise ValueError(f"unknown job {self.job_name!r} / {self.job_grow!r}")
        if not self.character_id:
            object.__setattr__(
                self, "character_id", _md5(f"character:{self.server_id}:{self.character_name}")
            )

    @property
    def job_id(self) -> str:
        return _md5(f"job:{self.job_name}")

    @property
    def job_grow_id(self) -> str:
        return _md5(f"jobgrow:{self.job_name}:{self.job_grow}")

    @property
    def job_grow_name(self) -> str:
        return f"眞 {self.job_grow}" if self.level >= 110 else self.job_grow

    @property
    def guild_id(self) -> str | None:
        return _md5(f"guild:{self.server_id}:{self.guild_name}") if self.guild_name else None

    def search_row(self) -> dict[str, Any]:
        """The character as the search endpoint lists it."""
        return {
            "serverId": self.server_id,
            "characterId": self.character_id,
            "characterName": self.character_name,
            "level": self.level,
            "jobId": self.job_id,
            "jobGrowId": self.job_grow_id,
            "jobName": self.job_name,
            "jobGrowName": self.job_grow_name,
            "fame": self.fame,
        }

    def profile(self) -> dict[str, Any]:
        """The character fields heading a timeline response."""
        return {
            **self.search_row(),
            "adventureName": self.adventure_name,
            "guildId": self.guild_id,
            "guildName": self.guild_name,
        }


DEFAULT_CHARACTERS = (
    CharacterSpec(
        "cain", "검은달빛", "귀검사(남)", "웨펀마스터", 115, 78412, "새벽모험단", "카인의별", 0.95,
        date(2018, 3, 2),
    ),
    CharacterSpec(
        "cain", "하늘별사냥꾼", "거너(여)", "레인저", 115, 61230, "새벽모험단", "카인의별", 0.7,
        date(2019, 7, 18),
    ),
    CharacterSpec(
        "cain", "유키유설", "마법사(여)", "엘레멘탈마스터", 115, 52870, "눈꽃여행단", None, 0.5,
        date(2021, 1, 5),
    ),
    CharacterSpec(
        "siroco", "붉은여우", "격투가(여)", "넨마스터", 115, 83413, "영정은날막지못해",
        "SBH마스터즈", 0.85, date(2017, 12, 24),
    ),
    CharacterSpec(
        "siroco", "은빛방패", "나이트", "팔라딘", 113, 41002, "영정은날막지못해", "SBH마스터즈",
        0.3, date(2022, 4, 1),
    ),
    CharacterSpec(
        "siroco", "바람의노래", "아처", "뮤즈", 110, 30560, "바람모험단", None, 0.2,
        date(2023, 8, 10),
    ),
    CharacterSpec(
        "prey", "새벽검객", "귀검사(여)", "소드마스터", 115, 66840, "프레이기사단", "새벽길드",
        0.6, date(2020, 9, 3),
    ),
    CharacterSpec(
        "prey", "작은도적", "도적", "로그", 105, 12450, "프레이기사단", None, 0.1,
        date(2024, 1, 20),
    ),
)  # fmt: skip

_SYLLABLES = tuple(
    "검은달빛별하늘바람불꽃눈비용새꽃구름강산밤낮해숲봄여름가을겨울칼창활방패왕비단은금옥"
    "푸른붉흰작큰늑대여우곰범매까치사슴나비"
)
_ADVENTURE_SUFFIX = ("모험단", "원정대", "여행단", "기사단", "탐험대")
_GUILD_SUFFIX = ("길드", "연합", "클랜", "가문")


def generated_characters(count: int, seed: int, skip: int = 0) -> list[CharacterSpec]:
    """`count` characters after the first `skip`: each depends only on (seed, its index)
    and the names before it (kept unique per server), so a longer list extends a shorter.
    """
    servers = [s for s, _ in SERVERS]
    jobs = list(JOBS)
    taken: set[tuple[str, str]] = {(c.server_id, c.character_name) for c in DEFAULT_CHARACTERS}
    out: list[CharacterSpec] = []
    for i in range(skip + count):
        h = _int_hash("neople-character", seed, i)
        server = servers[h % len(servers)]
        h //= len(servers)
        length = 2 + h % 4
        h //= 4
        letters = []
        for _ in range(length):
            letters.append(_SYLLABLES[h % len(_SYLLABLES)])
            h //= len(_SYLLABLES)
        name = "".join(letters)
        suffix = 0
        while (server, name if not suffix else f"{name}{suffix}") in taken:
            suffix += 1
        if suffix:
            name = f"{name}{suffix}"
        taken.add((server, name))
        if i < skip:
            continue
        h2 = _int_hash("neople-character-traits", seed, i)
        job = jobs[h2 % len(jobs)]
        h2 //= len(jobs)
        grows = JOBS[job]
        grow = grows[h2 % len(grows)]
        h2 //= len(grows)
        dedication = 0.05 + (h2 % 1000) / 1000 * 0.95
        h2 //= 1000
        level = 115 if dedication > 0.35 else (110, 112, 113, 115, 105, 100)[h2 % 6]
        h2 //= 6
        fame = int(10_000 + dedication * 75_000 + h2 % 5_000)
        h2 //= 5_000
        family = h2 % 5_000
        h2 //= 5_000
        adventure = f"{letters[0]}{letters[-1]}{_ADVENTURE_SUFFIX[family % 5]}{family}"
        guild = None if h2 % 3 == 0 else f"{letters[-1]}{_GUILD_SUFFIX[family % 4]}{family % 97}"
        h2 //= 3
        created = date(2017, 10, 1) + timedelta(days=int(h2 % 2400))
        out.append(
            CharacterSpec(
                server, name, job, grow, level, fame, adventure, guild, dedication, created
            )
        )
    return out


# --------------------------------------------------------------------------- events

# an event as cached per (character, day): the row's sort key and what its payload needs
# (minute index, j, code index, item, dungeon, channel no, raid, party, mode, flags, before,
# card); j orders events within a minute
Event = tuple[int, int, int, int, int, int, int, int, int, int, int, int]
# a window entry: (minute index, j, timeline code, event or None for an injected unknown row)
Entry = tuple[int, int, int, Event | None]


@dataclass
class _Events:
    """Columns of generated events, sorted by (group, minute desc, j desc)."""

    group: np.ndarray
    j: np.ndarray
    minute: np.ndarray  # 0..1439 within the group's day
    code: np.ndarray  # index into CODES
    item: np.ndarray  # index into ITEM_TABLE
    dungeon: np.ndarray
    channel_no: np.ndarray
    raid: np.ndarray
    party: np.ndarray
    mode: np.ndarray
    flags: np.ndarray
    before: np.ndarray
    card: np.ndarray
    counts: np.ndarray  # events per group

    def __len__(self) -> int:
        return len(self.group)

    def take(self, order: np.ndarray) -> None:
        for name in (
            "group", "j", "minute", "code", "item", "dungeon", "channel_no", "raid", "party",
            "mode", "flags", "before", "card",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name)[order])


ITEM_TABLE = tuple((rarity, name) for rarity in RARITIES for name in ITEMS[rarity])
_RARITY_OFFSET = np.cumsum([0] + [len(ITEMS[r]) for r in RARITIES])[:-1]
_RARITY_SIZE = np.array([len(ITEMS[r]) for r in RARITIES])
_CODE_CUM = np.cumsum([c.weight for c in CODES]) / sum(c.weight for c in CODES)
_RARITY_CUM = np.array(
    [
        np.cumsum(c.rarity_weights) / sum(c.rarity_weights)
        if c.rarity_weights
        else np.linspace(1 / 7, 1, 7)
        for c in CODES
    ]
)
_CODE_NUMBERS = np.array([c.code for c in CODES])
_LANE_UNITS = (np.arange(65536) + 0.5) / 65536
_CODE_TABLE = np.minimum(np.searchsorted(_CODE_CUM, _LANE_UNITS, side="right"), len(CODES) - 1)
_RARITY_TABLE = np.minimum(
    np.stack([np.searchsorted(cum, _LANE_UNITS, side="right") for cum in _RARITY_CUM]),
    len(RARITIES) - 1,
)
_CHANNEL_TABLE = 1 + (_LANE_UNITS**2 * 40).astype(np.int64)  # low channels are busier
_MASK16 = _U64(0xFFFF)
_SHIFTS = [_U64(16 * k) for k in range(4)]


def _lanes(h: np.ndarray) -> list[np.ndarray]:
    """The four 16-bit lanes of a hash array, as int64 in 0..65535."""
    return [((h >> shift) & _MASK16).astype(np.int64) for shift in _SHIFTS]


class NeopleWorld:
    """The simulated game. Thread-safe; every method is deterministic given the seed."""

    def __init__(
        self,
        seed: int = 7,
        characters: int | Sequence[CharacterSpec] = 8,
        activity: float = 1.0,
        cache_days: int = 8192,
    ):
        """`characters`: a count (the eight defaults, then generated ones) or the specs.
        `activity` scales how many events a playing character has per day."""
        self.seed = seed
        self.activity = activity
        if isinstance(characters, int):
            if characters < 1:
                raise ValueError(f"characters must be at least 1: {characters}")
            specs = list(DEFAULT_CHARACTERS[:characters])
            specs += generated_characters(characters - len(specs), seed)
        else:
            specs = list(characters)
            if not specs:
                raise ValueError("characters must not be empty")
        ids = [c.character_id for c in specs]
        if len(set(ids)) != len(ids):
            raise ValueError("character ids must be unique")
        self.specs: list[CharacterSpec] = specs
        self._index = {c.character_id: i for i, c in enumerate(specs)}
        self._keys = np.array(
            [_int_hash("neople-key", seed, c.character_id) for c in specs], dtype=np.uint64
        )
        self._dedication = np.array([c.dedication for c in specs])
        self._created = np.array([c.created.toordinal() for c in specs], dtype=np.int64)
        self._lock = threading.Lock()
        self._cache: OrderedDict[tuple[int, int], list[Event]] = OrderedDict()
        self._cache_days = cache_days

    @classmethod
    def sized_for(cls, rows: int, day: date, seed: int = 7, **kwargs) -> NeopleWorld:
        """A world whose `day` has at least `rows` timeline rows (for benchmarks)."""
        probe = cls(seed, characters=2000, **kwargs)
        per_character = max(probe.count_rows(day) / 2000, 0.5)
        count = int(rows / per_character * 1.02) + 10
        while True:
            world = cls(seed, characters=count, **kwargs)
            found = world.count_rows(day)
            if found >= rows:
                return world
            count = int(count * rows / max(found, 1) * 1.01) + 10

    # -- characters

    def characters(self) -> list[dict[str, Any]]:
        """Every character's profile (search fields + adventure and guild)."""
        return [c.profile() for c in self.specs]

    def character(self, character_id: str) -> CharacterSpec | None:
        index = self._index.get(character_id)
        return None if index is None else self.specs[index]

    def search(
        self,
        server_id: str,
        name: str,
        word_type: str = "match",
        job_id: str | None = None,
        job_grow_id: str | None = None,
    ) -> list[CharacterSpec]:
        """The character search: exact name (`match`) or a substring (`full`)."""
        found = []
        for spec in self.specs:
            if server_id != "all" and spec.server_id != server_id:
                continue
            if word_type == "full":
                if name not in spec.character_name:
                    continue
            elif spec.character_name != name:
                continue
            if job_id and spec.job_id != job_id:
                continue
            if job_grow_id and spec.job_grow_id != job_grow_id:
                continue
            found.append(spec)
        return found

    # -- generation

    def _plan(self, chars: np.ndarray, days: np.ndarray):
        """Per (character, day) group: its hash, event count and up to three sessions."""
        with np.errstate(over="ignore"):
            g = _mix(self._keys[chars] ^ (days.astype(np.uint64) * _U64(0x9FB21C651E98DF25)))
        weekday = (days - 1) % 7
        dedication = self._dedication[chars]
        p_play = np.minimum((0.3 + 0.6 * dedication) * _PLAY_FACTOR[weekday], 0.97)
        plays = (_unit(g, _F_PLAY) < p_play) & (days >= self._created[chars])
        z = np.sqrt(-2.0 * np.log1p(-_unit(g, _F_Z1))) * np.cos(2 * np.pi * _unit(g, _F_Z2))
        mean = (5.0 + 40.0 * dedication) * _VOLUME_FACTOR[weekday] * self.activity
        counts = np.where(plays, np.clip(np.rint(mean * np.exp(0.5 * z - 0.125)), 1, 400), 0)
        return g, counts.astype(np.int64)

    def _generate(self, chars: np.ndarray, days: np.ndarray) -> _Events:
        """Events for each (character index, day ordinal) group, vectorised: each field is
        a 16-bit lane of a per-event hash, mapped through a lookup table."""
        chars = np.asarray(chars, dtype=np.int64)
        days = np.asarray(days, dtype=np.int64)
        g, counts = self._plan(chars, days)
        sessions = 1 + (_unit(g, _F_SESS2) < 0.45) + (_unit(g, _F_SESS3) < 0.15)
        starts = np.stack(
            [
                np.searchsorted(_HOUR_CUM, _unit(g, _F_START + s)) * 60
                + (_unit(g, _F_START_MIN + s) * 60).astype(np.int64)
                for s in range(3)
            ],
            axis=1,
        )
        lengths = np.stack(
            [20 + (_unit(g, _F_LENGTH + s) * 220).astype(np.int64) for s in range(3)], axis=1
        )
        total = int(counts.sum())
        group = np.repeat(np.arange(len(chars)), counts)
        offsets = np.cumsum(counts) - counts
        j = np.arange(total, dtype=np.int64) - np.repeat(offsets, counts)
        with np.errstate(over="ignore"):
            h1 = _mix(g[group] + (j.astype(np.uint64) + _U64(1)) * _U64(0xC2B2AE3D27D4EB4F))
        h2 = _mix(h1 ^ _FIELD[1])
        h3 = _mix(h1 ^ _FIELD[2])
        session_lane, minute_lane, code_lane, rarity_lane = _lanes(h1)
        item_lane, dungeon_lane, channel_lane, raid_lane = _lanes(h2)
        party_lane, mode_lane, flag_lane, other_lane = _lanes(h3)
        session = (session_lane * sessions[group]) >> 16
        minute = starts[group, session] + ((minute_lane * lengths[group, session]) >> 16)
        minute = np.minimum(minute, 1439)
        code = _CODE_TABLE[code_lane]
        rarity = _RARITY_TABLE[code, rarity_lane]
        item = _RARITY_OFFSET[rarity] + ((item_lane * _RARITY_SIZE[rarity]) >> 16)
        dungeon = (dungeon_lane * len(DUNGEONS)) >> 16
        channel_no = _CHANNEL_TABLE[channel_lane]
        raid = (raid_lane * len(RAIDS)) >> 16
        party = (party_lane * len(RAID_PARTIES)) >> 16
        mode = (mode_lane * 3) >> 16
        flags = (
            np.where(mode == 1, HARD, 0)
            | np.where(flag_lane < 19661, SINGLE, 0)  # 30%
            | np.where((rarity >= 5) & (flag_lane > 60948), MIST, 0)  # 7% of epic and up
            | np.where(other_lane & 0xFF < 159, SUCCESS, 0)  # 62%
            | np.where(flag_lane > 52428, SAFE, 0)  # 20%
            | np.where(mode == 2, MATCHING, 0)
        )
        before = 7 + ((((other_lane >> 8) & 31) * 6) >> 5)
        card = (other_lane >> 13) & 3
        events = _Events(
            group, j, minute, code, item, dungeon, channel_no, raid, party, mode, flags,
            before, card, counts,
        )  # fmt: skip
        # by group, then newest first: one integer key sorts faster than lexsort
        events.take(np.argsort((group << 22) | ((1439 - minute) << 11) | (2047 - j)))
        return events

    def count_rows(self, day: date) -> int:
        """How many timeline rows the whole character list has on a KST day (cheap)."""
        chars = np.arange(len(self.specs))
        return int(self._plan(chars, np.full(len(chars), day.toordinal()))[1].sum())

    def _day_events(self, char: int, days: Iterable[int]) -> dict[int, list[Event]]:
        """Cached events of one character on each day ordinal, newest first."""
        days = list(days)
        found: dict[int, list[Event]] = {}
        missing = []
        with self._lock:
            for day in days:
                events = self._cache.get((char, day))
                if events is None:
                    missing.append(day)
                else:
                    self._cache.move_to_end((char, day))
                    found[day] = events
        if missing:
            ev = self._generate(np.full(len(missing), char), np.array(missing))
            base = np.array(missing, dtype=np.int64)[ev.group] * 1440 + ev.minute
            table = np.column_stack(
                [
                    base, ev.j, ev.code, ev.item, ev.dungeon, ev.channel_no, ev.raid, ev.party,
                    ev.mode, ev.flags, ev.before, ev.card,
                ]
            ).tolist()  # fmt: skip
            start = 0
            with self._lock:
                for k, day in enumerate(missing):
                    stop = start + int(ev.counts[k])
                    events = [tuple(row) for row in table[start:stop]]
                    start = stop
                    found[day] = events
                    self._cache[(char, day)] = events
                while len(self._cache) > self._cache_days:
                    self._cache.popitem(last=False)
        return found

    # -- timelines

    def window(
        self,
        character_id: str,
        start: datetime,
        end: datetime,
        *,
        now: datetime | None = None,
        unknown_codes: bool = False,
    ) -> list[Entry]:
        """A character's events within [start, end] (KST minutes, both inclusive) as
        (minute index, j, code, event) entries, newest first, unrendered; events after
        `now` are not there yet. `render` turns an entry into the API's row."""
        char = self._index.get(character_id)
        if char is None:
            raise KeyError(character_id)
        first, last = minute_index(start), minute_index(end)
        if now is not None:
            last = min(last, minute_index(now))
        if last < first:
            return []
        days = range(last // 1440, first // 1440 - 1, -1)  # newest day first
        per_day = self._day_events(char, days)
        out: list[Entry] = []
        for day in days:
            entries = [
                (e[0], e[1], CODES[e[2]].code, e) for e in per_day[day] if first <= e[0] <= last
            ]
            if unknown_codes:
                extra = self._unknown_entry(char, day)
                if extra is not None and first <= extra[0] <= last:
                    entries.append(extra)
                    entries.sort(key=lambda e: (e[0], e[1]), reverse=True)
            out.extend(entries)
        return out

    def _unknown_entry(self, char: int, day: int) -> Entry | None:
        """On about a quarter of days, one row with a code no client knows."""
        h = _int_hash("neople-unknown", self.seed, char, day)
        if h % 4:
            return None
        minute = day * 1440 + 18 * 60 + (h >> 8) % 300
        which = (h >> 20) % len(UNKNOWN_CODES)
        return (minute, 1000 + which, UNKNOWN_CODES[which][0], None)

    def render(
        self,
        character_id: str,
        entry: Entry,
        *,
        unknown_codes: bool = False,
        missing_fields: bool = False,
    ) -> dict[str, Any]:
        """One window entry as the API's timeline row, with the faults asked for."""
        char = self._index[character_id]
        minute, j, _code, event = entry
        if event is None:
            row = _unknown_row(self.specs[char], minute, j)
        else:
            row = render_event(event)
            if unknown_codes and _marked(self.seed, char, minute, j, 3):
                row["data"][UNEXPECTED_DATA_KEY] = 1 + (minute + j) % 12
        if missing_fields and _marked(self.seed, char, minute, j, 5):
            del row["date" if (minute + j) % 2 else "code"]
        return row

    def timeline(
        self,
        character_id: str,
        start: datetime,
        end: datetime,
        codes: Iterable[int] | None = None,
        *,
        now: datetime | None = None,
        unknown_codes: bool = False,
        missing_fields: bool = False,
    ) -> list[dict[str, Any]]:
        """The timeline rows the API serves for [start, end] (KST, minute precision, both
        ends inclusive), newest first, optionally only some codes."""
        wanted = set(codes) if codes else None
        return [
            self.render(
                character_id, entry, unknown_codes=unknown_codes, missing_fields=missing_fields
            )
            for entry in self.window(character_id, start, end, now=now, unknown_codes=unknown_codes)
            if wanted is None or entry[2] in wanted
        ]

    # -- bulk days (benchmarks)

    def _day_arrays(self, day: date, character_ids: Sequence[str] | None) -> _Events:
        if character_ids is None:
            chars = np.arange(len(self.specs))
        else:
            chars = np.array([self._index[c] for c in character_ids], dtype=np.int64)
        ev = self._generate(chars, np.full(len(chars), day.toordinal()))
        ev.group = chars[ev.group]  # character indices rather than group numbers
        return ev

    def day_columns(
        self,
        day: date,
        character_ids: Sequence[str] | None = None,
        limit: int | None = None,
    ) -> dict[str, list]:
        """A whole KST day of timeline rows as columns: serverId, characterId, code, name,
        date and data (the row's `data` as JSON text), by character, newest first.

        Same rows as `timeline` (and the API) serves, built without a dict per row: a
        million rows in 1.5-2 s; `limit` keeps the first rows only.
        """
        ev = self._day_arrays(day, character_ids)
        if limit is not None:
            ev.take(np.arange(min(limit, len(ev))))
        chars = ev.group
        server_ids = np.array([c.server_id for c in self.specs], dtype=object)
        character_ids_arr = np.array([c.character_id for c in self.specs], dtype=object)
        prefix = f"{day.isoformat()} "
        hhmm = np.array([prefix + t for t in _HHMM], dtype=object)
        names = np.array([c.name for c in CODES], dtype=object)
        data = _data_json(ev)
        return {
            "serverId": server_ids[chars].tolist(),
            "characterId": character_ids_arr[chars].tolist(),
            "code": _CODE_NUMBERS[ev.code].tolist(),
            "name": names[ev.code].tolist(),
            "date": hhmm[ev.minute].tolist(),
            "data": data,
        }

    def rows_for_day(
        self, day: date, character_ids: Sequence[str] | None = None
    ) -> Iterator[dict[str, Any]]:
        """A whole KST day as dicts: serverId, characterId and the row's code, name, date
        and data; same order and rows as `day_columns` (slower: a dict per row)."""
        ev = self._day_arrays(day, character_ids)
        base = day.toordinal() * 1440
        table = np.column_stack(
            [
                base + ev.minute, ev.j, ev.code, ev.item, ev.dungeon, ev.channel_no, ev.raid,
                ev.party, ev.mode, ev.flags, ev.before, ev.card,
            ]
        ).tolist()  # fmt: skip
        for char, event in zip(ev.group.tolist(), table, strict=True):
            spec = self.specs[char]
            yield {"serverId": spec.server_id, "characterId": spec.character_id} | render_event(
                event
            )


# --------------------------------------------------------------------------- rendering


def _item(index: int) -> dict[str, Any]:
    rarity, name = ITEM_TABLE[index]
    return {"itemId": _ITEM_IDS[index], "itemName": name, "itemRarity": rarity}


_ITEM_IDS = [_md5(f"item:{rarity}:{name}") for rarity, name in ITEM_TABLE]
_CARD_IDS = [_md5(f"item:card:{name}") for name in ENCHANT_CARDS]


def render_event(event: Sequence[int]) -> dict[str, Any]:
    """One cached event as the API's timeline row."""
    minute, _j, code_index, item, dungeon, channel_no, raid, party, mode, flags, before, card = (
        event
    )
    code = CODES[code_index]
    kind = code.kind
    if kind == "drop":
        dungeon_name, region = DUNGEONS[dungeon]
        data = _item(item) | {
            "channelName": region,
            "channelNo": channel_no,
            "dungeonName": dungeon_name,
            "mistGear": bool(flags & MIST),
        }
    elif kind == "card":
        data = _item(item) | {"dungeonName": DUNGEONS[dungeon][0], "mistGear": bool(flags & MIST)}
    elif kind == "pot":
        dungeon_name, region = DUNGEONS[dungeon]
        data = _item(item) | {
            "channelName": region,
            "channelNo": channel_no,
            "dungeonName": dungeon_name,
        }
    elif kind == "raid_card":
        data = _item(item) | {"raidName": RAIDS[raid], "mistGear": bool(flags & MIST)}
    elif kind == "item":
        data = _item(item)
    elif kind == "clear":
        dungeon_name, region = DUNGEONS[dungeon]
        data = {
            "dungeonName": dungeon_name,
            "regionName": region,
            "modeName": CLEAR_MODES[mode],
            "hard": bool(flags & HARD),
            "single": bool(flags & SINGLE),
            "matching": bool(flags & MATCHING),
        }
    elif kind == "raid":
        data = {
            "raidName": RAIDS[raid],
            "raidPartyName": RAID_PARTIES[party],
            "modeName": RAID_MODES[mode],
            "hard": bool(flags & HARD),
        }
    elif kind == "reinforce":
        success = bool(flags & SUCCESS)
        data = _item(item) | {
            "before": before,
            "after": before + 1 if success else (before if flags & SAFE else max(0, before - 3)),
            "result": success,
            "safe": bool(flags & SAFE),
        }
    else:  # enchant
        data = _item(item) | {"cardItemId": _CARD_IDS[card], "cardItemName": ENCHANT_CARDS[card]}
    return {"code": code.code, "name": code.name, "date": format_minute(minute), "data": data}


def _unknown_row(spec: CharacterSpec, minute: int, j: int) -> dict[str, Any]:
    code, name = UNKNOWN_CODES[j - 1000]
    if code == 530:
        data = _item(len(ITEM_TABLE) - 1 - (minute % 8)) | {
            "seasonName": "시즌 7 : 새벽의 서막",
            "passLevel": 1 + minute % 50,
        }
    else:
        data = {"adventureSafeMoveType": "SAFE_MOVE", "targetServerId": spec.server_id}
    return {"code": code, "name": name, "date": format_minute(minute), "data": data}


def _marked(seed: int, char: int, minute: int, j: int, salt: int) -> bool:
    """Whether a fault touches this row (deterministic, a few percent of rows)."""
    return _int_hash("neople-fault", seed, char, minute, j, salt) % 29 == 0


# which event fields each kind's `data` shows: (item, dungeon, channel no, raid, party,
# mode, before, card, flag bits)
_SHOWS = {
    "drop": (1, 1, 1, 0, 0, 0, 0, 0, MIST),
    "card": (1, 1, 0, 0, 0, 0, 0, 0, MIST),
    "pot": (1, 1, 1, 0, 0, 0, 0, 0, 0),
    "raid_card": (1, 0, 0, 1, 0, 0, 0, 0, MIST),
    "item": (1, 0, 0, 0, 0, 0, 0, 0, 0),
    "clear": (0, 1, 0, 0, 0, 1, 0, 0, HARD | SINGLE | MATCHING),
    "raid": (0, 0, 0, 1, 1, 1, 0, 0, HARD),
    "reinforce": (1, 0, 0, 0, 0, 0, 1, 0, SUCCESS | SAFE),
    "enchant": (1, 0, 0, 0, 0, 0, 0, 1, 0),
}
_SHOWN = np.array([_SHOWS[c.kind] for c in CODES], dtype=np.int64)
_SOME_MINUTE = 738_886 * 1440  # any valid minute: only `data` is kept
_DATA_TEXTS: dict[int, str] = {}  # payload key -> JSON text (well under 100k of them)


def _data_json(ev: _Events) -> list[str]:
    """Every event's `data` as compact JSON text, rendered by `render_event` once per
    distinct payload (a few thousand) and gathered: no dict per row."""
    shown = _SHOWN[ev.code]
    key = ev.code
    for column, (index, radix) in zip(
        (ev.item, ev.dungeon, ev.channel_no, ev.raid, ev.party, ev.mode, ev.before, ev.card),
        enumerate((len(ITEM_TABLE), len(DUNGEONS), 64, len(RAIDS), 4, 4, 16, 4)),
        strict=True,
    ):
        key = key * radix + column * shown[:, index]
    key = key * 64 + (ev.flags & shown[:, 8])
    unique, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    fields = np.column_stack(
        [
            ev.code, ev.item, ev.dungeon, ev.channel_no, ev.raid, ev.party, ev.mode, ev.flags,
            ev.before, ev.card,
        ]
    )[first].tolist()  # fmt: skip
    texts = np.empty(len(unique), dtype=object)
    for k, (combo, values) in enumerate(zip(unique.tolist(), fields, strict=True)):
        text = _DATA_TEXTS.get(combo)
        if text is None:
            data = render_event((_SOME_MINUTE, 0, *values))["data"]
            text = _DATA_TEXTS[combo] = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
        texts[k] = text
    return texts[inverse.ravel()].tolist()
