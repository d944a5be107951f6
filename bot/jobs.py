"""Background jobs (reindex, retrain): one running job per kind, progress kept in the store.

The runner knows nothing about Slack: callers pass callbacks that get the job record when it starts,
when it reports progress and when it finishes, and turn those into messages.

Stopping is cooperative: `cancel` and `shutdown` set the job's `cancelled` event, and the job's next
`progress()` raises JobCancelled (long loops that report rarely check the event themselves, through the
plain callable or event the job passes down). Python cannot kill a thread, so a job that never checks
is marked interrupted by `shutdown` after a short wait instead.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from bot.store import JobConflictError, JobRecord, Store

if TYPE_CHECKING:
    from bot.operations import Progress

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


class JobsStoppedError(RuntimeError):
    """The runner was shut down (the bot is stopping): no new job starts."""


class JobCancelled(Exception):  # noqa: N818 - it is a request to stop, not an error
    """Raised inside a job's work once it was asked to stop; the runner records how it ended."""


@dataclass
class _Stop:
    """Why a job was asked to stop: the state it ends in and the reason stored with it."""

    state: str  # 'cancelled' or 'interrupted'
    reason: str


class JobContext:
    """What a job's work function gets: its id, a way to report progress, and `cancelled`, the event set
    when the job is asked to stop (pass `cancelled.is_set` down to loops that run long between reports)."""

    def __init__(
        self,
        runner: JobRunner,
        job: JobRecord,
        on_progress: JobCallback | None,
        cancelled: threading.Event | None = None,
    ):
        self.id, self.kind = job.id, job.kind
        self._runner, self._on_progress = runner, on_progress
        self.cancelled = cancelled or threading.Event()
        self._started = time.monotonic()
        self._progress: dict = dict(job.progress)  # what the job was started with, updated from here on

    def check_cancelled(self) -> None:
        """Raise JobCancelled if the job was asked to stop."""
        if self.cancelled.is_set():
            raise JobCancelled(f"{self.id} was asked to stop")

    def report(self, progress: Progress) -> None:
        """An operation's progress callback (bot.operations): recorded as progress() records it, with
        the operation's own ETA (none where it has none)."""
        fields = progress.fields()
        self.progress(eta_s=fields.pop("eta_s", None), **fields)

    def progress(
        self,
        done: int | None = None,
        total: int | None = None,
        *,
        eta_s: float | None | object = AUTO,
        **fields,
    ) -> None:
        """Record progress. `done` of `total` units gives an ETA from the rate so far, unless the work
        passes its own `eta_s` (None: no estimate at this stage). Raises JobCancelled once the job was
        asked to stop: progress is where every job passes regularly."""
        self.check_cancelled()
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


@dataclass
class _Running:
    kind: str
    thread: threading.Thread
    cancelled: threading.Event
    on_finish: JobCallback | None
    stop: _Stop | None = None


BEAT_S = 30.0  # how often a process says its running jobs are alive
STALE_S = 180.0  # a job whose process has not said so for this long is taken for dead (another host's)


class JobRunner:
    def __init__(self, store: Store, *, beat_s: float = BEAT_S):
        self.store, self.beat_s = store, beat_s
        self._running: dict[str, _Running] = {}
        self._lock = threading.Lock()
        self._stopped = False
        self.owner = f"{socket.gethostname()}:{os.getpid()}"
        self._beating: threading.Thread | None = None

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
        progress: dict | None = None,
    ) -> JobRecord:
        """Record the job and run `work` in a thread. Raises JobBusyError if one of this kind is running,
        JobsStoppedError after shutdown().

        `work` returns a JSON-serialisable dict, stored as the job's result. on_start runs in the job's
        thread before the work, so a slow Slack API never delays the acknowledgement of a command.
        `progress` is the job's progress before its work reports any (what on_start shows).
        """
        job_id = f"{kind}-{uuid.uuid4().hex[:6]}"
        with self._lock:  # held across the insert, so a shutdown never misses a job that is starting
            if self._stopped:
                raise JobsStoppedError("the bot is shutting down; run the command again once it is back")
            try:
                job = self.store.add_job(job_id, kind, requested_by=requested_by, channel=channel)
            except JobConflictError as exc:
                raise JobBusyError(exc.running) from None
            self.store.own_job(job_id, self.owner)
            if progress:
                self.store.set_job_progress(job_id, progress)
                job = self.store.job(job_id)
            cancelled = threading.Event()
            thread = threading.Thread(
                target=self._run,
                args=(job, work, on_start, on_progress, on_finish, cancelled),
                name=f"job-{job_id}",
                daemon=True,
            )
            self._running[job_id] = _Running(kind, thread, cancelled, on_finish)
            if self._beating is None:
                self._beating = threading.Thread(target=self._beat, name="jobs-heartbeat", daemon=True)
                self._beating.start()
        thread.start()
        return job

    def _beat(self) -> None:
        while True:
            time.sleep(self.beat_s)
            with self._lock:
                ours = list(self._running)
                if self._stopped and not ours:
                    return
            try:
                self.store.beat_jobs(ours)
            except Exception as e:  # noqa: BLE001 - the next beat tries again; the jobs run on
                log.warning("could not record the jobs' heartbeat (%s)", type(e).__name__)

    def _run(self, job, work, on_start, on_progress, on_finish, cancelled) -> None:
        try:
            if on_start is not None:
                _call_quietly(on_start, job, "start")
            try:
                context = JobContext(self, job, on_progress, cancelled)
                context.check_cancelled()  # cancelled while on_start posted its message
                result = work(context)
            except Exception as exc:
                self._finish_stopped_or_failed(job, exc)
            else:
                if self.store.finish_job(job.id, "succeeded", result=result or {}):
                    log.info("job %s succeeded", job.id)
            if on_finish is not None:
                _call_quietly(on_finish, self.store.job(job.id), "finish")
        finally:
            with self._lock:
                self._running.pop(job.id, None)

    def _finish_stopped_or_failed(self, job: JobRecord, exc: Exception) -> None:
        with self._lock:
            running = self._running.get(job.id)
            stop = running.stop if running else None
        if stop is not None:
            # Asked to stop: whatever the work raised on its way out (JobCancelled, mostly), it ends as
            # it was asked to.
            if self.store.finish_job(job.id, stop.state, error=stop.reason):
                log.info("job %s %s", job.id, stop.state)
            return
        log.exception("job %s failed", job.id)
        # The reason is for the admin who started the job; exceptions here carry no message text.
        self.store.finish_job(job.id, "failed", error=f"{type(exc).__name__}: {exc}"[:300])

    def wait(self, job_id: str, timeout: float | None = None) -> JobRecord | None:
        """Block until the job's thread ends (or the timeout passes); returns the stored record."""
        with self._lock:
            running = self._running.get(job_id)
        if running is not None:
            running.thread.join(timeout)
        return self.store.job(job_id)

    def cancel(self, kind: str, *, by: str) -> JobRecord | None:
        """Ask this process's running job of `kind` to stop; it ends 'cancelled' at its next check.
        Returns that job, or None when none of ours is running (a job another process runs is not ours
        to stop)."""
        with self._lock:
            ours = [(i, r) for i, r in self._running.items() if r.kind == kind]
            if not ours:
                return None
            job_id, running = ours[0]
            running.stop = running.stop or _Stop("cancelled", f"cancelled by <@{by}>")  # the first ask counts
            running.cancelled.set()
        log.info("job %s: cancel requested", job_id)
        return self.store.job(job_id)

    def shutdown(self, reason: str = "the bot was stopped", timeout: float = 3.0) -> list[JobRecord]:
        """Stop for good: ask every running job to stop, wait up to `timeout` seconds for them, then mark
        those still running as interrupted with `reason`, which releases their kind's one-running-job
        lock in the store. New jobs are refused from now on. Returns the jobs that ended interrupted.
        Takes at most `timeout` seconds, plus up to 2 s to fix the messages of jobs that did not stop."""
        deadline = time.monotonic() + timeout
        with self._lock:
            self._stopped = True
            running = dict(self._running)
            for entry in running.values():
                entry.stop = entry.stop or _Stop("interrupted", reason)
                entry.cancelled.set()
        for entry in running.values():
            entry.thread.join(max(0.0, deadline - time.monotonic()))
        ended = []
        for job_id, entry in running.items():
            if entry.thread.is_alive() and self.store.finish_job(job_id, "interrupted", error=reason):
                log.warning("job %s did not stop within %.0f s; marked interrupted", job_id, timeout)
                # Its thread may never get to report: fix its Slack message now, in the time left.
                _notify_before(deadline + 2.0, entry.on_finish, self.store.job(job_id))
            job = self.store.job(job_id)
            if job is not None and job.state == "interrupted":
                ended.append(job)
        return ended

    def recover_interrupted(self) -> list[JobRecord]:
        """Mark jobs the store says are running, but that no thread of ours runs, as interrupted.

        Call at start-up: a job still 'running' then was cut off by a crash or a restart.
        """
        with self._lock:
            ours = set(self._running)
        interrupted = []
        for job in self.store.jobs(state="running"):
            if job.id in ours:
                continue
            alive = self._alive_elsewhere(job.id)
            if alive:
                log.info("job %s runs in another process (%s); left alone", job.id, alive)
                continue
            self.store.finish_job(job.id, "interrupted", error="the bot stopped while the job was running")
            log.warning("job %s was left running by a previous run; marked interrupted", job.id)
            interrupted.append(self.store.job(job.id))
        return interrupted

    def _alive_elsewhere(self, job_id: str) -> str | None:
        """The owner of a job another live process runs (one sharing the store), else None: a job of no
        recorded owner, of this process (an earlier runner), of a dead process on this host, or whose owner
        has not beaten for STALE_S (a host that crashed) was cut off."""
        owner = self.store.job_owner(job_id)
        if owner is None:
            return None
        who, beat = owner
        host, _, pid = who.rpartition(":")
        if who == self.owner:
            return None
        if host == socket.gethostname():
            return who if pid.isdigit() and _pid_alive(int(pid)) else None
        fresh = datetime.now(UTC) - datetime.fromisoformat(beat) < timedelta(seconds=STALE_S)
        return who if fresh else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _notify_before(deadline: float, callback: JobCallback | None, job: JobRecord | None) -> None:
    """Run a finish callback (a Slack message) without letting a slow Slack hold a shutdown past
    `deadline`: it runs in a daemon thread that is given up on then."""
    if callback is None or job is None:
        return
    thread = threading.Thread(
        target=_call_quietly, args=(callback, job, "finish"), name=f"job-{job.id}-report", daemon=True
    )
    thread.start()
    thread.join(max(0.0, deadline - time.monotonic()))


def _call_quietly(callback: JobCallback, job: JobRecord, what: str) -> None:
    try:
        callback(job)
    except Exception:
        log.exception("job %s: %s callback failed", job.id, what)
