"""A deterministic CFPB Consumer Complaint Database: complaints from a seed.

Complaints are received every day (weekday seasonality, `daily_rate` on an average
weekday) across realistic products, issues, companies, states and channels. Each
complaint has a hidden life: it is published at some instant (mostly on the day it is
received, some days later: a day already fetched can still grow), the company responds
after a few days ("In progress" until then, then its final response, timeliness, public
response and, when the consumer consented, the narrative), and `update()` can change it
later on top. What the API shows is that life seen at a clock instant, so an upsert
sees records change.

Each day is generated on first use from its own RNG, derived from (seed, day), so any
day always comes out the same; complaint ids encode their day, so a lookup by id
generates one day only.
"""

from __future__ import annotations

import bisect
import math
import random
import threading
from collections import Counter, OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

EASTERN = ZoneInfo("America/New_York")
INDEX = "complaint-public-v2"
ID_EPOCH = date(2011, 12, 1)  # the database's first day
ID_BASE = 2_000_000
IN_PROGRESS = "In progress"
DELIMITER = "\u2022"  # product•sub-product, issue•sub-issue in filters
SORTS = ("relevance_desc", "relevance_asc", "created_date_desc", "created_date_asc")


@dataclass(frozen=True)
class ProductSpec:
    name: str
    weight: float
    sub_products: tuple[tuple[str, float], ...]
    issues: tuple[tuple[str, tuple[str | None, ...]], ...]
    companies: tuple[tuple[str, float], ...]
    narratives: tuple[str, ...]


_BUREAUS = (
    ("EQUIFAX, INC.", 0.32),
    ("Experian Information Solutions Inc.", 0.32),
    ("TRANSUNION INTERMEDIATE HOLDINGS, INC.", 0.31),
    ("CAPITAL ONE FINANCIAL CORPORATION", 0.02),
    ("JPMORGAN CHASE & CO.", 0.015),
    ("Peer Advisors, LLC", 0.015),
)
PRODUCTS = (
    ProductSpec(
        "Credit reporting or other personal consumer reports",
        0.55,
        (
            ("Credit reporting", 0.93),
            ("Other personal consumer report", 0.05),
            ("Credit repair services", 0.02),
        ),
        (
            (
                "Incorrect information on your report",
                (
                    "Information belongs to someone else",
                    "Account status incorrect",
                    "Account information incorrect",
                    "Personal information incorrect",
                ),
            ),
            (
                "Improper use of your report",
                (
                    "Reporting company used your report improperly",
                    "Credit inquiries on your report that you don't recognize",
                ),
            ),
            (
                "Problem with a company's investigation into an existing problem",
                (
                    "Their investigation did not fix an error on your report",
                    "Was not notified of investigation status or results",
                    "Investigation took more than 30 days",
                ),
            ),
            (
                "Unable to get your credit report or credit score",
                ("Other problem getting your report or credit score",),
            ),
        ),
        _BUREAUS,
        (
            "On XX/XX/{year} I pulled my credit report and found an account I do not recognize. "
            "I disputed it with {company} but the account is still being reported.",
            "In accordance with the Fair Credit Reporting Act, the inquiries listed below were "
            "made without my authorization. Please remove them: XXXX XXXX, XXXX.",
            "I have sent three letters to {company} since XX/XX/{year} and they keep verifying "
            "information that is not accurate. My score dropped by 80 points.",
        ),
    ),
    ProductSpec(
        "Debt collection",
        0.10,
        (
            ("I do not know", 0.3),
            ("Other debt", 0.25),
            ("Credit card debt", 0.2),
            ("Medical debt", 0.15),
            ("Auto debt", 0.1),
        ),
        (
            (
                "Attempts to collect debt not owed",
                ("Debt is not yours", "Debt was result of identity theft", "Debt was paid"),
            ),
            (
                "Written notification about debt",
                (
                    "Didn't receive enough information to verify debt",
                    "Notification didn't disclose it was an attempt to collect a debt",
                ),
            ),
            (
                "Took or threatened to take negative or legal action",
                ("Threatened or suggested your credit would be damaged",),
            ),
            ("False statements or representation", ("Attempted to collect wrong amount",)),
        ),
        (
            ("Portfolio Recovery Associates, Inc.", 0.3),
            ("ENCORE CAPITAL GROUP INC.", 0.25),
            ("Resurgent Capital Services L.P.", 0.2),
            ("Kimball, Tirey & St. John LLP", 0.1),
            ("Convergent Resources, Inc.", 0.15),
        ),
        (
            "A collector called me about a debt of {$1200.00} that I do not owe. I asked for "
            "validation on XX/XX/{year} and never received it.",
            "{company} keeps calling my work number even though I told them to stop.",
        ),
    ),
    ProductSpec(
        "Checking or savings account",
        0.08,
        (
            ("Checking account", 0.8),
            ("Savings account", 0.15),
            ("Other banking product or service", 0.05),
        ),
        (
            (
                "Managing an account",
                (
                    "Deposits and withdrawals",
                    "Banking errors",
                    "Funds not handled or disbursed as instructed",
                ),
            ),
            (
                "Closing an account",
                ("Company closed your account", "Funds not received from closed account"),
            ),
            (
                "Problem with a lender or other company charging your account",
                ("Transaction was not authorized",),
            ),
        ),
        (
            ("JPMORGAN CHASE & CO.", 0.25),
            ("BANK OF AMERICA, NATIONAL ASSOCIATION", 0.22),
            ("WELLS FARGO & COMPANY", 0.2),
            ("CITIBANK, N.A.", 0.12),
            ("Navy Federal Credit Union", 0.11),
            ("TRUIST FINANCIAL CORPORATION", 0.1),
        ),
        (
            "{company} closed my checking account without notice and is holding {$2500.00}.",
            "A deposit I made on XX/XX/{year} never showed up in my account.",
        ),
    ),
    ProductSpec(
        "Credit card",
        0.08,
        (("General-purpose credit card or charge card", 0.8), ("Store credit card", 0.2)),
        (
            (
                "Problem with a purchase shown on your statement",
                (
                    "Credit card company isn't resolving a dispute about a purchase on your "
                    "statement",
                    "Card was charged for something you did not purchase with the card",
                ),
            ),
            ("Fees or interest", ("Problem with fees", "Charged too much interest")),
            ("Getting a credit card", ("Card opened without my consent or knowledge",)),
        ),
        (
            ("CAPITAL ONE FINANCIAL CORPORATION", 0.25),
            ("CITIBANK, N.A.", 0.2),
            ("JPMORGAN CHASE & CO.", 0.18),
            ("SYNCHRONY FINANCIAL", 0.17),
            ("AMERICAN EXPRESS COMPANY", 0.1),
            ("DISCOVER BANK", 0.1),
        ),
        (
            "I disputed a charge of {$89.99} with {company} on XX/XX/{year}. They sided with "
            "the merchant without looking at my evidence.",
        ),
    ),
    ProductSpec(
        "Mortgage",
        0.05,
        (
            ("Conventional home mortgage", 0.55),
            ("FHA mortgage", 0.2),
            ("VA mortgage", 0.1),
            ("Home equity loan or line of credit (HELOC)", 0.1),
            ("Reverse mortgage", 0.05),
        ),
        (
            ("Trouble during payment process", (None,)),
            ("Struggling to pay mortgage", (None,)),
            ("Applying for a mortgage or refinancing an existing mortgage", (None,)),
            ("Closing on a mortgage", (None,)),
        ),
        (
            ("Rocket Mortgage, LLC", 0.2),
            ("Nationstar Mortgage LLC", 0.2),
            ("WELLS FARGO & COMPANY", 0.2),
            ("LAKEVIEW LOAN SERVICING, LLC", 0.15),
            ("NewRez LLC", 0.15),
            ("Peer Advisors, LLC", 0.1),
        ),
        (
            "My escrow payment went up by {$450.00} a month and {company} cannot explain why.",
            "I applied for a loan modification on XX/XX/{year} and have heard nothing since.",
        ),
    ),
    ProductSpec(
        "Money transfer, virtual currency, or money service",
        0.05,
        (
            ("Mobile or digital wallet", 0.5),
            ("Domestic (US) money transfer", 0.3),
            ("Virtual currency", 0.1),
            ("International money transfer", 0.1),
        ),
        (
            ("Fraud or scam", (None,)),
            ("Unauthorized transactions or other transaction problem", (None,)),
            ("Managing, opening, or closing your mobile wallet account", (None,)),
        ),
        (
            ("Block, Inc.", 0.35),
            ("PayPal Holdings, Inc.", 0.35),
            ("Coinbase, Inc.", 0.15),
            ("Early Warning Services, LLC", 0.15),
        ),
        ("I sent {$300.00} to a seller who never delivered and {company} refused to help.",),
    ),
    ProductSpec(
        "Vehicle loan or lease",
        0.03,
        (("Loan", 0.85), ("Lease", 0.15)),
        (
            (
                "Managing the loan or lease",
                ("Billing problems", "Problems when you are unable to pay"),
            ),
            ("Struggling to pay your loan", ("Denied request to lower payments",)),
        ),
        (
            ("Ally Financial Inc.", 0.4),
            ("Santander Consumer USA Holdings Inc.", 0.35),
            ("CAPITAL ONE FINANCIAL CORPORATION", 0.25),
        ),
        ("{company} charged me a late fee although my payment posted on XX/XX/{year}.",),
    ),
    ProductSpec(
        "Student loan",
        0.02,
        (("Federal student loan servicing", 0.8), ("Private student loan", 0.2)),
        (
            (
                "Dealing with your lender or servicer",
                (
                    "Trouble with how payments are being handled",
                    "Received bad information about your loan",
                ),
            ),
            ("Struggling to repay your loan", ("Problem lowering your monthly payments",)),
        ),
        (
            ("Nelnet, Inc.", 0.35),
            ("MOHELA", 0.35),
            ("Navient Solutions, LLC.", 0.15),
            ("Aidvantage", 0.15),
        ),
        ("My income-driven repayment application has been pending with {company} for months.",),
    ),
    ProductSpec(
        "Payday loan, title loan, personal loan, or advance loan",
        0.02,
        (("Installment loan", 0.6), ("Payday loan", 0.25), ("Personal line of credit", 0.15)),
        (
            ("Charged fees or interest you didn't expect", (None,)),
            ("Getting the loan", (None,)),
        ),
        (("OneMain Finance Corporation", 0.6), ("Enova International, Inc.", 0.4)),
        ("The APR on my loan from {company} is much higher than what I was quoted.",),
    ),
    ProductSpec(
        "Prepaid card",
        0.02,
        (("General-purpose prepaid card", 0.7), ("Government benefit card", 0.3)),
        (
            ("Unauthorized transactions or other transaction problem", (None,)),
            ("Trouble using the card", ("Trouble using the card to pay",)),
        ),
        (("Conduent Business Services, LLC", 0.5), ("Green Dot Corporation", 0.5)),
        ("My benefits card was frozen and {company} will not return my {$640.00}.",),
    ),
)

# (state, weight, first ZIP3, last ZIP3)
STATES = (
    ("CA", 12.0, 900, 961), ("FL", 11.0, 320, 349), ("TX", 10.0, 750, 799),
    ("NY", 6.0, 100, 149), ("GA", 6.0, 300, 319), ("PA", 4.0, 150, 196),
    ("IL", 4.0, 600, 629), ("NC", 4.0, 270, 289), ("OH", 3.5, 430, 459),
    ("NJ", 3.0, 70, 89), ("VA", 3.0, 220, 246), ("MI", 3.0, 480, 499),
    ("MD", 2.5, 206, 219), ("AZ", 2.3, 850, 865), ("WA", 2.0, 980, 994),
    ("TN", 2.0, 370, 385), ("MA", 2.0, 10, 27), ("SC", 1.6, 290, 299),
    ("IN", 1.6, 460, 479), ("MO", 1.5, 630, 658), ("CO", 1.5, 800, 816),
    ("AL", 1.3, 350, 369), ("LA", 1.3, 700, 714), ("NV", 1.2, 889, 898),
    ("WI", 1.2, 530, 549), ("MN", 1.1, 550, 567), ("KY", 1.0, 400, 427),
    ("OK", 0.9, 730, 749), ("OR", 0.9, 970, 979), ("CT", 0.9, 60, 69),
    ("MS", 0.8, 386, 397), ("AR", 0.7, 716, 729), ("UT", 0.7, 840, 847),
    ("KS", 0.6, 660, 679), ("IA", 0.6, 500, 528), ("NM", 0.5, 870, 884),
    ("DC", 0.4, 200, 205), ("DE", 0.4, 197, 199), ("NE", 0.4, 680, 693),
    ("ID", 0.4, 832, 838), ("WV", 0.4, 247, 268), ("HI", 0.3, 967, 968),
    ("NH", 0.3, 30, 38), ("RI", 0.3, 28, 29), ("ME", 0.2, 39, 49),
    ("MT", 0.2, 590, 599), ("PR", 0.2, 6, 9), ("AK", 0.15, 995, 999),
    ("SD", 0.1, 570, 577), ("ND", 0.1, 580, 588), ("VT", 0.1, 50, 59),
    ("WY", 0.1, 820, 831), (None, 0.3, 0, 0),
)  # fmt: skip
# every code the search API accepts as a state (localflavor's STATE_CHOICES)
STATE_CHOICES = frozenset(
    {s for s, *_ in STATES if s} | {"AA", "AE", "AP", "AS", "FM", "GU", "MH", "MP", "PW", "VI"}
)
SUBMITTED_VIA = (
    ("Web", 0.82),
    ("Web Referral", 0.05),
    ("Referral", 0.06),
    ("Phone", 0.04),
    ("Postal mail", 0.02),
    ("Email", 0.005),
    ("Fax", 0.005),
)
TAGS = (
    (None, 0.86),
    ("Older American", 0.08),
    ("Servicemember", 0.05),
    ("Older American, Servicemember", 0.01),
)
RESPONSES = (
    ("Closed with explanation", 0.78),
    ("Closed with non-monetary relief", 0.12),
    ("Closed with monetary relief", 0.04),
    ("Closed", 0.01),
    ("Untimely response", 0.01),
    (IN_PROGRESS, 0.04),  # never answered within the simulated horizon
)
PUBLIC_RESPONSES = (
    (None, 0.42),
    (
        "Company has responded to the consumer and the CFPB and chooses not to provide a "
        "public response",
        0.45,
    ),
    ("Company believes it acted appropriately as authorized by contract or law", 0.1),
    ("Company believes the complaint provided an opportunity to answer consumer's questions", 0.03),
)
_DOW_FACTOR = (1.18, 1.12, 1.08, 1.05, 0.95, 0.35, 0.27)  # Monday..Sunday
_NARRATIVE_SHARE = 0.35


def _cumulative(weights: Iterable[float]) -> list[float]:
    out, total = [], 0.0
    for weight in weights:
        total += weight
        out.append(total)
    return out


def _pick_index(rng: random.Random, cum: list[float]) -> int:
    return min(bisect.bisect_right(cum, rng.random() * cum[-1]), len(cum) - 1)


def _pick(rng: random.Random, options: Sequence[tuple[Any, float]], cum: list[float]) -> Any:
    return options[_pick_index(rng, cum)][0]


_PRODUCT_CUM = _cumulative(p.weight for p in PRODUCTS)
_SUB_CUM = [_cumulative(w for _, w in p.sub_products) for p in PRODUCTS]
_COMPANY_CUM = [_cumulative(w for _, w in p.companies) for p in PRODUCTS]
_STATE_CUM = _cumulative(w for _, w, *_ in STATES)
_VIA_CUM = _cumulative(w for _, w in SUBMITTED_VIA)
_TAGS_CUM = _cumulative(w for _, w in TAGS)
_RESPONSE_CUM = _cumulative(w for _, w in RESPONSES)
_PUBLIC_CUM = _cumulative(w for _, w in PUBLIC_RESPONSES)


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


def day_start(day: date) -> int:
    """Epoch seconds of a day's midnight in Eastern time (the CFPB's day)."""
    return int(datetime(day.year, day.month, day.day, tzinfo=EASTERN).timestamp())


def received_text(day: date) -> str:
    """A date as `_source` writes it: noon with a fixed -05:00 offset, whatever the season."""
    return f"{day.isoformat()}T12:00:00-05:00"


def sort_millis(day: date) -> int:
    """The `sort` value of a complaint received on `day`: epoch ms of its noon -05:00."""
    return (day.toordinal() - 719163) * 86_400_000 + 17 * 3_600_000


def epoch(moment: datetime | None) -> int:
    if moment is None:
        return int(datetime.now(UTC).timestamp())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


class Complaint:
    """One complaint's whole life, compact; `_source` views are rendered from it."""

    __slots__ = (
        "id",
        "day",
        "published",
        "sent_day",
        "product",
        "sub_product",
        "issue",
        "sub_issue",
        "company",
        "state",
        "zip_code",
        "via",
        "tags",
        "responded",
        "response",
        "timely",
        "public_response",
        "narrative",
    )

    def __init__(self, **values: Any):
        for key, value in values.items():
            setattr(self, key, value)

    @property
    def complaint_id(self) -> str:
        return str(self.id)


@dataclass(frozen=True)
class Update:
    """A later change to a complaint's `_source` fields, visible from `at` (epoch s)."""

    at: int
    changes: tuple[tuple[str, Any], ...]


class CfpbWorld:
    """The simulated complaint index. Thread-safe; deterministic given the seed."""

    def __init__(
        self,
        seed: int = 7,
        start: date = date(2024, 1, 1),
        daily_rate: float = 300.0,
        late_share: float = 0.2,
        cache_queries: int = 64,
    ):
        """`daily_rate`: complaints on an average weekday; `late_share`: the share
        published one to fifteen days after the day they were received (0: none)."""
        if daily_rate <= 0:
            raise ValueError(f"daily_rate must be positive: {daily_rate}")
        self.seed = seed
        self.start = start
        self.daily_rate = daily_rate
        self.late_share = late_share
        # ids encode their day: day_offset * stride + rank, ranks spread with gaps
        self.stride = max(1200, math.ceil(self._capacity(daily_rate * 1.3) * 3 / 100) * 100)
        self._lock = threading.RLock()
        self._days: dict[int, list[Complaint]] = {}
        self._updates: dict[int, list[Update]] = {}
        self._queries: OrderedDict[tuple, Any] = OrderedDict()
        self._cache_queries = cache_queries
        self.version = 0  # bumped by every update: query caches key on it

    # -- arrivals

    def expected_daily(self, day: date) -> float:
        """The mean number of complaints received on a day."""
        years = (day - date(2020, 1, 1)).days / 365.25
        trend = 1.0 + 0.04 * years
        holiday = 0.5 if (day.month, day.day) in ((1, 1), (7, 4), (12, 25)) else 1.0
        return self.daily_rate * _DOW_FACTOR[day.weekday()] * trend * holiday

    @staticmethod
    def _capacity(rate: float) -> int:
        return int(rate + 6 * math.sqrt(rate) + 12)

    def day(self, day: date) -> list[Complaint]:
        """Every complaint received on `day` (published or not), by id."""
        key = day.toordinal()
        found = self._days.get(key)
        if found is None:
            with self._lock:
                found = self._days.get(key)
                if found is None:
                    found = self._generate(day) if day >= self.start else []
                    self._days[key] = found
        return found

    def _generate(self, day: date) -> list[Complaint]:
        rng = random.Random(self.seed * 1_000_003 + day.toordinal() * 7_919 + 104_729)
        rate = self.expected_daily(day)
        count = min(_poisson(rng, rate), self.stride // 3)
        base = ID_BASE + (day - ID_EPOCH).days * self.stride
        ranks = sorted(rng.sample(range(1, self.stride), count))
        midnight = day_start(day)
        out = []
        for rank in ranks:
            out.append(self._complaint(rng, base + rank, day, midnight))
        return out

    def _complaint(self, rng: random.Random, id_: int, day: date, midnight: int) -> Complaint:
        p = _pick_index(rng, _PRODUCT_CUM)
        spec = PRODUCTS[p]
        sub_product = _pick(rng, spec.sub_products, _SUB_CUM[p])
        issue, sub_issues = spec.issues[rng.randrange(len(spec.issues))]
        sub_issue = sub_issues[rng.randrange(len(sub_issues))]
        company = _pick(rng, spec.companies, _COMPANY_CUM[p])
        state, _w, low, high = STATES[_pick_index(rng, _STATE_CUM)]
        zip_code = f"{rng.randint(low, high):03d}XX" if state and rng.random() > 0.02 else None
        via = _pick(rng, SUBMITTED_VIA, _VIA_CUM)
        tags = _pick(rng, TAGS, _TAGS_CUM)
        # published: during the day received, or (late_share) 1-15 days later
        published = midnight + rng.randrange(86_400)
        if rng.random() < self.late_share:
            published += 86_400 * (1 + min(14, int(rng.expovariate(1 / 3.0))))
        sent = 0 if rng.random() < 0.7 else rng.choice((1, 1, 1, 2, 3))
        response = _pick(rng, RESPONSES, _RESPONSE_CUM)
        if response == IN_PROGRESS:
            responded = None
            timely = "Yes"
        else:
            days = min(60.0, rng.lognormvariate(math.log(5.0), 0.7))
            if response == "Untimely response":
                days = 16 + rng.random() * 20
            responded = midnight + int(86_400 * max(0.25, days))
            timely = "No" if days > 15 else "Yes"
        public = _pick(rng, PUBLIC_RESPONSES, _PUBLIC_CUM)
        narrative = None
        if rng.random() < _NARRATIVE_SHARE:
            template = spec.narratives[rng.randrange(len(spec.narratives))]
            narrative = template.replace("{company}", company).replace("{year}", str(day.year))
        return Complaint(
            id=id_,
            day=day,
            published=published,
            sent_day=day + timedelta(days=sent),
            product=spec.name,
            sub_product=sub_product,
            issue=issue,
            sub_issue=sub_issue,
            company=company,
            state=state,
            zip_code=zip_code,
            via=via,
            tags=tags,
            responded=responded,
            response=response,
            timely=timely,
            public_response=public,
            narrative=narrative,
        )

    def generate(self, start: date | None = None, end: date | None = None) -> int:
        """Generate (and cache) every day from start to end inclusive; the count."""
        first = start or self.start
        last = end or datetime.now(EASTERN).date()
        return sum(len(self.day(first + timedelta(days=d))) for d in range((last - first).days + 1))

    # -- single complaints

    def find(self, complaint_id: int | str) -> Complaint | None:
        """A complaint by id, published or not (generates only its day)."""
        try:
            number = int(complaint_id)
        except (TypeError, ValueError):
            return None
        offset, rank = divmod(number - ID_BASE, self.stride)
        if number < ID_BASE or rank == 0:
            return None
        day = ID_EPOCH + timedelta(days=offset)
        if day < self.start or day > date(9000, 1, 1):
            return None
        records = self.day(day)
        lo, hi = 0, len(records)
        while lo < hi:
            mid = (lo + hi) // 2
            if records[mid].id < number:
                lo = mid + 1
            else:
                hi = mid
        return records[lo] if lo < len(records) and records[lo].id == number else None

    def published_at(self, complaint_id: int | str) -> datetime | None:
        record = self.find(complaint_id)
        return None if record is None else datetime.fromtimestamp(record.published, UTC)

    def complaint(self, complaint_id: int | str, at: datetime | None = None) -> dict | None:
        """A complaint's `_source` as the API shows it at `at` (None if not published)."""
        record = self.find(complaint_id)
        t = epoch(at)
        if record is None or record.published > t:
            return None
        return self.source(record, t)

    def source(self, record: Complaint, t: int) -> dict[str, Any]:
        """A complaint's `_source` at epoch second `t` (its life plus later updates)."""
        answered = record.responded is not None and t >= record.responded
        narrative = record.narrative if answered and record.narrative else None
        source = {
            "complaint_id": str(record.id),
            "date_received": received_text(record.day),
            "date_sent_to_company": received_text(record.sent_day),
            "product": record.product,
            "sub_product": record.sub_product,
            "issue": record.issue,
            "sub_issue": record.sub_issue,
            "company": record.company,
            "state": record.state,
            "zip_code": record.zip_code,
            "submitted_via": record.via,
            "company_response": record.response if answered else IN_PROGRESS,
            "company_public_response": record.public_response if answered else None,
            "timely": record.timely if answered else "Yes",
            "tags": record.tags,
            "has_narrative": narrative is not None,
            "complaint_what_happened": narrative or "",
        }
        for update in self._updates.get(record.id, ()):
            if update.at <= t:
                source.update(update.changes)
        return source

    def update(self, complaint_ids: Iterable[int | str], at: datetime, **changes: Any) -> list[str]:
        """Change complaints from `at` on; the ids changed. Without `changes`, each moves
        one step along a company's usual path: "In progress" -> "Closed with
        explanation" (timely), then a public response, then "Closed with non-monetary
        relief"."""
        t = epoch(at)
        done = []
        with self._lock:
            for complaint_id in complaint_ids:
                record = self.find(complaint_id)
                if record is None:
                    raise KeyError(f"no complaint {complaint_id}")
                step = changes or _next_step(self.source(record, t))
                updates = [*self._updates.get(record.id, ()), Update(t, tuple(step.items()))]
                # a new list, swapped in: readers never see one being sorted
                self._updates[record.id] = sorted(updates, key=lambda u: u.at)
                done.append(str(record.id))
            self.version += 1
            self._queries.clear()
        return done

    # -- listings

    def complaints(
        self,
        date_min: date | None = None,
        date_max: date | None = None,
        at: datetime | None = None,
    ) -> list[dict[str, Any]]:
        """Every complaint published by `at` with date_received in [date_min, date_max)
        as `_source` dicts, oldest first (by date received, then id)."""
        t = epoch(at)
        return [self.source(r, t) for r in self.visible(t, date_min, date_max)]

    def visible(self, t: int, date_min: date | None = None, date_max: date | None = None):
        """The complaints published by epoch `t` received in [date_min, date_max)."""
        today = datetime.fromtimestamp(t, EASTERN).date()
        first = max(self.start, date_min or self.start)
        last = min(today, (date_max - timedelta(days=1)) if date_max else today)
        out: list[Complaint] = []
        for offset in range((last - first).days + 1):
            day = first + timedelta(days=offset)
            records = self.day(day)
            if day_start(day) + 16 * 86_400 <= t:  # every complaint of the day is out
                out.extend(records)
            else:
                out.extend(r for r in records if r.published <= t)
        return out

    def stats(self, t: int) -> tuple[int, date | None, date | None]:
        """(published complaints, latest date received, latest publication date) at `t`."""
        key = ("stats", t, self.version)
        cached = self._cached(key)
        if cached is not None:
            return cached
        records = self.visible(t)
        latest = max((r.day for r in records), default=None)
        published = max((r.published for r in records), default=None)
        indexed = None if published is None else datetime.fromtimestamp(published, EASTERN).date()
        return self._store(key, (len(records), latest, indexed))

    def search(self, t: int, query: Query) -> list[tuple[tuple, float | None, Complaint]]:
        """Hits of a search at epoch `t`, in the query's sort order: (sort key, score,
        complaint), the sort key being what the API's `sort` array shows."""
        key = ("search", t, self.version, query)
        cached = self._cached(key)
        if cached is not None:
            return cached
        hits = []
        terms = [w.lower() for w in (query.search_term or "").split() if w]
        for record in self.visible(t, query.date_min, query.date_max):
            if not query.matches(record, self, t):
                continue
            score = None
            if terms:
                text = query.searched_text(record, self, t).lower()
                score = float(sum(text.count(term) for term in terms))
                if not score:
                    continue
            hits.append((record, score))
        relevance = query.sort.startswith("relevance")
        descending = query.sort.endswith("desc")
        if relevance:
            rows = [((1.0 if s is None else s, str(r.id)), s or 1.0, r) for r, s in hits]
        else:
            rows = [((sort_millis(r.day), str(r.id)), None, r) for r, s in hits]
        rows.sort(key=lambda row: row[0], reverse=descending)
        return self._store(key, rows)

    def aggregations(self, t: int, query: Query) -> dict[str, Any]:
        """A small set of OpenSearch-shaped terms aggregations over a search's hits."""
        key = ("aggregations", t, self.version, query)
        cached = self._cached(key)
        if cached is not None:
            return cached
        out: dict[str, Any] = {}
        sources = [self.source(r, t) for _k, _s, r in self.search(t, query)]
        for name in ("product", "state", "company_response", "timely", "submitted_via"):
            counts = Counter(s[name] for s in sources if s[name] is not None)
            top = counts.most_common(10)
            out[name] = {
                "doc_count": len(sources),
                name: {
                    "doc_count_error_upper_bound": 0,
                    "sum_other_doc_count": sum(counts.values()) - sum(c for _k, c in top),
                    "buckets": [{"key": k, "doc_count": c} for k, c in top],
                },
            }
        narrative = Counter(s["has_narrative"] for s in sources)
        out["has_narrative"] = {
            "doc_count": len(sources),
            "has_narrative": {
                "doc_count_error_upper_bound": 0,
                "sum_other_doc_count": 0,
                "buckets": [
                    {"key": int(k), "key_as_string": str(k).lower(), "doc_count": c}
                    for k, c in narrative.most_common()
                ],
            },
        }
        return self._store(key, out)

    # -- cache

    def _cached(self, key: tuple) -> Any:
        with self._lock:
            found = self._queries.get(key)
            if found is not None:
                self._queries.move_to_end(key)
            return found

    def _store(self, key: tuple, value: Any) -> Any:
        with self._lock:
            self._queries[key] = value
            while len(self._queries) > self._cache_queries:
                self._queries.popitem(last=False)
        return value


_STATIC_FIELDS = {
    "company": "company",
    "state": "state",
    "zip_code": "zip_code",
    "submitted_via": "via",
    "tags": "tags",
}


@dataclass(frozen=True)
class Query:
    """What a search asks for, hashable so results can be cached."""

    sort: str = "relevance_desc"
    date_min: date | None = None
    date_max: date | None = None
    company_received_min: date | None = None
    company_received_max: date | None = None
    search_term: str | None = None
    field: str = "complaint_what_happened"
    include: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (field, values): any of them
    exclude: tuple[tuple[str, tuple[str, ...]], ...] = ()  # not_<field>: none of them

    def matches(self, record: Complaint, world: CfpbWorld, t: int) -> bool:
        if self.company_received_min and record.sent_day < self.company_received_min:
            return False
        if self.company_received_max and record.sent_day >= self.company_received_max:
            return False
        source = None
        for name, values in self.include:
            value, source = _field_value(record, name, values, world, t, source)
            if not value:
                return False
        for name, values in self.exclude:
            value, source = _field_value(record, name, values, world, t, source)
            if value:
                return False
        return True

    def searched_text(self, record: Complaint, world: CfpbWorld, t: int) -> str:
        source = world.source(record, t)
        if self.field == "company":
            return source["company"]
        if self.field in ("all", "_all"):
            return " ".join(str(v) for v in source.values() if isinstance(v, str))
        return source["complaint_what_happened"]


def _field_value(record, name, values, world, t, source):
    """Whether a complaint's field matches any of `values`; the `_source` if it was built."""
    if name == "product":
        for value in values:
            product, _, sub = value.partition(DELIMITER)
            if record.product == product and (not sub or record.sub_product == sub):
                return True, source
        return False, source
    if name == "issue":
        for value in values:
            issue, _, sub = value.partition(DELIMITER)
            if record.issue == issue and (not sub or record.sub_issue == sub):
                return True, source
        return False, source
    attribute = _STATIC_FIELDS.get(name)
    if attribute is not None:
        return getattr(record, attribute) in values, source
    if source is None:
        source = world.source(record, t)
    value = source.get(name)
    if isinstance(value, bool):
        value = "true" if value else "false"
        return value in {v.lower() for v in values}, source
    return value in values, source


def _next_step(source: dict[str, Any]) -> dict[str, Any]:
    if source["company_response"] == IN_PROGRESS:
        return {"company_response": "Closed with explanation", "timely": "Yes"}
    if source["company_public_response"] is None:
        return {
            "company_public_response": (
                "Company believes it acted appropriately as authorized by contract or law"
            )
        }
    if source["company_response"] != "Closed with non-monetary relief":
        return {"company_response": "Closed with non-monetary relief"}
    return {"company_response": "Closed with explanation"}
