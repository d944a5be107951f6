"""The index survives a SIGKILL mid-build, and the same code runs against a Chroma server."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from indexers import IndexConfig, Indexer, Retriever

CLI = [sys.executable, "-m", "bot"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(predicate, what: str, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def index_cli(env) -> subprocess.CompletedProcess:
    done = subprocess.run([*CLI, "index"], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def test_kill_during_build_keeps_old_generation(tmp_path, docs_copy, embed_model):
    home = tmp_path / "home"
    env = {**os.environ, "EXPERTBOT_HOME": str(home), "EXPERTBOT_DOCS_DIR": str(docs_copy)}
    index_cli(env)
    cfg = IndexConfig(data_dir=home, docs_dir=docs_copy, show_progress=False)
    store = Indexer(cfg, embed_model).store
    before = store.current()
    expected = [h.id for h in Retriever(cfg, embed_model).retrieve("Which VPN do we use?")]

    shutil.copytree(docs_copy, tmp_path / "more")
    shutil.move(tmp_path / "more", docs_copy / "more")  # six new files: the kill lands mid-build
    proc = subprocess.Popen([*CLI, "index"], env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # wait until the new generation has finished files, then kill -9
        if line.startswith("files ") and int(line.split()[1].split("/")[0]) >= 3:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert store.current() == before
    assert [h.id for h in Retriever(cfg, embed_model).retrieve("Which VPN do we use?")] == expected
    orphans = {p.name for p in store.root.glob("g*")} - {before}
    assert orphans
    done = index_cli(env)
    assert "files 12/12" in done.stderr
    assert not orphans & {p.name for p in store.root.glob("g*")}


@pytest.fixture
def chroma_server(tmp_path):
    exe = Path(sys.executable).with_name("chroma")
    port = free_port()
    proc = subprocess.Popen(
        [str(exe), "run", "--host", "127.0.0.1", "--port", str(port), "--path", str(tmp_path / "server")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def up():
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(up, "the Chroma server to listen", timeout=60)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def test_chroma_server_mode(tmp_path, docs_copy, embed_model, chroma_server):
    cfg = IndexConfig(
        data_dir=tmp_path / "home", docs_dir=docs_copy, chroma_url=chroma_server, show_progress=False
    )
    indexer = Indexer(cfg, embed_model)
    first = indexer.build()
    assert not (cfg.index_dir / "chroma").exists()  # nothing embedded locally: vectors live on the server
    hits = Retriever(cfg, embed_model).retrieve("Which VPN do we use?")
    assert hits[0].file == "it/helpdesk-faq.html"
    (docs_copy / "handbook/onboarding.md").write_text(
        "# Onboarding\n\nYour Quillmate pairing lasts 9 weeks.\n"
    )
    second = indexer.build()
    assert second.changed == ["handbook/onboarding.md"] and second.chunks_embedded == 1
    # The incremental build added its one chunk to the first generation's collection: nothing was copied.
    shared = indexer.store.collection_name(first.generation)
    assert data_collections(indexer.store) == {shared}
    kept = indexer.store.chunk_ids(first.generation) | indexer.store.chunk_ids(second.generation)
    assert indexer.store.collection(second.generation).count() == len(kept)  # the previous one is kept...
    indexer.store.cfg.keep_generations = 1
    indexer.store.cleanup()
    stored = indexer.store.collection(second.generation).get(include=[])["ids"]
    assert sorted(stored) == sorted(indexer.store.chunk_ids(second.generation))  # ...until not wanted
    third = indexer.build(full=True)  # a full build starts a collection of its own
    indexer.store.cleanup()
    assert data_collections(indexer.store) == {indexer.store.collection_name(third.generation)}
    assert (
        Retriever(cfg, embed_model)
        .retrieve("How long is the Quillmate pairing?")[0]
        .text.endswith("9 weeks.")
    )


def data_collections(store) -> set[str]:
    """The server's collections but the pointer's and manifests' own (store.meta_name)."""
    return {c.name for c in store.client.list_collections()} - {store.meta_name}


def test_a_second_host_sees_a_reindex_through_the_chroma_server_alone(
    tmp_path, docs_copy, embed_model, chroma_server
):
    """Two hosts, two data folders, one Chroma server: no disk is shared."""
    host = lambda name: IndexConfig(  # noqa: E731
        data_dir=tmp_path / name, docs_dir=docs_copy, chroma_url=chroma_server, show_progress=False
    )
    a, b = host("a"), host("b")
    indexer = Indexer(a, embed_model)
    first = indexer.build()
    on_a, on_b = Retriever(a, embed_model), Retriever(b, embed_model)
    questions = ["Which VPN do we use?", "How long is the Quillmate pairing?", "Quillmate"]
    for q in questions:  # B rebuilt BM25 from the server's rows: the same hits, both sides of the hybrid
        assert [h.id for h in on_b.retrieve(q)] == [h.id for h in on_a.retrieve(q)]
        assert on_b._gen.bm25_ids(q, None) == on_a._gen.bm25_ids(q, None)
    assert on_b.generation == first.generation and (b.index_dir / first.generation / "bm25").is_dir()
    assert not (b.index_dir / "chroma").exists()

    (docs_copy / "handbook/onboarding.md").write_text(
        "# Onboarding\n\nYour Quillmate pairing lasts 9 weeks.\n"
    )
    second = indexer.build()
    assert on_b.reopen() and on_b.generation == second.generation  # B follows A's reindex
    assert on_b.retrieve("How long is the Quillmate pairing?")[0].text.endswith("9 weeks.")
    # A third host opened only now, after A kept one generation: old manifests are gone from the server too.
    indexer.store.cfg.keep_generations = 1
    indexer.store.cleanup()
    meta = indexer.store._meta_collection().get(include=[])["ids"]
    assert sorted(meta) == ["CURRENT", f"manifest/{second.generation}"]
    assert (
        Retriever(host("c"), embed_model).retrieve("Which VPN do we use?")[0].file == "it/helpdesk-faq.html"
    )


def test_unreachable_chroma_server_is_a_clear_error(tmp_path, docs_copy, embed_model):
    from indexers import StoreError

    cfg = IndexConfig(
        data_dir=tmp_path / "home", docs_dir=docs_copy, chroma_url=f"http://127.0.0.1:{free_port()}"
    )
    with pytest.raises(StoreError, match="cannot reach the Chroma server at http://127.0.0.1"):
        Indexer(cfg, embed_model).build()
