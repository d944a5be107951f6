"""Embedder backends: bf16 vectors agree with fp32 ones, and an index never mixes the two."""

import shutil

import numpy as np
import pytest
import torch

from indexers import IndexConfig, Indexer, load_embed_model
from indexers.embedding import cpu_has_native_bf16, embedder_backend, resolve_backend, resolve_device

from ..conftest import ACME

needs_bf16 = pytest.mark.skipif(not cpu_has_native_bf16(), reason="this CPU has no native bfloat16")


@pytest.fixture(scope="module")
def fp32_model():
    return load_embed_model(backend="fp32")


def acme_paragraphs() -> list[str]:
    """Real text of very different lengths: one-liners to whole sections."""
    text = (ACME / "docs" / "engineering" / "oncall-runbook.md").read_text()
    text += (ACME / "docs" / "handbook" / "onboarding.md").read_text()
    return [p.strip() for p in text.split("\n\n") if p.strip()][:24]


def test_backend_names_are_checked_and_auto_is_resolved():
    with pytest.raises(ValueError, match="embed backend must be one of auto, fp32, bf16"):
        resolve_backend("int4")
    with pytest.raises(ValueError, match="embed_backend must be one of"):
        IndexConfig(data_dir="x", docs_dir="x", embed_backend="onnx")
    assert resolve_backend("fp32") == "fp32"
    assert resolve_backend("auto") == ("bf16" if cpu_has_native_bf16() else "fp32")
    assert resolve_backend("auto", device="cuda") == "fp32"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_embed_device_auto_is_the_cpu_without_a_gpu_and_cuda_then_says_why_not():
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ValueError, match="'cuda' but torch sees no CUDA device; use 'auto' or 'cpu'"):
        load_embed_model(device="cuda")
    with pytest.raises(ValueError, match="embed device must be one of auto, cpu, cuda, got 'tpu'"):
        load_embed_model(device="tpu")


def test_fp32_backend_gives_plain_sentence_transformers_vectors(fp32_model):
    texts = acme_paragraphs()
    ours = np.asarray(fp32_model.get_text_embedding_batch(texts))
    plain = fp32_model._model.encode(texts, batch_size=8, normalize_embeddings=True)  # other batches, order
    assert embedder_backend(fp32_model) == "fp32"
    assert np.abs(ours - plain).max() < 1e-5


@needs_bf16
def test_bf16_vectors_agree_with_fp32(embed_model, fp32_model):
    bf16 = load_embed_model(backend="bf16")
    assert embedder_backend(bf16) == "bf16"
    texts = acme_paragraphs()
    a = np.asarray(bf16.get_text_embedding_batch(texts))
    b = np.asarray(fp32_model.get_text_embedding_batch(texts))
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-5)  # normalized in fp32
    cosines = (a * b).sum(axis=1)
    assert cosines.min() > 0.999, f"worst cosine {cosines.min():.5f} over {len(texts)} paragraphs"
    # The same nearest paragraph for a question, either way.
    q = "How quickly must I acknowledge a page?"
    assert np.argmax(a @ bf16.get_query_embedding(q)) == np.argmax(b @ fp32_model.get_query_embedding(q))


@needs_bf16
def test_a_backend_change_rebuilds_the_whole_index(tmp_path, fp32_model):
    docs = tmp_path / "docs"
    docs.mkdir()
    for rel in ("engineering/oncall-runbook.md", "support/support-escalation.txt"):
        shutil.copy2(ACME / "docs" / rel, docs / rel.split("/")[1])
    bf16 = load_embed_model(backend="bf16")
    cfg = IndexConfig(data_dir=tmp_path / "home", docs_dir=docs, show_progress=False)
    first = Indexer(cfg, fp32_model).build()
    again = Indexer(cfg, bf16).build()  # same files, same bytes: only the backend changed
    assert again.generation != first.generation
    assert again.chunks_embedded == again.chunks_total == first.chunks_total
    indexer = Indexer(cfg, bf16)
    assert indexer.store.manifest(indexer.store.current())["fingerprint"]["embed_backend"] == "bf16"
    assert indexer.build().chunks_embedded == 0  # and from then on, incremental again


def test_a_question_is_embedded_on_one_thread_and_like_a_batch(fp32_model):
    """One text (a question) runs on one OpenMP thread of its own OS thread; the vector is the one a
    batch gives, and the thread count is back afterwards."""
    import threading

    import torch

    from indexers.embedding import one_thread

    before = torch.get_num_threads()
    with one_thread():
        inside = torch.get_num_threads()
    assert torch.get_num_threads() == before
    if before > 1:
        assert inside == 1
    seen = {}

    def other():  # a thread that touches torch while another is inside one_thread keeps the full count
        seen["other"] = torch.get_num_threads()

    with one_thread():
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
    assert seen["other"] == before
    texts = acme_paragraphs()[:3]
    alone = np.array(fp32_model.get_query_embedding(texts[1]))
    batch = np.array(fp32_model.get_text_embedding_batch(texts)[1])
    assert float(alone @ batch) > 0.9999
