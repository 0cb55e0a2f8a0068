"""What every embedded server started as a child process shares: running, stop, `with`."""

from __future__ import annotations

import subprocess
from types import TracebackType
from typing import Self


class ChildServer:
    """A server in a child process (`self._process`); subclasses define `start()`."""

    _process: subprocess.Popen | None = None

    def start(self) -> str:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, wait, SIGKILL if it does not exit. Idempotent."""
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
