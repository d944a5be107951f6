"""Background jobs (reindex, retrain): one running job per kind, progress kept in the store.

The runner knows nothing about Slack: callers pass callbacks that get the job record when it starts,
when it reports progress and when it finishes, and turn those into messages.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable

from bot.store import JobConflictError, JobRecord, Store

log = logging.getLogger(__name__)

JobCallback = Callable[[JobRecord], None]
AUTO = object()  # JobContext.progress: estimate the ETA from done/total


class JobBusyError(RuntimeError):
    """A job of this kind is already running; `running` is that job."""

    def __init__(self, running: JobRecord):
        super().__init__(
            f"{running.kind} job {running.id} is already running (started by {running.requested_by})"
        )
        self.running = running


class JobContext:
    """What a job's work function gets: its id and a way to report progress."""

    def __init__(self, runner: JobRunner, job: JobRecord, on_progress: JobCallback | None):
        self.id, self.kind = job.id, job.kind
        self._runner, self._on_progress = runner, on_progress
        self._started = time.monotonic()
        self._progress: dict = {}

    def progress(
        self,
        done: int | None = None,
        total: int | None = None,
        *,
        eta_s: float | None | object = AUTO,
        **fields,
    ) -> None:
        """Record progress. `done` of `total` units gives an ETA from the rate so far, unless the work
        passes its own `eta_s` (None: no estimate at this stage)."""
        elapsed = time.monotonic() - self._started
        self._progress.update({k: v for k, v in fields.items() if v is not None}, elapsed_s=round(elapsed, 1))
        if done is not None:
            self._progress["done"] = done
        if total is not None:
            self._progress["total"] = total
        d, t = self._progress.get("done"), self._progress.get("total")
        if eta_s is AUTO:
            eta_s = elapsed / d * (t - d) if d and t and d <= t else None
        self._progress["eta_s"] = None if eta_s is None else round(eta_s, 1)
        self._runner.store.set_job_progress(self.id, self._progress)
        if self._on_progress is not None:
            # A failing progress message must not fail the job it reports on.
            _call_quietly(self._on_progress, self._runner.store.job(self.id), "progress")


class JobRunner:
    def __init__(self, store: Store):
        self.store = store
        self._threads: dict[str, threading.Thread] = {}
        self._lock = threading.Lock()

    def start(
        self,
        kind: str,
        work: Callable[[JobContext], dict | None],
        *,
        requested_by: str,
        channel: str,
        on_start: JobCallback | None = None,
        on_progress: JobCallback | None = None,
        on_finish: JobCallback | None = None,
    ) -> JobRecord:
        """Record the job and run `work` in a thread. Raises JobBusyError if one of this kind is running.

        `work` returns a JSON-serialisable dict, stored as the job's result. on_start runs in the job's
        thread before the work, so a slow Slack API never delays the acknowledgement of a command.
        """
        job_id = f"{kind}-{uuid.uuid4().hex[:6]}"
        try:
            job = self.store.add_job(job_id, kind, requested_by=requested_by, channel=channel)
        except JobConflictError as exc:
            raise JobBusyError(exc.running) from None
        thread = threading.Thread(
            target=self._run,
            args=(job, work, on_start, on_progress, on_finish),
            name=f"job-{job_id}",
            daemon=True,
        )
        with self._lock:
            self._threads[job_id] = thread
        thread.start()
        return job

    def _run(self, job, work, on_start, on_progress, on_finish) -> None:
        try:
            if on_start is not None:
                _call_quietly(on_start, job, "start")
            try:
                result = work(JobContext(self, job, on_progress))
            except Exception as exc:
                log.exception("job %s failed", job.id)
                # The reason is for the admin who started the job; exceptions here carry no message text.
                self.store.finish_job(job.id, "failed", error=f"{type(exc).__name__}: {exc}"[:300])
            else:
                self.store.finish_job(job.id, "succeeded", result=result or {})
                log.info("job %s succeeded", job.id)
            if on_finish is not None:
                _call_quietly(on_finish, self.store.job(job.id), "finish")
        finally:
            with self._lock:
                self._threads.pop(job.id, None)

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord | None:
        """Block until the job's thread ends (or the timeout passes); returns the stored record."""
        with self._lock:
            thread = self._threads.get(job_id)
        if thread is not None:
            thread.join(timeout)
        return self.store.job(job_id)

    def recover_interrupted(self) -> list[JobRecord]:
        """Mark jobs the store says are running, but that no thread of ours runs, as interrupted.

        Call at start-up: a job still 'running' then was cut off by a crash or a restart.
        """
        with self._lock:
            ours = set(self._threads)
        interrupted = []
        for job in self.store.jobs(state="running"):
            if job.id in ours:
                continue
            self.store.finish_job(job.id, "interrupted", error="the bot stopped while the job was running")
            log.warning("job %s was left running by a previous run; marked interrupted", job.id)
            interrupted.append(self.store.job(job.id))
        return interrupted


def _call_quietly(callback: JobCallback, job: JobRecord, what: str) -> None:
    try:
        callback(job)
    except Exception:
        log.exception("job %s: %s callback failed", job.id, what)
