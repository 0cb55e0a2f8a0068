"""A deterministic Help Scout account: mailboxes, conversations and threads from a seed.

Arrivals follow the support team's real rhythms (a morning peak in Europe/Madrid time,
quiet nights and weekends, bursts after the invoice runs, newsletters, campaigns and
market events of `market_events.csv`), and agents reply only inside the business hours
of `business_hours.csv`, skipping `holidays.csv`. Each (mailbox, local day) is generated
on first use from its own RNG, derived from (seed, mailbox, day), so asking for last
week never generates six years, and any day always comes out the same.

A conversation's whole future is fixed at generation; the API view at a clock `now`
shows only the threads created by then. Its server-side `modifiedAt` (never in the
payload: API 2.0 has none) is the latest of its visible threads and later touches.
Activity ends within `ACTIVITY_DAYS` of creation, so `modifiedSince=X` only needs the
days from X - ACTIVITY_DAYS on, plus conversations touched later.
"""

from __future__ import annotations

import bisect
import csv
import json
import math
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from signalbox.platform.settings import DBT_ROOT

_q = json.encoder.encode_basestring  # a JSON string literal, non-ASCII kept as is

BUSINESS_TZ = ZoneInfo("Europe/Madrid")
SEEDS_DIR = DBT_ROOT / "warehouse" / "seeds" / "mailbox"
API_ROOT = "https://api.helpscout.net/v2"  # hrefs inside payloads, as the real API writes them
WEB_ROOT = "https://secure.helpscout.net"

ACTIVITY_DAYS = 21  # every thread of a conversation lies within this many days of creation
CONVERSATION_ID_BASE = 1_900_000_000
UNKNOWN_STATUS = "archived"  # injected by the unknown_values fault
UNKNOWN_THREAD_TYPE = "whatsapp"  # not in the documented list (beaconchat is documented)
SORT_FIELDS = (
    "createdAt",
    "customerEmail",
    "customerName",
    "mailboxid",
    "modifiedAt",
    "number",
    "score",
    "status",
    "subject",
    "waitingSince",
)
STATUS_FILTERS = ("active", "all", "closed", "open", "pending", "spam")

_BOUND_SECONDS = ACTIVITY_DAYS * 86400 - 3600
_CUSTOMER = -1  # thread author index for "the conversation's customer"
_NOCHANGE = "nochange"  # a thread that leaves the conversation status as it was

# --------------------------------------------------------------------------- reference data


@dataclass(frozen=True)
class MailboxSpec:
    """A mailbox to simulate; `kind` picks its topics and which events move it."""

    name: str
    slug: str
    email: str
    kind: str = "support"  # support | billing | campaigns
    weight: float = 1.0  # share of base_daily_rate
    reply_median_minutes: float = 45.0  # business minutes to a first reply at normal load


DEFAULT_MAILBOXES = (
    MailboxSpec("Atenció al client", "support", "suport@cooperativa.example", "support", 1.0, 45),
    MailboxSpec("Factures", "billing", "factures@cooperativa.example", "billing", 0.55, 70),
    MailboxSpec(
        "Compres col·lectives", "campaigns", "compres@cooperativa.example", "campaigns", 0.35, 60
    ),
)

# local-time arrival curves, one weight per hour (peak mid-morning on weekdays)
_WEEKDAY_CURVE = (
    0.15, 0.08, 0.05, 0.04, 0.05, 0.10, 0.30, 0.80, 1.80, 2.80, 3.20, 3.00,
    2.60, 1.90, 1.60, 2.00, 2.10, 1.80, 1.50, 1.20, 1.00, 0.80, 0.50, 0.30,
)  # fmt: skip
_WEEKEND_CURVE = (
    0.20, 0.10, 0.06, 0.05, 0.05, 0.08, 0.15, 0.30, 0.60, 1.00, 1.30, 1.40,
    1.40, 1.20, 1.00, 1.00, 1.10, 1.10, 1.00, 1.00, 0.90, 0.70, 0.50, 0.30,
)  # fmt: skip
_DOW_FACTOR = (1.15, 1.05, 1.0, 1.0, 0.9, 0.35, 0.3)  # Monday..Sunday
_HOLIDAY_FACTOR = 0.4

# extra arrivals (as a fraction of the normal rate) on the event day and the days after
_EVENT_LIFT: dict[str, dict[str, tuple[float, ...]]] = {
    "invoice": {"billing": (1.6, 1.2, 0.8, 0.45, 0.2), "support": (0.15, 0.1)},
    "newsletter": {"support": (0.35, 0.15), "campaigns": (0.5, 0.2), "billing": (0.1,)},
    "campaign": {"campaigns": (1.8, 1.4, 1.0, 0.7, 0.45, 0.3, 0.15), "support": (0.2, 0.1)},
    "market": {
        "support": (2.2, 1.8, 1.3, 0.9, 0.5, 0.25),
        "billing": (1.0, 0.8, 0.5, 0.3),
        "campaigns": (0.6, 0.4, 0.2),
    },
}

_AGENTS = (
    ("Núria", "Puig"),
    ("Jordi", "Serra"),
    ("Marta", "Vidal"),
    ("Pau", "Ferrer"),
    ("Laia", "Soler"),
    ("Arnau", "Roca"),
    ("Montse", "Camps"),
    ("Oriol", "Font"),
)
_TEAMS = {"support": (0, 1, 2, 3, 4), "billing": (3, 4, 5), "campaigns": (5, 6, 7)}
_USER_ID_BASE = 410_000

_FIRST_NAMES = (
    "Anna", "Marc", "Laura", "Jordi", "Maria", "Pere", "Carla", "Joan", "Núria", "Albert",
    "Montserrat", "David", "Júlia", "Xavier", "Elena", "Sergi", "Clara", "Pol", "Roser",
    "Oriol", "Lucía", "Javier", "Carmen", "Miguel", "Mireia", "Ferran", "Aina", "Iker",
)  # fmt: skip
_LAST_NAMES = (
    "Garcia", "Martínez", "Puig", "Vila", "Soler", "Ferrer", "Serra", "Pujol", "Roca",
    "Mas", "Costa", "Font", "Vidal", "Casas", "López", "Sánchez", "Bosch", "Camps",
    "Ribas", "Sala", "Torres", "Navarro", "Riera", "Prat",
)  # fmt: skip
_CUSTOMERS = 40_000
_CUSTOMER_ID_BASE = 520_000_000

# (subject, the customer's first message, the tag it usually gets)
_TOPICS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "support": (
        ("Canvi de titular del contracte", "Voldria canviar el titular del contracte de llum del meu pis.", "canvi-titular"),  # noqa: E501
        ("No puc entrar a l'Oficina Virtual", "Quan intento entrar a l'Oficina Virtual em diu que la contrasenya no és correcta.", "oficina-virtual"),  # noqa: E501
        ("Lectura del comptador", "La lectura del comptador que surt a la web no coincideix amb la que veig a casa.", "lectures"),  # noqa: E501
        ("Canvi de potència", "Com puc canviar la potència contractada? Em salten els ploms sovint.", "potencia"),  # noqa: E501
        ("Alta de subministrament", "M'he mudat i necessito donar d'alta la llum al pis nou.", "alta"),  # noqa: E501
        ("Autoconsum i compensació", "Tinc plaques solars i no veig la compensació d'excedents.", "autoconsum"),  # noqa: E501
        ("Tall de subministrament", "Aquest matí ens hem quedat sense llum. Sabeu què passa?", "avaria"),  # noqa: E501
        ("Preu de l'energia", "He vist que el preu ha pujat molt aquest mes, m'ho podeu explicar?", "preus"),  # noqa: E501
    ),
    "billing": (
        ("Factura duplicada", "M'han arribat dues factures del mateix període.", "duplicada"),
        ("Import de la factura massa alt", "La factura d'aquest mes és el doble del que pago normalment.", "import"),  # noqa: E501
        ("Canvi de compte bancari", "Voldria domiciliar els rebuts en un altre compte.", "compte-bancari"),  # noqa: E501
        ("Rebut retornat", "El banc m'ha retornat el rebut, com el puc pagar ara?", "retornat"),
        ("Factura no rebuda", "Encara no he rebut la factura del mes passat.", "no-rebuda"),
        ("Fraccionar el pagament", "És possible pagar aquesta factura en diversos terminis?", "fraccionament"),  # noqa: E501
    ),
    "campaigns": (
        ("Inscripció a la compra col·lectiva", "Com em puc inscriure a la compra col·lectiva de plaques?", "inscripcio"),  # noqa: E501
        ("Pressupost de la instal·lació solar", "Encara no he rebut el pressupost de la instal·lació.", "pressupost"),  # noqa: E501
        ("Data d'instal·lació", "Quan vindran a instal·lar les plaques a casa?", "instal-lacio"),  # noqa: E501
        ("Visita tècnica", "Haig de canviar la data de la visita tècnica.", "visita"),
        ("Bateria i ampliació", "Puc afegir una bateria a la instal·lació que ja tinc?", "bateria"),  # noqa: E501
        ("Subvencions", "Quines subvencions puc demanar per a l'autoconsum?", "subvencions"),
    ),
}  # fmt: skip
_FOLLOWUPS = (
    "Gràcies, però encara no m'ha quedat clar.",
    "Ho he provat i continua igual.",
    "Us adjunto la informació que em demaneu.",
    "D'acord, quan ho tindreu resolt?",
)
_REPLIES = (
    "Gràcies per escriure'ns. Ja ho hem revisat i t'expliquem els passos a seguir.",
    "Ho hem comprovat i ja està solucionat. Qualsevol cosa, aquí ens tens.",
    "Necessitem una mica més d'informació: ens pots enviar el número de contracte?",
    "Hem passat el cas a l'equip tècnic i et direm alguna cosa ben aviat.",
)
_NOTES = (
    "Revisar amb l'equip de facturació.",
    "Client habitual, ja va escriure el mes passat.",
    "Pendent de la distribuïdora.",
)
_TOUCH_TAGS = ("revisat", "seguiment", "escalat")
_TAG_COLORS = ("#a5b2bd", "#56b8e2", "#f2a73b", "#76ad3a", "#e76b6b", "#9c7cc4")


def _mix(value: int) -> int:
    """A 64-bit integer hash (splitmix64 finaliser): stable across runs and platforms."""
    value = (value + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return value ^ (value >> 31)


def _ascii(text: str) -> str:
    table = str.maketrans("àáèéíïòóúüçñ·", "aaeeiioouucn-")
    return text.lower().translate(table).replace(" ", "")


def parse_iso(text: str) -> datetime:
    """An ISO-8601 instant (`Z` or offset; naive means UTC) as an aware UTC datetime."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _epoch(moment: datetime) -> int:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


def _local_date(ts: int) -> date:
    return datetime.fromtimestamp(ts, BUSINESS_TZ).date()


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 40:
        return max(0, round(rng.gauss(lam, math.sqrt(lam))))
    limit, k, product = math.exp(-lam), 0, rng.random()
    while product > limit:
        k += 1
        product *= rng.random()
    return k


# --------------------------------------------------------------------------- calendar


class BusinessCalendar:
    """Opening hours, holidays and market events from the dbt seeds (not copies of them)."""

    def __init__(self, seeds_dir: Path = SEEDS_DIR):
        self.hours: dict[int, tuple[dtime, dtime]] = {}
        with open(seeds_dir / "business_hours.csv", newline="") as f:
            for row in csv.DictReader(f):
                self.hours[int(row["iso_weekday"])] = (
                    dtime.fromisoformat(row["opens_at"]),
                    dtime.fromisoformat(row["closes_at"]),
                )
        with open(seeds_dir / "holidays.csv", newline="") as f:
            self.holidays = {date.fromisoformat(r["holiday_date"]) for r in csv.DictReader(f)}
        with open(seeds_dir / "market_events.csv", newline="") as f:
            self.events = [
                (date.fromisoformat(r["event_date"]), r["kind"].strip(), r["name"])
                for r in csv.DictReader(f)
            ]
        self._intervals: dict[int, tuple[int, int] | None] = {}

    def interval(self, day: date) -> tuple[int, int] | None:
        """The day's business hours as UTC epoch seconds [open, close), or None if closed."""
        key = day.toordinal()
        if key not in self._intervals:
            hours = None if day in self.holidays else self.hours.get(day.isoweekday())
            if hours is None or hours[1] <= hours[0]:
                self._intervals[key] = None
            else:
                opens = datetime.combine(day, hours[0], BUSINESS_TZ).timestamp()
                closes = datetime.combine(day, hours[1], BUSINESS_TZ).timestamp()
                self._intervals[key] = (int(opens), int(closes))
        return self._intervals[key]

    def add_business_seconds(self, ts: int, seconds: float) -> int:
        """The instant `seconds` of open business time after `ts` (always inside hours)."""
        seconds = max(60, int(seconds))
        day = _local_date(ts)
        for _ in range(400):
            hours = self.interval(day)
            if hours is not None:
                opens, closes = hours
                current = max(ts, opens)
                if current < closes:
                    if current + seconds < closes:
                        return current + seconds
                    seconds -= closes - current
                    ts = closes
            day += timedelta(days=1)
        raise RuntimeError(f"no business hours within 400 days of {iso(ts)}")

    def in_business_hours(self, ts: int) -> bool:
        hours = self.interval(_local_date(ts))
        return hours is not None and hours[0] <= ts < hours[1]


# --------------------------------------------------------------------------- records

# a thread as generated: (createdAt epoch, type, status it sets, author, body index, action)
Thread = tuple[int, str, str, int, int, tuple[str, str] | None]


class _Conversation:
    """One conversation's whole timeline, compact; payloads are rendered from it."""

    __slots__ = (
        "id",
        "number",
        "mailbox",
        "created",
        "type",
        "customer",
        "topic",
        "tags",
        "threads",
        "last_ts",
        "final_status",
    )

    def __init__(self, id_, number, mailbox, created, type_, customer, topic, tags, threads):
        self.id = id_
        self.number = number
        self.mailbox = mailbox
        self.created = created
        self.type = type_
        self.customer = customer
        self.topic = topic
        self.tags = tags
        self.threads: tuple[Thread, ...] = threads
        self.last_ts = threads[-1][0]
        status = "active"
        for thread in threads:
            if thread[2] != _NOCHANGE:
                status = thread[2]
        self.final_status = status


@dataclass(frozen=True)
class Touch:
    """A later change to a conversation: a note, a tag or a status change at `at`."""

    at: int
    kind: str  # note | tag | status
    user: int  # agent index
    status: str = _NOCHANGE
    tag: int = 0  # index in _TOUCH_TAGS
    seq: int = 0  # the n-th touch of its conversation: keeps added thread ids stable


class _View:
    """A conversation as seen at one instant."""

    __slots__ = (
        "threads",
        "status",
        "modified",
        "closed_at",
        "closed_by",
        "assignee",
        "user_updated",
        "waiting_since",
        "latest_from",
        "touch_tags",
    )


# --------------------------------------------------------------------------- the world


class HelpScoutWorld:
    """The simulated account. Thread-safe; every method is deterministic given the seed."""

    def __init__(
        self,
        seed: int = 7,
        start: date = date(2020, 1, 1),
        mailboxes: int | Sequence[MailboxSpec | str] = 3,
        base_daily_rate: float = 48.0,
        seeds_dir: Path = SEEDS_DIR,
    ):
        self.seed = seed
        self.start = start
        self.base_daily_rate = base_daily_rate
        self.calendar = BusinessCalendar(seeds_dir)
        self.specs = _mailbox_specs(mailboxes)
        id_rng = random.Random(seed * 7919 + 17)
        self.mailbox_ids = sorted(id_rng.sample(range(100_000, 999_999), len(self.specs)))
        self._mailbox_index = {mid: i for i, mid in enumerate(self.mailbox_ids)}
        self._lifts = self._event_lifts()
        self._lock = threading.RLock()
        self._days: dict[tuple[int, int], list[_Conversation]] = {}
        self._offsets = [0]  # conversation numbers reserved before slot (day_offset, mailbox)
        self._touches: dict[int, list[Touch]] = {}
        self._queries: OrderedDict[tuple, list[_Conversation]] = OrderedDict()
        self.version = 0  # bumped by every touch: query caches key on it

    # -- mailboxes

    def mailboxes(self) -> list[dict[str, Any]]:
        """The mailbox payloads, as `GET /v2/mailboxes` serves them."""
        created = datetime.combine(self.start - timedelta(days=400), dtime(9, 30), UTC)
        found = []
        for i, (spec, mid) in enumerate(zip(self.specs, self.mailbox_ids, strict=True)):
            made = _epoch(created) + i * 86400 * 3 + 3600 * i
            found.append(
                {
                    "id": mid,
                    "name": spec.name,
                    "slug": spec.slug,
                    "email": spec.email,
                    "createdAt": iso(made),
                    "updatedAt": iso(made + 86400 * (30 + 11 * i)),
                    "_links": {
                        "fields": {"href": f"{API_ROOT}/mailboxes/{mid}/fields"},
                        "folders": {"href": f"{API_ROOT}/mailboxes/{mid}/folders"},
                        "self": {"href": f"{API_ROOT}/mailboxes/{mid}"},
                    },
                }
            )
        return found

    # -- arrival model

    def expected_arrivals(self, mailbox_id: int, day: date) -> float:
        """The mean number of conversations the mailbox receives on a local date."""
        return self._rate(self._mailbox_index[mailbox_id], day)

    def _rate(self, mailbox: int, day: date) -> float:
        spec = self.specs[mailbox]
        years = (day - date(2020, 1, 1)).days / 365.25
        trend = min(1.3, max(0.8, 0.85 + 0.05 * years))
        rate = self.base_daily_rate * spec.weight * _DOW_FACTOR[day.weekday()] * trend
        if day in self.calendar.holidays:
            rate *= _HOLIDAY_FACTOR
        return rate * (1.0 + self._lifts[spec.kind].get(day, 0.0))

    def _event_lifts(self) -> dict[str, dict[date, float]]:
        lifts: dict[str, dict[date, float]] = {spec.kind: {} for spec in self.specs}
        for day, kind, _name in self.calendar.events:
            for mailbox_kind, curve in _EVENT_LIFT.get(kind, {}).items():
                if mailbox_kind not in lifts:
                    continue
                for lag, lift in enumerate(curve):
                    when = day + timedelta(days=lag)
                    lifts[mailbox_kind][when] = lifts[mailbox_kind].get(when, 0.0) + lift
        return lifts

    @staticmethod
    def _capacity(rate: float) -> int:
        """Numbers reserved per (mailbox, day): a bound the day's count never exceeds."""
        return int(rate + 6 * math.sqrt(rate) + 12)

    def _slot_base(self, day_offset: int, mailbox: int) -> int:
        slot = day_offset * len(self.specs) + mailbox
        with self._lock:
            offsets = self._offsets
            while len(offsets) <= slot + 1:
                filled = len(offsets) - 1
                d, m = divmod(filled, len(self.specs))
                rate = self._rate(m, self.start + timedelta(days=d))
                offsets.append(offsets[-1] + self._capacity(rate))
            return offsets[slot]

    # -- generation

    def _day(self, mailbox: int, day_offset: int) -> list[_Conversation]:
        """The conversations created in one mailbox on one local day, by createdAt."""
        key = (mailbox, day_offset)
        found = self._days.get(key)
        if found is None:
            with self._lock:
                found = self._days.get(key)
                if found is None:
                    found = self._generate_day(mailbox, day_offset)
                    self._days[key] = found
        return found

    def _generate_day(self, mailbox: int, day_offset: int) -> list[_Conversation]:
        day = self.start + timedelta(days=day_offset)
        spec = self.specs[mailbox]
        mailbox_id = self.mailbox_ids[mailbox]
        rng = random.Random(
            ((self.seed * 1_000_003) ^ (mailbox_id * 7_919)) * 1_000_000_007 + day.toordinal()
        )
        rate = self._rate(mailbox, day)
        count = min(_poisson(rng, rate), self._capacity(rate))
        quiet = day.weekday() >= 5 or day in self.calendar.holidays
        cumulative = _CUMULATIVE[quiet]
        midnight = datetime.combine(day, dtime(0), BUSINESS_TZ)
        next_midnight = datetime.combine(day + timedelta(days=1), dtime(0), BUSINESS_TZ)
        steady = midnight.utcoffset() == next_midnight.utcoffset()
        base = int(midnight.timestamp())
        seconds = []
        for _ in range(count):
            hour = bisect.bisect_left(cumulative, rng.random() * cumulative[-1])
            seconds.append(min(hour, 23) * 3600 + rng.randrange(3600))
        seconds.sort()
        if steady:
            times = [base + s for s in seconds]
        else:  # a DST change: convert each wall-clock time
            times = sorted(
                int(
                    (midnight.replace(tzinfo=None) + timedelta(seconds=s))
                    .replace(tzinfo=BUSINESS_TZ)
                    .timestamp()
                )
                for s in seconds
            )
        # load: how busy the team is compared with a normal day in this mailbox
        normal = self.base_daily_rate * spec.weight * 1.0
        load = max(0.5, rate / normal) if normal > 0 else 1.0
        number = self._slot_base(day_offset, mailbox)
        return [
            self._conversation(rng, mailbox, number + k + 1, created, load)
            for k, created in enumerate(times)
        ]

    def _reply_delay(self, rng: random.Random, spec: MailboxSpec, load: float) -> float:
        median = spec.reply_median_minutes * 60 * load**1.3
        return min(rng.lognormvariate(math.log(median), 0.9), 3 * 8 * 3600)

    def _conversation(
        self, rng: random.Random, mailbox: int, number: int, created: int, load: float
    ) -> _Conversation:
        spec = self.specs[mailbox]
        calendar = self.calendar
        topics = _TOPICS.get(spec.kind, _TOPICS["support"])
        topic = rng.randrange(len(topics))
        customer = rng.randrange(_CUSTOMERS)
        team = _TEAMS.get(spec.kind, _TEAMS["support"])
        agent = team[rng.randrange(len(team))]
        tags = []
        if rng.random() < 0.7:
            tags.append(topic)
        if rng.random() < 0.08:
            tags.append(-1)  # "urgent"
        kind = "email"
        threads: list[Thread] = []
        u = rng.random()
        if u < 0.03:  # a phone call the agent logged
            kind = "phone"
            threads.append((created, "phone", "closed", agent, 0, None))
        elif u < 0.05:  # spam, filtered on arrival
            threads.append((created, "customer", "spam", _CUSTOMER, 0, None))
        else:
            threads.append((created, "customer", "active", _CUSTOMER, 0, None))
            unanswered = min(0.25, max(0.03, 0.05 + 0.05 * (load - 1.0)))
            if rng.random() < unanswered:
                if rng.random() < 0.35:  # parked as pending without a reply
                    at = calendar.add_business_seconds(created, rng.uniform(600, 4 * 3600))
                    action = ("changed-ticket-status", "Marked as Pending")
                    threads.append((at, "lineitem", "pending", agent, 0, action))
            else:
                reply = calendar.add_business_seconds(created, self._reply_delay(rng, spec, load))
                if rng.random() < 0.4 and reply - created > 120:
                    at = max(created + 60, reply - rng.randint(60, 1800))
                    first, last = _AGENTS[agent]
                    action = ("changed-ticket-assignee", f"Assigned to {first} {last}")
                    threads.append((at, "lineitem", _NOCHANGE, agent, 0, action))
                if rng.random() < 0.15 and reply - created > 240:
                    at = created + rng.randint(60, reply - created - 60)
                    author = team[rng.randrange(len(team))]
                    threads.append(
                        (at, "note", _NOCHANGE, author, rng.randrange(len(_NOTES)), None)
                    )
                rounds = 1 + (rng.random() < 0.3) + (rng.random() < 0.08)
                closes = False
                for round_ in range(rounds):
                    last_round = round_ == rounds - 1
                    closes = last_round and rng.random() < 0.75
                    status = "closed" if closes else "pending"
                    body = rng.randrange(len(_REPLIES))
                    threads.append((reply, "message", status, agent, body, None))
                    if last_round:
                        break
                    follow_up = reply + 600 + int(rng.expovariate(1 / (8 * 3600)))
                    body = rng.randrange(len(_FOLLOWUPS))
                    threads.append((follow_up, "customer", "active", _CUSTOMER, body, None))
                    reply = calendar.add_business_seconds(
                        follow_up, 0.8 * self._reply_delay(rng, spec, load)
                    )
                if not closes and rng.random() < 0.6:
                    at = calendar.add_business_seconds(reply, rng.uniform(2 * 3600, 16 * 3600))
                    action = ("changed-ticket-status", "Marked as Closed")
                    threads.append((at, "lineitem", "closed", agent, 0, action))
        threads.sort(key=lambda t: t[0])
        bound = created + _BOUND_SECONDS
        if threads[-1][0] > bound:
            threads = [t for t in threads if t[0] <= bound]
        return _Conversation(
            CONVERSATION_ID_BASE + 3 * number,
            number,
            mailbox,
            created,
            kind,
            customer,
            topic,
            tuple(tags),
            tuple(threads),
        )

    def generate(self, start: date | None = None, end: date | None = None) -> int:
        """Generate (and cache) every (mailbox, day) from start to end inclusive; the count."""
        first = max(0, ((start or self.start) - self.start).days)
        last = ((end or datetime.now(UTC).date()) - self.start).days
        total = 0
        for offset in range(first, last + 1):
            for mailbox in range(len(self.specs)):
                total += len(self._day(mailbox, offset))
        return total

    @property
    def generated_days(self) -> int:
        """How many (mailbox, day) lists have been generated so far (generation is lazy)."""
        return len(self._days)

    # -- lookup

    def _record(self, conversation_id: int) -> _Conversation | None:
        number, rest = divmod(conversation_id - CONVERSATION_ID_BASE, 3)
        if rest or number < 1:
            return None
        with self._lock:
            offsets = self._offsets
            while offsets[-1] < number and len(offsets) < 200_000:
                self._slot_base((len(offsets) - 1) // len(self.specs) + 1, 0)
            slot = bisect.bisect_left(offsets, number) - 1
        day_offset, mailbox = divmod(slot, len(self.specs))
        for record in self._day(mailbox, day_offset):
            if record.number == number:
                return record
        return None

    # -- views

    def _state(self, record: _Conversation, now: int) -> tuple[str, int]:
        """(status, modifiedAt) at `now`, without building the whole view."""
        touches = self._touches.get(record.id)
        if now >= record.last_ts and not touches:
            return record.final_status, record.last_ts
        if touches:
            view = self._view(record, now)
            return view.status, view.modified
        status, modified = "active", record.created
        for thread in record.threads:
            if thread[0] > now:
                break
            modified = thread[0]
            if thread[2] != _NOCHANGE:
                status = thread[2]
        return status, modified

    def _view(self, record: _Conversation, now: int) -> _View:
        visible: list[tuple[int, Thread]] = []
        base_id = record.id * 1000
        for j, thread in enumerate(record.threads):
            if thread[0] > now:
                break
            visible.append((base_id + j, thread))
        touch_tags: list[tuple[int, int]] = []
        touches = self._touches.get(record.id)
        if touches:
            extra = []
            for touch in touches:
                if touch.at > now:
                    continue
                if touch.kind == "tag":
                    touch_tags.append((touch.at, touch.tag))
                elif touch.kind == "note":
                    note = touch.seq % len(_NOTES)
                    thread = (touch.at, "note", _NOCHANGE, touch.user, note, None)
                    extra.append((base_id + 100 + touch.seq, thread))
                else:
                    text = "Marked as Closed" if touch.status == "closed" else "Reopened"
                    action = ("changed-ticket-status", text)
                    thread = (touch.at, "lineitem", touch.status, touch.user, 0, action)
                    extra.append((base_id + 100 + touch.seq, thread))
            if extra:
                visible = sorted(visible + extra, key=lambda item: item[1][0])
        view = _View()
        view.threads = visible
        view.touch_tags = touch_tags
        status, closed_at, closed_by, assignee = "active", None, None, None
        user_updated = record.created
        waiting, latest_from = record.created, "customer"
        for _, (ts, kind, sets, author, _body, action) in visible:
            if sets != _NOCHANGE:
                status = sets
                if sets == "closed":
                    closed_at, closed_by = ts, author
            if author != _CUSTOMER:
                user_updated = ts
            if kind == "message" or (action and action[0] == "changed-ticket-assignee"):
                assignee = author
            if kind == "customer":
                waiting, latest_from = ts, "customer"
            elif kind == "message":
                latest_from = "user"
        if status != "closed":
            closed_at = closed_by = None
        modified = visible[-1][1][0] if visible else record.created
        for at, _tag in touch_tags:
            modified = max(modified, at)
            user_updated = max(user_updated, at)
        view.status = status
        view.modified = modified
        view.closed_at = closed_at
        view.closed_by = closed_by
        view.assignee = assignee
        view.user_updated = user_updated
        view.waiting_since = waiting
        view.latest_from = latest_from
        return view

    # -- queries

    def select(
        self,
        now: datetime,
        *,
        modified_since: datetime | None = None,
        modified_until: datetime | None = None,
        mailbox_ids: Iterable[int] | None = None,
        status: str = "all",
        sort_field: str = "createdAt",
        sort_order: str = "desc",
        unknown_values: bool = False,
    ) -> list[_Conversation]:
        """The matching conversations in order (internal records; cached per query)."""
        if sort_field not in SORT_FIELDS:
            raise ValueError(f"sortField must be one of {', '.join(SORT_FIELDS)}: {sort_field!r}")
        if sort_order not in ("asc", "desc"):
            raise ValueError(f"sortOrder must be asc or desc: {sort_order!r}")
        if status not in STATUS_FILTERS:
            raise ValueError(f"status must be one of {', '.join(STATUS_FILTERS)}: {status!r}")
        now_ts = _epoch(now)
        since = _epoch(modified_since) if modified_since is not None else None
        until = _epoch(modified_until) if modified_until is not None else None
        if mailbox_ids is None:
            mailboxes = tuple(range(len(self.specs)))
        else:
            mailboxes = tuple(
                sorted({self._mailbox_index[m] for m in mailbox_ids if m in self._mailbox_index})
            )
        key = (now_ts, since, until, mailboxes, status, sort_field, sort_order, unknown_values)
        with self._lock:
            cached = self._queries.get((self.version, *key))
            if cached is not None:
                self._queries.move_to_end((self.version, *key))
                return cached
            version = self.version
        found = self._scan(now_ts, since, until, mailboxes, status, sort_field, unknown_values)
        found.sort(key=lambda item: item[0], reverse=sort_order == "desc")
        records = [record for _, record in found]
        with self._lock:
            self._queries[(version, *key)] = records
            while len(self._queries) > 48:
                self._queries.popitem(last=False)
        return records

    def _scan(self, now, since, until, mailboxes, status, sort_field, unknown):
        wanted = None
        if status == "open":
            wanted = {"active", "pending"}
        elif status != "all":
            wanted = {status}
        last_day = (_local_date(now) - self.start).days
        first_day = 0
        if since is not None:
            first_day = max(0, (_local_date(since) - self.start).days - ACTIVITY_DAYS - 1)
        key_of = _SORT_KEYS[sort_field]
        found: list[tuple[Any, _Conversation]] = []
        state = self._state

        def consider(record: _Conversation) -> None:
            current, modified = state(record, now)
            if unknown and current == "closed" and _unknown(record.id, 3):
                current = UNKNOWN_STATUS
            if wanted is not None and current not in wanted:
                return
            if since is not None and modified < since:
                return
            if until is not None and modified > until:
                return
            found.append((key_of(self, record, current, modified, now), record))

        for day_offset in range(first_day, last_day + 1):
            for mailbox in mailboxes:
                for record in self._day(mailbox, day_offset):
                    if record.created > now:
                        break
                    consider(record)
        if since is not None and first_day > 0:
            for conversation_id in list(self._touches):
                record = self._record(conversation_id)
                if (
                    record is not None
                    and record.mailbox in mailboxes
                    and (_local_date(record.created) - self.start).days < first_day
                    and record.created <= now
                ):
                    consider(record)
        return found

    def conversations(
        self,
        now: datetime,
        modified_since: datetime | None = None,
        mailbox_ids: Iterable[int] | None = None,
        *,
        status: str = "all",
        sort_field: str = "createdAt",
        sort_order: str = "asc",
        embed_threads: bool = True,
        unknown_values: bool = False,
    ) -> list[dict[str, Any]]:
        """Every conversation payload visible at `now`, exactly as the API serves it.

        Defaults differ from the API's on purpose: every status, oldest first, threads
        embedded (what an ingestion with `status=all&embed=threads` stores).
        """
        return list(
            self.iter_conversations(
                now,
                modified_since,
                mailbox_ids,
                status=status,
                sort_field=sort_field,
                sort_order=sort_order,
                embed_threads=embed_threads,
                unknown_values=unknown_values,
            )
        )

    def iter_conversations(
        self,
        now: datetime,
        modified_since: datetime | None = None,
        mailbox_ids: Iterable[int] | None = None,
        *,
        status: str = "all",
        sort_field: str = "createdAt",
        sort_order: str = "asc",
        embed_threads: bool = True,
        unknown_values: bool = False,
    ) -> Iterator[dict[str, Any]]:
        """Like `conversations()`, one payload at a time."""
        records = self.select(
            now,
            modified_since=modified_since,
            mailbox_ids=mailbox_ids,
            status=status,
            sort_field=sort_field,
            sort_order=sort_order,
            unknown_values=unknown_values,
        )
        now_ts = _epoch(now)
        for record in records:
            yield self.render(record, now_ts, embed_threads, unknown_values)

    def conversation(
        self,
        conversation_id: int,
        now: datetime,
        embed_threads: bool = True,
        unknown_values: bool = False,
    ) -> dict[str, Any] | None:
        """One conversation's payload at `now`, or None if it does not exist (yet)."""
        text = self.conversation_json(conversation_id, now, embed_threads, unknown_values)
        return None if text is None else json.loads(text)

    def conversation_json(
        self,
        conversation_id: int,
        now: datetime,
        embed_threads: bool = True,
        unknown_values: bool = False,
    ) -> str | None:
        """Like `conversation()`, as the JSON text `GET /v2/conversations/{id}` sends."""
        record = self._record(conversation_id)
        now_ts = _epoch(now)
        if record is None or record.created > now_ts:
            return None
        return self.render_json(record, now_ts, embed_threads, unknown_values)

    def modified_at(self, conversation_id: int, now: datetime) -> datetime | None:
        """The server-side modifiedAt (never in the payload), for tests and checks."""
        record = self._record(conversation_id)
        now_ts = _epoch(now)
        if record is None or record.created > now_ts:
            return None
        return datetime.fromtimestamp(self._state(record, now_ts)[1], UTC)

    # -- mutations

    def touch(
        self,
        targets: float | Iterable[int],
        at: datetime,
        *,
        since: datetime | None = None,
    ) -> list[int]:
        """Change conversations at `at` (a note, a tag or a status change); their ids.

        `targets` is a fraction of the conversations existing at `at` (created since
        `since` if given, else since the world's start) or explicit ids. The choice
        and the changes are deterministic. Touches appear once the clock reaches `at`.
        """
        at_ts = _epoch(at)
        with self._lock:
            salt = _mix(self.seed * 1_000_003 + at_ts) ^ len(self._touches) ^ self.version
            rng = random.Random(salt)
            if isinstance(targets, int | float) and not isinstance(targets, bool):
                fraction = float(targets)
                if not 0.0 <= fraction <= 1.0:
                    raise ValueError(f"touch fraction must be within [0, 1]: {fraction}")
                candidates = [
                    record.id
                    for record in self.select(at, status="all", sort_order="asc")
                    if since is None or record.created >= _epoch(since)
                ]
                chosen = sorted(rng.sample(candidates, round(fraction * len(candidates))))
            else:
                chosen = list(targets)
            records = []
            for conversation_id in chosen:
                record = self._record(int(conversation_id))
                if record is None:
                    raise ValueError(f"touch: no conversation with id {conversation_id}")
                if record.created > at_ts:
                    raise ValueError(
                        f"touch: conversation {conversation_id} is created at "
                        f"{iso(record.created)}, after the touch at {iso(at_ts)}"
                    )
                records.append(record)
            for record in records:
                team = _TEAMS.get(self.specs[record.mailbox].kind, _TEAMS["support"])
                user = team[rng.randrange(len(team))]
                touches = self._touches.setdefault(record.id, [])
                seq = len(touches)
                u = rng.random()
                if u < 0.5:
                    touch = Touch(at_ts, "note", user, seq=seq)
                elif u < 0.8:
                    tag = rng.randrange(len(_TOUCH_TAGS))
                    touch = Touch(at_ts, "tag", user, tag=tag, seq=seq)
                else:
                    current, _ = self._state(record, at_ts)
                    new = "active" if current in ("closed", "spam") else "closed"
                    touch = Touch(at_ts, "status", user, status=new, seq=seq)
                touches.append(touch)
                touches.sort(key=lambda item: item.at)
            self.version += 1
            self._queries.clear()
        return [record.id for record in records]

    # -- rendering

    def render(
        self, record: _Conversation, now: int, embed_threads: bool, unknown_values: bool = False
    ) -> dict[str, Any]:
        """One conversation's payload at epoch `now`, as a dict."""
        return json.loads(self.render_json(record, now, embed_threads, unknown_values))

    def render_json(
        self, record: _Conversation, now: int, embed_threads: bool, unknown_values: bool = False
    ) -> str:
        """One conversation's payload at epoch `now`, as the JSON text the API sends.

        Built from cached, pre-escaped fragments rather than dicts: a page of 25 with
        threads renders in well under a millisecond, several times faster than json.dumps.
        """
        view = self._view(record, now)
        spec = self.specs[record.mailbox]
        mailbox_id = self.mailbox_ids[record.mailbox]
        topics = _TOPICS.get(spec.kind, _TOPICS["support"])
        subject, opening, _ = topics[record.topic]
        customer = _customer_json(record.customer)
        status = view.status
        if unknown_values and status == "closed" and _unknown(record.id, 3):
            status = UNKNOWN_STATUS
        tags = [_tag_json(topics[t][2] if t >= 0 else "urgent") for t in record.tags]
        tags.extend(_tag_json(_TOUCH_TAGS[tag]) for _at, tag in view.touch_tags)
        if status == "spam":
            folder = mailbox_id * 10 + 4
        elif status in ("closed", UNKNOWN_STATUS):
            folder = mailbox_id * 10 + 3
        else:
            folder = mailbox_id * 10 + (2 if view.assignee is not None else 1)
        conversation = f"{API_ROOT}/conversations/{record.id}"
        links = [
            f'"self":{{"href":"{conversation}"}}',
            f'"mailbox":{{"href":"{API_ROOT}/mailboxes/{mailbox_id}"}}',
            f'"primaryCustomer":{{"href":"{API_ROOT}/customers/{customer.id}"}}',
        ]
        if record.type == "phone":
            agent = record.threads[0][3]
            links.append(f'"createdByUser":{{"href":"{API_ROOT}/users/{_USER_ID_BASE + agent}"}}')
            created_by = _USER_REF_JSON[agent]
            source = '{"type":"web","via":"user"}'
            subject = f"Trucada: {subject}"
        else:
            links.append(f'"createdByCustomer":{{"href":"{API_ROOT}/customers/{customer.id}"}}')
            created_by = customer.created_by
            source = '{"type":"email","via":"customer"}'
        closed = view.closed_by is not None and status in ("closed", UNKNOWN_STATUS)
        if closed:
            closer = _USER_ID_BASE + view.closed_by
            links.append(f'"closedBy":{{"href":"{API_ROOT}/users/{closer}"}}')
        links.append(f'"threads":{{"href":"{conversation}/threads"}}')
        if view.assignee is not None:
            assignee_id = _USER_ID_BASE + view.assignee
            links.append(f'"assignee":{{"href":"{API_ROOT}/users/{assignee_id}"}}')
        links.append(f'"web":{{"href":"{WEB_ROOT}/conversation/{record.id}/{record.number}"}}')
        extra_thread = unknown_values and _unknown(record.id, 5)
        waiting = iso(view.waiting_since)
        parts = [
            f'{{"id":{record.id},"number":{record.number},'
            f'"threads":{len(view.threads) + extra_thread},"type":"{record.type}",'
            f'"folderId":{folder},"status":"{status}","state":"published",'
            f'"subject":{_q(subject)},"preview":{_q(opening[:100])},"mailboxId":{mailbox_id},'
            f'"assignee":{_USER_JSON[view.assignee] if view.assignee is not None else "null"},'
            f'"createdBy":{created_by},"createdAt":"{iso(record.created)}",'
            f'"closedBy":{closer if closed else "null"},'
            f'"closedByUser":{_USER_JSON[view.closed_by] if closed else "null"},'
            f'"closedAt":{_quoted_iso(view.closed_at) if closed else "null"},'
            f'"userUpdatedAt":"{iso(view.user_updated)}",'
            f'"customerWaitingSince":{{"time":"{waiting}",'
            f'"friendly":"{_friendly(view.waiting_since)}",'
            f'"latestReplyFrom":"{view.latest_from}"}},'
            f'"source":{source},"tags":[{",".join(tags)}],"cc":[],"bcc":[],'
            f'"primaryCustomer":{customer.primary},'
            f'"customFields":{_custom_fields_json(spec.kind, record)},'
            f'"_links":{{{",".join(links)}}}'
        ]
        if unknown_values and _unknown(record.id, 1):
            summary = _q(f"{customer.first} pregunta: {subject.lower()}.")
            parts.append(
                f',"aiSummary":{{"text":{summary},"generatedAt":"{iso(view.modified)}",'
                f'"model":"summary-v2"}}'
            )
        if embed_threads:
            threads = [
                self._thread_json(thread_id, thread, record, customer, spec, view)
                for thread_id, thread in reversed(view.threads)  # newest first
            ]
            if extra_thread:
                threads.append(_unknown_thread_json(record, customer))
            parts.append(f',"_embedded":{{"threads":[{",".join(threads)}]}}')
        parts.append("}")
        return "".join(parts)

    def _thread_json(self, thread_id, thread, record, customer, spec, view) -> str:
        ts, kind, sets, author, body_index, action = thread
        status = sets
        assigned = None
        for _, other in view.threads:
            if other[0] > ts:
                break
            if sets == _NOCHANGE and other[2] != _NOCHANGE:
                status = other[2]  # the thread shows the status it left the conversation in
            if other[1] == "message" or (other[5] and other[5][0] == "changed-ticket-assignee"):
                assigned = other[3]
        if status == _NOCHANGE:
            status = "active"
        if author == _CUSTOMER:
            created_by = customer.created_by
            source = '{"type":"email","via":"customer"}'
            links = f'{{"createdByCustomer":{{"href":"{API_ROOT}/customers/{customer.id}"}}}}'
        else:
            created_by = _USER_JSON[author]
            if kind == "message":
                source = '{"type":"email","via":"user"}'
            else:
                source = '{"type":"web","via":"user"}'
            links = _USER_LINKS_JSON[author]
        topics = _TOPICS.get(spec.kind, _TOPICS["support"])
        body = ""
        to = "[]"
        opened_at = "null"
        if kind == "customer":
            if body_index == 0 and ts == record.created:
                text = topics[record.topic][1]
            else:
                text = _FOLLOWUPS[body_index % len(_FOLLOWUPS)]
            body = f'"body":{_q(f"<p>Hola,</p><p>{text}</p><p>{customer.first}</p>")},'
            to = f"[{_q(spec.email)}]"
        elif kind == "message":
            text = _REPLIES[body_index % len(_REPLIES)]
            html = (
                f"<p>Hola {customer.first},</p><p>{text}</p>"
                f"<p>Salutacions,<br>{_AGENTS[author][0]}</p>"
            )
            body = f'"body":{_q(html)},'
            to = f"[{customer.email}]"
            for _, other in view.threads:  # the customer read the reply before answering it
                if other[0] > ts and other[1] == "customer":
                    opened_at = f'"{iso(other[0])}"'
                    break
        elif kind == "note":
            body = f'"body":{_q(f"<p>{_NOTES[body_index % len(_NOTES)]}</p>")},'
        elif kind == "phone":
            body = f'"body":{_q(f"<p>Trucada de {customer.first}: {topics[record.topic][1]}</p>")},'
        return (
            f'{{"id":{thread_id},"type":"{kind}","status":"{status}","state":"published",'
            f'"action":{_action_json(action)},{body}"source":{source},'
            f'"customer":{customer.plain},"createdBy":{created_by},'
            f'"assignedTo":{_USER_JSON[assigned] if assigned is not None else "null"},'
            f'"to":{to},"cc":[],"bcc":[],"createdAt":"{iso(ts)}","openedAt":{opened_at},'
            f'"_embedded":{{"attachments":[]}},"_links":{links}}}'
        )


# --------------------------------------------------------------------------- helpers


def _mailbox_specs(mailboxes: int | Sequence[MailboxSpec | str]) -> list[MailboxSpec]:
    if isinstance(mailboxes, int):
        if mailboxes < 1:
            raise ValueError(f"mailboxes must be at least 1: {mailboxes}")
        specs = list(DEFAULT_MAILBOXES[:mailboxes])
        for i in range(len(specs), mailboxes):
            specs.append(
                MailboxSpec(
                    f"Bústia {i + 1}", f"mailbox-{i + 1}", f"bustia{i + 1}@cooperativa.example"
                )
            )
        return specs
    specs = []
    for i, item in enumerate(mailboxes):
        if isinstance(item, MailboxSpec):
            specs.append(item)
        else:
            slug = _ascii(str(item)).replace("'", "") or f"mailbox-{i + 1}"
            specs.append(MailboxSpec(str(item), slug, f"{slug}@cooperativa.example"))
    if not specs:
        raise ValueError("mailboxes must not be empty")
    return specs


def _cumulative(curve: tuple[float, ...]) -> list[float]:
    total, out = 0.0, []
    for weight in curve:
        total += weight
        out.append(total)
    return out


_CUMULATIVE = {False: _cumulative(_WEEKDAY_CURVE), True: _cumulative(_WEEKEND_CURVE)}


def _unknown(conversation_id: int, which: int) -> bool:
    """Whether the unknown_values fault marks this conversation (deterministic, ~2-4%)."""
    return _mix(conversation_id * 31 + which) % 29 == 0


def _unknown_thread_json(record: _Conversation, customer: _CustomerJson) -> str:
    return (
        f'{{"id":{record.id * 1000 + 999},"type":"{UNKNOWN_THREAD_TYPE}","status":"active",'
        f'"state":"published","action":{_action_json(None)},'
        f'"body":"<p>Missatge rebut per WhatsApp</p>",'
        f'"source":{{"type":"{UNKNOWN_THREAD_TYPE}","via":"customer"}},'
        f'"customer":{customer.plain},"createdBy":{customer.created_by},"assignedTo":null,'
        f'"to":[],"cc":[],"bcc":[],"createdAt":"{iso(record.created)}","openedAt":null,'
        f'"_embedded":{{"attachments":[]}},"_links":{{}}}}'
    )


def _customer(index: int) -> dict[str, Any]:
    first = _FIRST_NAMES[index % len(_FIRST_NAMES)]
    last = _LAST_NAMES[(index // len(_FIRST_NAMES)) % len(_LAST_NAMES)]
    return {
        "id": _CUSTOMER_ID_BASE + index * 7,
        "first": first,
        "last": last,
        "email": f"{_ascii(first)}.{_ascii(last)}{index % 997}@correu.example",
    }


class _CustomerJson:
    """A customer's JSON fragments, computed once per customer."""

    __slots__ = ("id", "first", "email", "plain", "created_by", "primary")

    def __init__(self, index: int):
        customer = _customer(index)
        self.id = customer["id"]
        self.first = customer["first"]
        self.email = _q(customer["email"])
        fields = (
            f'"id":{self.id},"first":{_q(customer["first"])},'
            f'"last":{_q(customer["last"])},"email":{self.email}'
        )
        self.plain = f"{{{fields}}}"
        self.created_by = f'{{{fields},"type":"customer"}}'
        self.primary = self.created_by


_CUSTOMER_CACHE: dict[int, _CustomerJson] = {}


def _customer_json(index: int) -> _CustomerJson:
    found = _CUSTOMER_CACHE.get(index)
    if found is None:
        found = _CUSTOMER_CACHE[index] = _CustomerJson(index)
    return found


def _user(index: int) -> dict[str, Any]:
    first, last = _AGENTS[index]
    return {
        "id": _USER_ID_BASE + index,
        "type": "user",
        "first": first,
        "last": last,
        "email": f"{_ascii(first)}@cooperativa.example",
    }


_USER_JSON = [json.dumps(_user(i), ensure_ascii=False, separators=(",", ":")) for i in range(8)]
_USER_REF_JSON = [
    json.dumps(
        {k: _user(i)[k] for k in ("id", "type", "email")}, ensure_ascii=False, separators=(",", ":")
    )
    for i in range(len(_AGENTS))
]
_USER_LINKS_JSON = [
    f'{{"createdByUser":{{"href":"{API_ROOT}/users/{_USER_ID_BASE + i}"}}}}'
    for i in range(len(_AGENTS))
]
_TAG_CACHE: dict[str, str] = {}
_ACTION_CACHE: dict[tuple[str, str] | None, str] = {}


def _tag_json(name: str) -> str:
    found = _TAG_CACHE.get(name)
    if found is None:
        code = _mix(sum(ord(c) * 131**i for i, c in enumerate(name)))
        color = _TAG_COLORS[code % len(_TAG_COLORS)]
        tag_id = 7000 + code % 90_000
        found = _TAG_CACHE[name] = f'{{"id":{tag_id},"color":"{color}","tag":{_q(name)}}}'
    return found


def _action_json(action: tuple[str, str] | None) -> str:
    found = _ACTION_CACHE.get(action)
    if found is None:
        kind, text = action or ("default", "")
        found = f'{{"type":{_q(kind)},"text":{_q(text)},"associatedEntities":{{}}}}'
        _ACTION_CACHE[action] = found
    return found


def _custom_fields_json(kind: str, record: _Conversation) -> str:
    if kind != "billing":
        return "[]"
    contract = f"CT-{_mix(record.customer) % 900_000 + 100_000}"
    return f'[{{"id":811,"name":"Número de contracte","value":"{contract}","text":"{contract}"}}]'


_DAY_PREFIX: dict[int, str] = {}


def iso(ts: int) -> str:
    """Epoch seconds as the API writes them: UTC `YYYY-MM-DDTHH:MM:SSZ`."""
    day, seconds = divmod(ts, 86400)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = _DAY_PREFIX[day] = time.strftime("%Y-%m-%dT", time.gmtime(day * 86400))
    hours, seconds = divmod(seconds, 3600)
    return f"{prefix}{hours:02d}:{seconds // 60:02d}:{seconds % 60:02d}Z"


def _quoted_iso(ts: int | None) -> str:
    return "null" if ts is None else f'"{iso(ts)}"'


_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _friendly(ts: int) -> str:
    """Help Scout's short date ("Jul 24"), stable so payloads change only with modifiedAt."""
    moment = time.gmtime(ts)
    return f"{_MONTHS[moment.tm_mon - 1]} {moment.tm_mday}"


def _sort_created(world, record, status, modified, now):
    return (record.created, record.id)


def _sort_modified(world, record, status, modified, now):
    return (modified, record.id)


def _sort_number(world, record, status, modified, now):
    return record.number


def _sort_mailbox(world, record, status, modified, now):
    return (world.mailbox_ids[record.mailbox], record.created, record.id)


def _sort_status(world, record, status, modified, now):
    return (status, record.created, record.id)


def _sort_customer_email(world, record, status, modified, now):
    return (_customer(record.customer)["email"], record.id)


def _sort_customer_name(world, record, status, modified, now):
    customer = _customer(record.customer)
    return (f"{customer['first']} {customer['last']}", record.id)


def _sort_subject(world, record, status, modified, now):
    topics = _TOPICS.get(world.specs[record.mailbox].kind, _TOPICS["support"])
    return (topics[record.topic][0], record.id)


def _sort_waiting(world, record, status, modified, now):
    return (world._view(record, now).waiting_since, record.id)


_SORT_KEYS = {
    "createdAt": _sort_created,
    "customerEmail": _sort_customer_email,
    "customerName": _sort_customer_name,
    "mailboxid": _sort_mailbox,
    "modifiedAt": _sort_modified,
    "number": _sort_number,
    "score": _sort_created,  # relevance needs a query; without one it is creation order
    "status": _sort_status,
    "subject": _sort_subject,
    "waitingSince": _sort_waiting,
}
