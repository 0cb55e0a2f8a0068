"""The run launcher of a single-VM deployment (deploy/dagster.yaml): Dagster's
DefaultRunLauncher, which runs each run as a process of the code server, plus the health
check it lacks, so run monitoring notices a run whose code server went away with it.

When only a run's process dies, the code server that started it reports the run failed
itself. When the code server dies too (its container restarted, the VM rebooted), nobody
is left to say so and the run would stay STARTED for ever. The daemon's run monitoring
asks `check_run_worker_health` of every started run: this launcher asks the run's code
server (its address is on the run, as DefaultRunLauncher tags it) whether it still runs
it. A server that answers and does not know the run means its worker is gone: the run is
failed, and run retries start it again. A server that does not answer is UNKNOWN (a
restart in progress), never a failure.
"""

from __future__ import annotations

import json

from dagster import DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.storage.tags import GRPC_INFO_TAG


class CodeServerRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose runs' health run monitoring can check."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        from dagster._grpc.client import DagsterGrpcClient
        from dagster._grpc.types import CanCancelExecutionRequest, CanCancelExecutionResult
        from dagster._serdes import deserialize_value

        address = run.tags.get(GRPC_INFO_TAG)
        if not address:
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, "no code server recorded")
        info = json.loads(address)
        client = DagsterGrpcClient(
            port=info.get("port"),
            socket=info.get("socket"),
            host=info.get("host"),
            use_ssl=bool(info.get("use_ssl", False)),
        )
        try:
            answer = deserialize_value(
                client.can_cancel_execution(CanCancelExecutionRequest(run_id=run.run_id), 10),
                CanCancelExecutionResult,
            )
        except Exception as exc:  # unreachable: perhaps restarting; judge again next poll
            return CheckRunHealthResult(WorkerStatus.UNKNOWN, f"code server unreachable: {exc}")
        if answer.can_cancel:
            return CheckRunHealthResult(WorkerStatus.RUNNING)
        run_now = self._instance.get_run_by_id(run.run_id) if self.has_instance else run
        if run_now is not None and run_now.is_finished:
            return CheckRunHealthResult(WorkerStatus.SUCCESS)
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            "the code server that launched this run no longer runs it (it restarted, or the "
            "run's process died with it)",
        )
