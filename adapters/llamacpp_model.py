"""Opening a GGUF model in llama.cpp: which file (a faster tensor type, made once), where its weights live.

llama-cpp-python is imported inside the functions: importing this package stays cheap.

Why the buffer placement below: on CPUs with AMX (Intel Sapphire Rapids and later) llama.cpp puts
quantized weights in its AMX buffer, and its AMX matmul crashed this machine's process (SIGSEGV at
`ldtilecfg` in `ggml_backend_amx_mul_mat`, for Q4_0, Q4_1 and Q8_0 alike; a plain AMX test program ran
fine, so it is that kernel). There the weights stay out of llama.cpp's extra buffers. That also turns off
its CPU_REPACK buffer, which only Q4_0 files use on x86: repacked Q4_0 ran the prompt pass 2.2-2.5x faster,
but a Q4_0 copy of the bundled Q4_1 model agreed with the float model on 69% of next tokens (BENCHMARKS.md,
"Generation engine (issue 12)"), so no default uses it.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

# Tensor types llama.cpp's quantize API can write for us (lower case, as llama-quantize names them).
WEIGHT_TYPES = ("q4_0", "q8_0", "bf16", "f16")


class EngineSetupError(ValueError):
    """llama.cpp cannot open or convert the model as configured; the message says what to change."""


def llama_cpp_module():
    try:
        import llama_cpp
        from llama_cpp._logger import set_verbose
    except ImportError as err:
        raise EngineSetupError(
            f"the llama.cpp engine needs llama-cpp-python ({err}); install it with `make setup` or "
            "`pip install 'llama-cpp-python==0.3.36'` (it builds from source: cmake and g++ are needed), "
            "or set EXPERTBOT_LLM_URL to answer through a server"
        ) from err
    set_verbose(False)  # llama.cpp's loading chatter would go to stderr on every start
    return llama_cpp


@functools.cache
def system_info() -> str:
    """llama.cpp's build and CPU features ("AVX512 = 1 | ... | AMX_INT8 = 1 | ...")."""
    return llama_cpp_module().llama_print_system_info().decode()


def weights_file(source: Path, weights: str, cache_dir: Path) -> Path:
    """source itself (weights='source'), or its copy in another tensor type, made once with llama.cpp's
    own quantize API (seconds for the bundled model) and kept in cache_dir."""
    if weights == "source":
        return source
    if weights not in WEIGHT_TYPES:
        raise EngineSetupError(
            f"llm weights must be 'source' or one of {', '.join(WEIGHT_TYPES)}, got {weights!r}"
        )
    target = Path(cache_dir) / f"{source.stem}-{source.stat().st_size}.{weights.upper()}.gguf"
    if target.is_file():
        return target
    llama_cpp = llama_cpp_module()
    ftype = getattr(llama_cpp, f"LLAMA_FTYPE_MOSTLY_{weights.upper()}")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.allow_requantize = True  # the bundled file is already Q4_1
    params.nthread = os.cpu_count() or 1
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    log.info("writing a %s copy of %s to %s (once)", weights.upper(), source.name, target)
    from llama_cpp._utils import suppress_stdout_stderr

    try:
        with suppress_stdout_stderr(disable=False):  # per-tensor lines printed by llama.cpp itself
            done = llama_cpp.llama_model_quantize(
                str(source).encode(), str(tmp).encode(), ctypes.byref(params)
            )
        if done != 0:
            raise EngineSetupError(
                f"llama.cpp could not convert {source} to {weights.upper()}; set weights='source'"
            )
        os.replace(tmp, target)  # atomic: another process sees the whole file or none
    finally:
        tmp.unlink(missing_ok=True)
    return target


def gguf_metadata(path: Path) -> dict[str, str]:
    """A GGUF file's scalar metadata, read by llama.cpp (vocabulary only, no weights: ~0.3 s)."""
    llama_cpp = llama_cpp_module()
    from llama_cpp import _internals

    params = llama_cpp.llama_model_default_params()
    params.vocab_only = True
    model = _internals.LlamaModel(path_model=str(path), params=params, verbose=False)
    try:
        return model.metadata()
    finally:
        model.close()


@dataclass
class Placement:
    """Model parameters for llama_model_load_from_file, and what they mean, for the start-up log."""

    params: object
    note: str


def model_params(gpu: bool) -> Placement:
    llama_cpp = llama_cpp_module()
    params = llama_cpp.llama_model_default_params()
    if gpu:
        if not llama_cpp.llama_supports_gpu_offload():
            raise EngineSetupError(
                "device is 'cuda' but this llama-cpp-python was built without GPU support; rebuild it with "
                "CMAKE_ARGS='-DGGML_CUDA=on' pip install --force-reinstall --no-binary llama-cpp-python "
                "'llama-cpp-python==0.3.36', or set device='cpu'"
            )
        params.n_gpu_layers = 0x7FFFFFFF  # every layer
        return Placement(params, "all layers on the GPU")
    if "AMX_INT8 = 1" not in system_info():
        return Placement(params, "llama.cpp's default CPU buffers")
    params.use_extra_bufts = False  # see the module docstring: no AMX buffer
    return Placement(params, "plain CPU buffers (an AMX CPU: llama.cpp's AMX matmul is avoided)")
