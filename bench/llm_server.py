"""A real llama-cpp-python server (`python -m llama_cpp.server`) on 127.0.0.1: the server-backend tests and
`bench generation` answer through it.

It serves the bundled model as "smollm2" and, per adapter given, the same model with that GGUF LoRA under
the adapter's name (llama-cpp-python's --config_file: one model entry per name, loaded when asked for).
On a CPU with AMX the bundled Q4_1 file would crash its llama.cpp (see adapters/llamacpp_model.py, and the
server cannot be told to avoid the AMX buffer), so there it serves the F16 copy the bot itself answers from.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

BASE_NAME = "smollm2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def served_model_file(cache_dir: Path) -> Path:
    from adapters.base import bundled_gguf
    from adapters.llamacpp_model import weights_file

    # The F16 copy the bot answers from: on the bundled Q4_1 file llama.cpp rounds activations to 8 bits
    # and the 135M model garbles plain answers (BENCHMARKS.md, issue 12); F16 also keeps AMX CPUs off
    # llama.cpp's AMX matmul, which crashed, and which its server cannot be told to avoid.
    folder, name = bundled_gguf()
    return weights_file(folder / name, "f16", cache_dir)


@contextlib.contextmanager
def llama_cpp_server(workdir: Path, model: Path, adapters: dict[str, Path] = (), api_key: str | None = None):
    """Yield the server's base URL once /v1/models answers; stop it afterwards."""
    port = free_port()
    common = {
        "model": str(model),
        "n_ctx": 2048,
        "n_threads": 1,
        "n_threads_batch": 2,
        "verbose": False,
        "logits_all": False,
    }  # fmt: skip  (logits_all would allocate n_ctx x vocab floats)
    models = [{**common, "model_alias": BASE_NAME}]
    models += [
        {**common, "model_alias": name, "lora_path": str(path)} for name, path in dict(adapters).items()
    ]
    config = {"host": "127.0.0.1", "port": port, "models": models, "interrupt_requests": False}
    if api_key:
        config["api_key"] = api_key
    config_file = workdir / f"llama-server-{port}.json"
    config_file.write_text(json.dumps(config))
    log = open(workdir / f"llama-server-{port}.log", "w")  # noqa: SIM115 - closed below
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--config_file", str(config_file)],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                raise RuntimeError(
                    f"llama_cpp.server exited ({proc.returncode}): {Path(log.name).read_text()[-2000:]}"
                )
            try:
                if httpx.get(url + "/v1/models", headers=headers, timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("llama_cpp.server did not start within 180 s")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


# SmolLM2-135M's projections: (output, input) sizes of q, k, v, o, gate, up, down; 30 layers.
SMOLLM2_SHAPES = {
    "self_attn.q_proj": (576, 576),
    "self_attn.k_proj": (192, 576),
    "self_attn.v_proj": (192, 576),
    "self_attn.o_proj": (576, 576),
    "mlp.gate_proj": (1536, 576),
    "mlp.up_proj": (1536, 576),
    "mlp.down_proj": (576, 1536),
}


def random_smollm2_adapter(folder: Path, scale: float = 0.06, seed: int = 0, r: int = 4) -> Path:
    """A peft LoRA folder for the bundled model with random A and B (numpy, no model needed): strong
    enough at the default scale that greedy answers change."""
    import numpy as np
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    tensors = {}
    for layer in range(30):
        for module, (out, inp) in SMOLLM2_SHAPES.items():
            key = f"base_model.model.model.layers.{layer}.{module}"
            tensors[f"{key}.lora_A.weight"] = rng.standard_normal((r, inp)).astype(np.float32) * scale
            tensors[f"{key}.lora_B.weight"] = rng.standard_normal((out, r)).astype(np.float32) * scale
    folder.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(folder / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "r": r,
        "lora_alpha": 2 * r,
        "target_modules": [m.split(".")[1] for m in SMOLLM2_SHAPES],
    }
    (folder / "adapter_config.json").write_text(json.dumps(config))
    return folder
