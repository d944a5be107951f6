"""The background job runner: one job per kind, progress with ETA, failures, interrupted jobs."""

from __future__ import annotations

import threading

import pytest

from bot.jobs import JobBusyError, JobRunner
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
