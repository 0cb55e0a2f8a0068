"""A clock tests drive by hand: pacing, windows, expiry and backoff without waiting."""


class FakeClock:
    """Seconds that move only when slept on or advanced (monotonic or wall, as used)."""

    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def advance(self, seconds: float) -> None:
        self.now += seconds
