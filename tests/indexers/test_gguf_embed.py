"""The llamacpp embed backend: a GGUF copy of the bundled BERT made once, and vectors and tokens that are
sentence-transformers' own, so an index of either kind answers the same questions."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from indexers import IndexConfig, Indexer, load_embed_model
from indexers.embedding import choose_backend, embed_tokenizer, embedder_backend, resolve_embed_model
from indexers.gguf_convert import EmbedSetupError, gguf_file

from ..conftest import ACME

BUNDLED = resolve_embed_model("bundled:all-MiniLM-L6-v2")


@pytest.fixture(scope="module")
def llamacpp(tmp_path_factory):
    return load_embed_model(backend="llamacpp", cache_dir=tmp_path_factory.mktemp("embed-cache"))


@pytest.fixture(scope="module")
def sentence_transformer():
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(BUNDLED, device="cpu")


def acme_texts() -> list[str]:
    """Real paragraphs of very different lengths, one longer than the model's 256-token window, and text
    that WordPiece treats specially: accents, CJK, punctuation, an empty string."""
    text = (ACME / "docs" / "engineering" / "oncall-runbook.md").read_text()
    text += (ACME / "docs" / "handbook" / "onboarding.md").read_text()
    paragraphs = [p.strip() for p in text.split("\n\n") if p.strip()][:30]
    return [*paragraphs, " ".join(paragraphs), "Héllo Wörld, ÇA VA? 日本語 naïve café — “quotes”", ""]


def test_the_copy_is_made_once_and_is_a_non_causal_bert_with_mean_pooling(tmp_path):
    import gguf

    first = gguf_file(BUNDLED, tmp_path, "f16")
    stamp = first.stat().st_mtime_ns
    assert gguf_file(BUNDLED, tmp_path, "f16") == first and first.stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary file left behind
    fields = gguf.GGUFReader(first).fields
    value = lambda key: fields[key].contents()  # noqa: E731
    assert value("general.architecture") == "bert" and value("tokenizer.ggml.model") == "bert"
    assert value("bert.attention.causal") is False
    assert value("bert.pooling_type") == gguf.PoolingType.MEAN
    assert (value("tokenizer.ggml.bos_token_id"), value("tokenizer.ggml.seperator_token_id")) == (101, 102)
    assert value("bert.attention.layer_norm_epsilon") == pytest.approx(1e-12)


def test_vectors_are_sentence_transformers_vectors(llamacpp, sentence_transformer):
    texts = acme_texts()
    ours = np.asarray(llamacpp.get_text_embedding_batch(texts))
    plain = sentence_transformer.encode(texts, batch_size=8, normalize_embeddings=True)
    assert np.allclose(np.linalg.norm(ours, axis=1), 1, atol=1e-5)
    cosines = (ours * plain).sum(axis=1)
    assert cosines.min() > 0.9999, f"worst cosine {cosines.min():.6f}: {texts[int(cosines.argmin())][:60]!r}"
    # A question alone (its own one-thread context) gets the vector it gets in a batch.
    alone = np.asarray(llamacpp.get_query_embedding(texts[3]))
    assert float(alone @ ours[3]) > 0.99999
    assert embedder_backend(llamacpp).startswith("llamacpp-")


def test_tokens_and_truncation_are_sentence_transformers_own(llamacpp, sentence_transformer):
    texts = acme_texts()
    count = embed_tokenizer(llamacpp)  # what the splitter counts chunk sizes with
    hf = sentence_transformer.tokenizer
    assert [count(t) for t in texts] == [hf.encode(t, add_special_tokens=False, verbose=False) for t in texts]
    engine = llamacpp.engine
    fed = engine.truncated(texts)
    assert fed == [sentence_transformer.tokenize([t])["input_ids"][0].tolist() for t in texts]
    longest = max(fed, key=len)
    assert len(longest) == sentence_transformer.max_seq_length == 256  # lowercased WordPiece, cut at 256
    assert (longest[0], longest[-1]) == (101, 102)  # [CLS] ... [SEP], as sentence-transformers truncates


def test_auto_uses_llama_cpp_for_a_bert_folder_and_torch_for_anything_else(tmp_path):
    assert choose_backend("auto", BUNDLED) == "llamacpp"
    assert choose_backend("bf16", BUNDLED) == "bf16"  # an explicit choice is kept
    other = tmp_path / "roberta"  # the bundled files, but a config.json that says RoBERTa
    other.mkdir()
    for item in Path(BUNDLED).iterdir():
        (other / item.name).symlink_to(item)
    config = json.loads((other / "config.json").read_text())
    (other / "config.json").unlink()
    (other / "config.json").write_text(json.dumps({**config, "model_type": "roberta"}))
    assert choose_backend("auto", str(other)) == "auto"  # torch decides between bf16 and fp32
    with pytest.raises(EmbedSetupError, match="'roberta' model, not a plain BERT.*set embed_backend"):
        load_embed_model(str(other), backend="llamacpp", cache_dir=tmp_path / "cache")
    with pytest.raises(ValueError, match="embed backend must be one of auto, fp32, bf16, llamacpp"):
        choose_backend("onnx", BUNDLED)


def test_the_index_records_the_llama_cpp_backend_and_a_switch_rebuilds_it(tmp_path, llamacpp):
    docs = tmp_path / "docs"
    docs.mkdir()
    for rel in ("engineering/oncall-runbook.md", "support/support-escalation.txt"):
        shutil.copy2(ACME / "docs" / rel, docs / rel.split("/")[1])
    cfg = IndexConfig(data_dir=tmp_path / "home", docs_dir=docs, show_progress=False)
    first = Indexer(cfg, llamacpp).build()
    indexer = Indexer(cfg, llamacpp)
    recorded = indexer.store.manifest(indexer.store.current())["fingerprint"]["embed_backend"]
    assert recorded == embedder_backend(llamacpp)
    assert indexer.build().chunks_embedded == 0  # the same backend: incremental, nothing to embed
    fp32 = load_embed_model(backend="fp32")
    again = Indexer(cfg, fp32).build()  # torch vectors never join llama.cpp ones: everything re-embedded
    assert again.chunks_embedded == again.chunks_total == first.chunks_total


def test_threads_embedding_at_once_get_the_vectors_they_get_alone(llamacpp):
    """An index build, the warm-up and questions share one embedder: each llama.cpp context is used under
    its lock, so texts embedded from several threads at once come back as they do one call at a time."""
    from concurrent.futures import ThreadPoolExecutor

    texts = acme_texts()[:12]
    alone = np.asarray(llamacpp.get_text_embedding_batch(texts))
    question = np.asarray(llamacpp.get_query_embedding(texts[0]))
    with ThreadPoolExecutor(max_workers=4) as pool:
        batches = [pool.submit(llamacpp.get_text_embedding_batch, texts) for _ in range(3)]
        questions = [pool.submit(llamacpp.get_query_embedding, texts[0]) for _ in range(3)]
        for got in batches:
            assert ((np.asarray(got.result()) * alone).sum(axis=1) > 0.99999).all()
        for got in questions:
            assert float(np.asarray(got.result()) @ question) > 0.99999
