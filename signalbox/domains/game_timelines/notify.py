"""What a game-timelines run tells people (e-mail and the on-call chat): every day it
loaded, skipped, failed on or never tried. The run-status sensors (sensors.py) build it
from the run's per-day materialization metadata and send it; a channel that fails is
logged and never changes the run's outcome.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

from signalbox.platform.email import EmailResource
from signalbox.platform.telegram import TelegramResource, html_escape

log = logging.getLogger(__name__)

CHAT_ERROR_LIMIT = 1500  # characters of an error shown in the chat (the e-mail has it all)


@dataclass(frozen=True)
class DayOutcome:
    """One day of a run, for people."""

    day: date
    status: str  # loaded | restored (from the parquet file) | skipped | failed | not tried
    rows: int | None = None
    characters_with_rows: int | None = None
    characters: int | None = None
    pages: int | None = None
    object_url: str | None = None
    parquet_bytes: int | None = None
    replaced_rows: int | None = None
    error: str | None = None

    @classmethod
    def from_metadata(cls, day: date, metadata: Mapping[str, Any]) -> DayOutcome:
        """A stored day, from its materialization's metadata (raw.py writes these fields)."""
        status = str(metadata.get("status", ""))
        kind = next((k for k in ("loaded", "restored", "skipped") if status.startswith(k)), None)
        if kind is None:
            raise ValueError(f"neople {day}: unknown day status {status!r} in its metadata")
        return cls(
            day,
            kind,
            rows=metadata.get("dagster/row_count"),
            characters_with_rows=metadata.get("characters"),
            characters=metadata.get("characters_configured"),
            pages=metadata.get("pages"),
            object_url=metadata.get("object_url"),
            parquet_bytes=metadata.get("parquet_bytes"),
            replaced_rows=metadata.get("replaced_rows"),
        )

    def line(self) -> str:
        if self.status == "failed":
            return f"{self.day}  FAILED: {self.error}"
        if self.status == "not tried":
            return f"{self.day}  not tried (the run stopped at the failed day)"
        counts = (
            f"{self.rows:,} rows, {self.characters_with_rows}/{self.characters} characters "
            f"with events"
        )
        if self.status == "skipped":
            return f"{self.day}  already stored ({counts}): {self.object_url}"
        if self.status == "restored":
            return (
                f"{self.day}  {self.rows:,} rows reloaded into Postgres from "
                f"{self.object_url} (the API was not called)"
            )
        return (
            f"{self.day}  {counts}, {self.pages} pages, replaced {self.replaced_rows:,} rows: "
            f"{self.object_url} ({self.parquet_bytes:,} bytes)"
        )


@dataclass(frozen=True)
class Notification:
    subject: str
    text: str
    html: str
    chat: str  # Telegram HTML


def _span(days: Sequence[date]) -> str:
    if not days:
        return "-"
    first, last = min(days), max(days)
    return str(first) if first == last else f"{first}..{last}"


def _days(outcomes: Sequence[DayOutcome]) -> str:
    """Every day named: consecutive days as one span."""
    days = sorted(o.day for o in outcomes)
    runs: list[list[date]] = []
    for day in days:
        if runs and (day - runs[-1][-1]).days == 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(_span(run) for run in runs)


def _rows(outcomes: Sequence[DayOutcome]) -> str:
    return f"{sum(o.rows or 0 for o in outcomes):,} rows"


def _count(outcomes: Sequence[DayOutcome]) -> str:
    return f"{len(outcomes)} day{'s' if len(outcomes) != 1 else ''}"


def compose(outcomes: Sequence[DayOutcome], error: str | None = None) -> Notification:
    """The message for a run: every day it loaded, skipped or failed on, and its error."""
    loaded = [o for o in outcomes if o.status in ("loaded", "restored")]
    fetched = [o for o in loaded if o.status == "loaded"]
    restored = [o for o in loaded if o.status == "restored"]
    skipped = [o for o in outcomes if o.status == "skipped"]
    failed = [o for o in outcomes if o.status == "failed"]
    untried = [o for o in outcomes if o.status == "not tried"]
    span = _span([o.day for o in outcomes])
    if failed or error:
        headline = f"Neople timelines {span} (KST): FAILED on {_span([o.day for o in failed])}"
        if untried:
            headline += f", not tried {_days(untried)}"
        summary = (
            "The failed day was not replaced: its previous data (if any) is intact in "
            "Postgres and the object store."
        )
        if untried:
            summary += f" Not tried: {_days(untried)}; re-run the range."
    else:
        done = []
        if fetched or not restored:
            done.append(f"loaded {_rows(fetched)} ({_count(fetched)})")
        if restored:
            done.append(f"reloaded {_rows(restored)} from the object store ({_count(restored)})")
        headline = f"Neople timelines {span} (KST): {', '.join(done)}"
        summary = (
            f"{len(skipped)} day(s) were already stored and not fetched again." if skipped else ""
        )
    subject = f"signalbox: {headline}"
    lines = [headline, ""]
    lines += [f"- {o.line()}" for o in [*loaded, *failed, *untried, *skipped]]
    if error:
        lines += ["", f"Error: {error}"]
    if summary:
        lines += ["", summary]
    text = "\n".join(lines) + "\n"

    def day_html(o: DayOutcome, limit: int | None) -> str:
        if o.status == "failed":
            message = o.error or ""
            if limit and len(message) > limit:
                message = message[: limit - 1] + "…"
            return f"<b>{o.day}</b> FAILED: {html_escape(message)}"
        if o.status == "not tried":
            return f"<b>{o.day}</b> not tried"
        counts = f"{o.rows:,} rows, {o.characters_with_rows}/{o.characters} characters"
        where = f"<code>{html_escape(o.object_url or '-')}</code>"
        if o.status == "skipped":
            return f"<b>{o.day}</b> already stored ({counts}) {where}"
        if o.status == "restored":
            return f"<b>{o.day}</b> {o.rows:,} rows reloaded into Postgres from {where}"
        return f"<b>{o.day}</b> {counts}, {o.pages} pages {where}"

    def html_body(limit: int | None) -> list[str]:
        body = [f"<b>{html_escape(headline)}</b>"]
        body += [day_html(o, limit) for o in [*loaded, *failed, *untried, *skipped]]
        if error and not failed:
            shown = error if not limit or len(error) <= limit else error[: limit - 1] + "…"
            body.append(f"Error: {html_escape(shown)}")
        if summary:
            body.append(f"<i>{html_escape(summary)}</i>")
        return body

    html = "<br>\n".join(html_body(None))
    chat = "\n".join(html_body(CHAT_ERROR_LIMIT))
    return Notification(subject, text, f"<p>{html}</p>", chat)


def send(
    notification: Notification,
    email: EmailResource | None,
    telegram: TelegramResource | None,
    logger: Any = None,
) -> dict[str, str]:
    """Send on every channel given; `{channel: "sent" | "failed: ..."}`, never raises."""
    logger = logger or log
    results: dict[str, str] = {}
    if email is not None:
        try:
            email.send(notification.subject, notification.text, notification.html)
            results["email"] = "sent"
        except Exception as exc:  # a notification must never fail or hide the load's result
            results["email"] = f"failed: {type(exc).__name__}: {exc}"
            logger.warning(f"neople timelines: e-mail notification failed: {exc}")
    if telegram is not None:
        try:
            telegram.send_message(notification.chat)
            results["telegram"] = "sent"
        except Exception as exc:  # see above
            results["telegram"] = f"failed: {type(exc).__name__}: {exc}"
            logger.warning(f"neople timelines: chat notification failed: {exc}")
    return results
