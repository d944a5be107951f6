"""The background job runner: one job per kind, progress with ETA, failures, interrupted jobs, cancel and
shutdown."""

from __future__ import annotations

import threading

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
