"""The background job runner: one job per kind, progress with ETA, failures, interrupted jobs, cancel and
shutdown."""

from __future__ import annotations

import os
import threading
import time

import pytest

from bot.jobs import JobBusyError, JobRunner, JobsStoppedError
from bot.store import Store


@pytest.fixture
def runner(tmp_path) -> JobRunner:
    return JobRunner(Store(tmp_path / "bot.sqlite3"))


def test_a_job_reports_progress_and_its_result(runner):
    seen = []

    def work(job):
        job.progress(done=1, total=4)
        job.progress(done=2, total=4, loss=0.5)
        return {"answer": 42}

    job = runner.start(
        "reindex",
        work,
        requested_by="U1",
        channel="C1",
        on_start=lambda j: seen.append(("start", j.state)),
        on_progress=lambda j: seen.append(("progress", j.progress["done"])),
        on_finish=lambda j: seen.append(("finish", j.state)),
    )
    done = runner.wait(job.id, timeout=30)
    assert seen == [("start", "running"), ("progress", 1), ("progress", 2), ("finish", "succeeded")]
    assert done.state == "succeeded" and done.result == {"answer": 42}
    assert done.progress["done"] == 2 and done.progress["loss"] == 0.5 and done.progress["eta_s"] is not None


def test_an_operations_progress_is_stored_with_the_whole_operations_eta(runner):
    from bot.operations import Progress

    stored = []

    def work(job):
        job.report(Progress("train", 1, 4, loss=0.5, message="", eta_s=10, eta_total_s=60))
        stored.append(dict(runner.store.job(job.id).progress))
        job.report(Progress("evaluate", message="scoring"))  # no ETA of its own: none is made up
        return {}

    job = runner.start("retrain", work, requested_by="U1", channel="C1")
    done = runner.wait(job.id, timeout=30)
    assert {k: stored[0][k] for k in ("stage", "done", "total", "loss", "eta_s")} == {
        "stage": "train",
        "done": 1,
        "total": 4,
        "loss": 0.5,
        "eta_s": 60,
    }
    assert done.progress["stage"] == "evaluate" and done.progress["message"] == "scoring"
    assert done.progress["eta_s"] is None


def test_a_second_job_of_the_same_kind_is_refused_naming_the_running_one(runner):
    release = threading.Event()
    first = runner.start("reindex", lambda job: release.wait(30) and {}, requested_by="U1", channel="C1")
    try:
        with pytest.raises(JobBusyError) as busy:
            runner.start("reindex", lambda job: {}, requested_by="U2", channel="C2")
        assert busy.value.running.id == first.id and first.id in str(busy.value)
        other = runner.start("retrain", lambda job: {}, requested_by="U2", channel="C2")  # other kinds run
        assert runner.wait(other.id, timeout=30).state == "succeeded"
    finally:
        release.set()
    assert runner.wait(first.id, timeout=30).state == "succeeded"


def test_a_failing_job_is_marked_failed_and_still_reported(runner):
    finished = []

    def work(job):
        raise RuntimeError("the docs folder vanished")

    job = runner.start("reindex", work, requested_by="U1", channel="C1", on_finish=finished.append)
    done = runner.wait(job.id, timeout=30)
    assert done.state == "failed" and done.error == "RuntimeError: the docs folder vanished"
    assert [j.state for j in finished] == ["failed"]


def test_a_failing_progress_message_does_not_fail_the_job(runner):
    def broken(job):
        raise ConnectionError("Slack is down")

    job = runner.start(
        "reindex",
        lambda j: j.progress(done=1, total=1) or {},
        requested_by="U1",
        channel="C1",
        on_progress=broken,
    )
    assert runner.wait(job.id, timeout=30).state == "succeeded"


def test_jobs_left_running_by_a_previous_process_are_marked_interrupted(tmp_path):
    store = Store(tmp_path / "bot.sqlite3")
    store.add_job("reindex-old", "reindex", requested_by="U1", channel="C1")  # the crashed run's job
    release = threading.Event()
    runner = JobRunner(store)
    live = runner.start("retrain", lambda job: release.wait(30) and {}, requested_by="U1", channel="C1")
    try:
        interrupted = runner.recover_interrupted()
        assert [j.id for j in interrupted] == ["reindex-old"] and interrupted[0].state == "interrupted"
        assert store.job(live.id).state == "running"  # this process's own job is left alone
    finally:
        release.set()
    runner.wait(live.id, timeout=30)


def _looping(started: threading.Event):
    """A job that reports progress in a loop until it is stopped (as a build or a training run does)."""

    def work(job):
        started.set()
        for step in range(100_000):
            job.progress(done=step, total=100_000)
            job.cancelled.wait(0.01)
        return {}

    return work


def test_cancel_stops_a_job_at_its_next_progress_and_frees_its_kind(runner):
    started, finished = threading.Event(), []
    job = runner.start(
        "reindex", _looping(started), requested_by="U1", channel="C1", on_finish=finished.append
    )
    assert started.wait(30)
    asked = runner.cancel("reindex", by="U2")
    assert asked.id == job.id
    done = runner.wait(job.id, timeout=30)
    assert (done.state, done.error) == ("cancelled", "cancelled by <@U2>")
    assert [(j.id, j.state) for j in finished] == [(job.id, "cancelled")]
    assert runner.cancel("reindex", by="U2") is None  # nothing of that kind runs any more
    assert runner.wait(
        runner.start("reindex", lambda j: {}, requested_by="U1", channel="C1").id, 30
    ).state == ("succeeded")


def test_a_job_that_finishes_although_asked_to_stop_keeps_its_result(runner):
    """The work returned before it looked again: what it did is done, so it is recorded as succeeded."""
    release = threading.Event()
    job = runner.start("reindex", lambda j: release.wait(30) and {"n": 1}, requested_by="U1", channel="C1")
    runner.cancel("reindex", by="U2")
    release.set()
    done = runner.wait(job.id, timeout=30)
    assert (done.state, done.result) == ("succeeded", {"n": 1})


def test_the_first_progress_is_what_on_start_shows(runner):
    seen = []
    job = runner.start(
        "retrain",
        lambda j: j.progress(stage="train", done=1, total=2) or {},
        requested_by="U1",
        channel="C1",
        progress={"stage": "plan", "message": "about 15 min", "eta_s": 900},
        on_start=lambda j: seen.append(dict(j.progress)),
    )
    runner.wait(job.id, timeout=30)
    assert seen == [{"stage": "plan", "message": "about 15 min", "eta_s": 900}]
    assert runner.store.job(job.id).progress["stage"] == "train"


def test_shutdown_interrupts_running_jobs_and_releases_their_locks(tmp_path):
    store = Store(tmp_path / "bot.sqlite3")
    runner = JobRunner(store)
    started, stuck, finished = threading.Event(), threading.Event(), []
    polite = runner.start(
        "reindex", _looping(started), requested_by="U1", channel="C1", on_finish=finished.append
    )
    # A job that never looks at its event (one long library call): shutdown cannot wait for it.
    deaf = runner.start(
        "retrain", lambda j: stuck.wait(60) and {}, requested_by="U1", channel="C1", on_finish=finished.append
    )
    assert started.wait(30)
    ended = runner.shutdown("the bot was stopped (SIGTERM)", timeout=1.0)
    try:
        assert sorted(j.id for j in ended) == sorted([polite.id, deaf.id])
        for job in (polite, deaf):
            record = store.job(job.id)
            assert (record.state, record.error) == ("interrupted", "the bot was stopped (SIGTERM)")
        assert sorted(j.id for j in finished) == sorted([polite.id, deaf.id])  # both messages fixed
        with pytest.raises(JobsStoppedError, match="shutting down"):
            runner.start("reindex", lambda j: {}, requested_by="U1", channel="C1")
        # The locks are the store's: another process (the restarted bot) may run both kinds at once.
        other = Store(tmp_path / "bot.sqlite3")
        assert other.add_job("reindex-next", "reindex", requested_by="U1", channel="C1").state == "running"
        assert other.add_job("retrain-next", "retrain", requested_by="U1", channel="C1").state == "running"
    finally:
        stuck.set()
    runner.wait(deaf.id, timeout=30)
    assert store.job(deaf.id).state == "interrupted"  # its late return does not overwrite that
    recovered = JobRunner(Store(tmp_path / "bot.sqlite3")).recover_interrupted()
    assert sorted(j.id for j in recovered) == ["reindex-next", "retrain-next"]  # the shut-down ones stay


def test_start_up_leaves_alone_the_jobs_another_live_process_runs(tmp_path):
    """Two bots sharing one store (EXPERTBOT_DATABASE_URL): a restart of one must not cut off the other's job,
    yet a job whose process is gone (on this host, or silent for STALE_S on another) is recovered."""
    import socket
    import subprocess
    import sys

    from bot.jobs import STALE_S
    from bot.store import days_ago_iso

    store = Store(tmp_path / "bot.sqlite3")
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        here = socket.gethostname()
        for job_id, kind, owner in (("reindex-a", "reindex", f"{here}:{other.pid}"),
                                    ("retrain-b", "retrain", "other-host:4242")):  # fmt: skip
            store.add_job(job_id, kind, requested_by="U1", channel="C1")
            store.own_job(job_id, owner)
        assert JobRunner(store).recover_interrupted() == []  # both owners alive: left running
        assert store.job("reindex-a").state == store.job("retrain-b").state == "running"
        other.kill()
        other.wait()
        store._exec(
            "UPDATE job_owners SET beat = :b WHERE job_id = 'retrain-b'", b=days_ago_iso(STALE_S / 86400 * 2)
        )
        recovered = JobRunner(store).recover_interrupted()
        assert sorted((j.id, j.state) for j in recovered) == [
            ("reindex-a", "interrupted"),
            ("retrain-b", "interrupted"),
        ]
    finally:
        other.kill()
        other.wait()


def test_a_running_job_records_its_process_and_beats(tmp_path):
    store = Store(tmp_path / "bot.sqlite3")
    release = threading.Event()
    runner = JobRunner(store, beat_s=0.05)
    job = runner.start("reindex", lambda j: release.wait(30) and {}, requested_by="U1", channel="C1")
    try:
        owner, first = store.job_owner(job.id)
        assert owner == runner.owner and owner.endswith(f":{os.getpid()}")
        deadline = time.monotonic() + 10
        while store.job_owner(job.id)[1] == first and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.job_owner(job.id)[1] > first  # the heartbeat moved on
    finally:
        release.set()
    runner.wait(job.id, timeout=30)
