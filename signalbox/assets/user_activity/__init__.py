"""User activity (feed and messenger actions) in ClickHouse: daily-partitioned source
assets, generated in the demo and tests and observed in production; the activity dbt
models and the IQR checks build on them."""

from signalbox.assets.user_activity.raw import (
    FEED_ACTIONS_KEY,
    MESSAGE_ACTIONS_KEY,
    USER_ACTIVITY_DAILY,
)
from signalbox.assets.user_activity.source import ExistingUserActions, GeneratedUserActions

__all__ = [
    "FEED_ACTIONS_KEY",
    "MESSAGE_ACTIONS_KEY",
    "USER_ACTIVITY_DAILY",
    "ExistingUserActions",
    "GeneratedUserActions",
]
