"""A weight-only 4-bit copy of a model for fast CPU decoding (issue 4).

Decoding one token reads every weight once, so on a CPU it is bound by memory bandwidth: fp32 SmolLM2-135M
moves ~540 MB per token. The copy keeps each layer's Linear weights as 4-bit integers in groups of 32
inputs with a bf16 scale and zero per group (torch's CPU int4 kernels), the lm_head as int8 with a scale
per output row, and everything else (embeddings, norms, activations) in bf16: ~140 MB in all.

The bundled GGUF stores its layers as Q4_1, i.e. exactly 4-bit groups of 32 with a scale and a minimum,
so re-packing them loses only bf16 rounding of the scales; its embedding (the tied lm_head) is Q8_0, which
4 bits would blur, hence int8 there. torch's dynamic int8 quantization was tried and dropped: it also
rounds the activations to int8, and SmolLM2's answers fell apart (see BENCHMARKS.md).

The copy is for inference only: it cannot be trained or wrapped by peft. An adapter's LoRA is not merged
into the 4-bit weights (its delta is smaller than one 4-bit step and would mostly round away: a trained
adapter's answers were lost that way); each int4 layer keeps the adapter's low-rank A and B beside it
(inference_copy, then quantize_in_place; adapters.generate does both).
"""

from __future__ import annotations

import functools
import logging
from collections import OrderedDict

from adapters.config import QUANTIZE as QUANTIZE_MODES

log = logging.getLogger(__name__)

GROUP = 32  # int4 group size along the input dimension (Q4_1's block size)
# lm_head logits recomputed in fp32 from int8 rows (see WeightInt8Head). Over 1,802 positions of two texts
# the int4 pass's best 256 held the int8 head's best 50 (what top-k sampling sees) at all but one; its best
# 16 already held greedy's pick at all.
REFINE = 256
# torch's CPU int4 packing lays output rows out in blocks of 64: packed layers whose row counts are multiples
# of it can be stacked as they are (WeightInt4Linear.fused); others would need repacking.
PACK_ROWS = 64


@functools.cache
def _modules():
    """The two quantized Linear replacements (defined lazily: importing this file must not import torch)."""
    import torch
    from torch import nn

    class WeightInt4Linear(nn.Module):
        """linear(x) from 4-bit weights, asymmetric groups of GROUP inputs; x in bf16."""

        def __init__(self, linear: nn.Linear, lora=None):
            super().__init__()
            out_f, in_f = linear.weight.shape
            w = linear.weight.detach().float().reshape(out_f, in_f // GROUP, GROUP)
            low, high = w.amin(-1, keepdim=True), w.amax(-1, keepdim=True)
            scale = ((high - low) / 15).clamp(min=1e-12)
            q = torch.round((w - low) / scale).clamp(0, 15).to(torch.int32).reshape(out_f, in_f)
            zero = low + 8 * scale  # the kernel computes (q - 8) * scale + zero
            scale_zero = torch.cat([scale, zero], -1).transpose(0, 1).contiguous()  # [groups, out, 2]
            self.register_buffer("weight_int4", torch._convert_weight_to_int4pack_for_cpu(q, 1))
            self.register_buffer("scale_zero", scale_zero.to(torch.bfloat16))
            bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)
            self.register_buffer("bias", bias)
            # An adapter's LoRA stays a separate low-rank path (lora_b already times its scaling): merged
            # into the weights, its small delta would be below one 4-bit step and mostly rounded away.
            a, b = (
                (None, None)
                if lora is None
                else (lora[0].detach().float(), lora[1].detach().float() * lora[2])
            )
            self.register_buffer("lora_a", a)
            self.register_buffer("lora_b", b)
            self.in_features, self.out_features = in_f, out_f

        def forward(self, x):
            shape = x.shape
            x = x.reshape(-1, shape[-1]).to(torch.bfloat16)
            y = torch._weight_int4pack_mm_for_cpu(x, self.weight_int4, GROUP, self.scale_zero)
            if self.lora_a is not None:  # r is 8-16: a few thousand multiply-adds, in fp32
                y = y + ((x.float() @ self.lora_a.float().T) @ self.lora_b.float().T).to(y.dtype)
            y = y.reshape(*shape[:-1], self.out_features)
            return y if self.bias is None else y + self.bias

        def direct(self):
            """forward for [n, in] bf16 input as a plain function, for the lean decode loop: the kernel
            alone where there is no LoRA or bias, with no module call or reshape around it."""
            if self.lora_a is not None or self.bias is not None:
                return self.forward
            weight, scale_zero = self.weight_int4, self.scale_zero
            return lambda x: torch._weight_int4pack_mm_for_cpu(x, weight, GROUP, scale_zero)

        @classmethod
        def fused(cls, parts: list) -> WeightInt4Linear:
            """One layer computing parts' outputs side by side (q, k, v; or gate, up): one kernel call
            instead of several. The weights are copied; each part's LoRA keeps its own rows (B is block
            diagonal). None when the parts differ in bias or LoRA or input size, or when a part's outputs
            are not a multiple of PACK_ROWS (the packed weights then cannot simply be stacked)."""
            if len({p.in_features for p in parts}) > 1 or len({p.bias is None for p in parts}) > 1:
                return None
            if any(p.out_features % PACK_ROWS for p in parts):
                return None
            if len({p.lora_a is None for p in parts}) > 1:
                return None
            fused = cls.__new__(cls)
            nn.Module.__init__(fused)
            fused.register_buffer("weight_int4", torch.cat([p.weight_int4 for p in parts]))
            fused.register_buffer("scale_zero", torch.cat([p.scale_zero for p in parts], 1).contiguous())
            bias = None if parts[0].bias is None else torch.cat([p.bias for p in parts])
            fused.register_buffer("bias", bias)
            lora_a = lora_b = None
            if parts[0].lora_a is not None:
                lora_a = torch.cat([p.lora_a for p in parts])
                lora_b = torch.block_diag(*[p.lora_b for p in parts])
            fused.register_buffer("lora_a", lora_a)
            fused.register_buffer("lora_b", lora_b)
            fused.in_features, fused.out_features = parts[0].in_features, sum(p.out_features for p in parts)
            return fused

    class WeightInt8Head(nn.Module):
        """The lm_head from int8 weights with one scale per output row; x in bf16.

        Reading the whole int8 head (28 MB for SmolLM2's 49,152 rows) was a sixth of a decoded token. A
        first pass over an int4 copy of it (half the bytes) finds the REFINE best rows, and only those are
        computed from the int8 rows, in fp32: the logits that greedy decoding and top-k sampling look at
        are the int8 ones, the tail is int4. (int4 alone blurs the Q8_0 embedding too much to pick from;
        and bf16 logits have a spacing of 0.125 near 25, whose ties turned "Paris." into "L'Etoile".)
        """

        def __init__(self, linear: nn.Linear):
            super().__init__()
            w = linear.weight.detach().float()
            scale = (w.abs().amax(dim=1) / 127).clamp(min=1e-12)
            self.register_buffer("weight_int8", torch.round(w / scale[:, None]).to(torch.int8).contiguous())
            self.register_buffer("scale", scale)
            self.in_features, self.out_features = w.shape[1], w.shape[0]
            try:
                coarse = WeightInt4Linear(linear)
                self.register_buffer("coarse_int4", coarse.weight_int4)
                self.register_buffer("coarse_scale_zero", coarse.scale_zero)
            except RuntimeError:  # a shape the int4 packing does not take: one int8 pass instead
                self.coarse_int4 = None

        def forward(self, x):
            shape = x.shape
            x = x.reshape(-1, shape[-1]).to(torch.bfloat16).contiguous()
            if self.coarse_int4 is not None:
                y = torch._weight_int4pack_mm_for_cpu(
                    x, self.coarse_int4, GROUP, self.coarse_scale_zero
                ).float()
            else:
                y = torch._weight_int8pack_mm(x, self.weight_int8, self.scale.to(torch.bfloat16)).float()
            best = y.topk(min(REFINE, self.out_features), dim=-1).indices  # [tokens, REFINE]
            rows = self.weight_int8[best].float() * self.scale[best][..., None]
            y.scatter_(-1, best, torch.einsum("mk,mjk->mj", x.float(), rows))
            return y.reshape(*shape[:-1], self.out_features)

    return WeightInt4Linear, WeightInt8Head


def unsupported_reason(mode: str, device: str, model=None) -> str | None:
    """None if mode can run here, else why not (the caller then generates with the float model)."""
    import torch

    if mode == "none":
        return None
    if device != "cpu":
        return f"quantize={mode!r} is a CPU option (device is {device})"
    needed = ("_weight_int4pack_mm_for_cpu", "_convert_weight_to_int4pack_for_cpu", "_weight_int8pack_mm")
    missing = [name for name in needed if not hasattr(torch, name)]
    if missing:
        return f"torch {torch.__version__} lacks {', '.join(missing)}"
    if model is not None:
        # The copy starts as a float copy of the whole model: Phi-3-mini in fp32 would need 15 GB more.
        need = sum(p.numel() * p.element_size() for p in model.parameters())
        free = _available_memory()
        if free is not None and need > 0.8 * free:
            return (
                f"the {mode} copy is made from a float copy of the model ({need / 2**30:.1f} GiB), more than "
                f"the memory available now ({free / 2**30:.1f} GiB); set quantize=none or load_in_4bit"
            )
    return None


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            kb = next(int(line.split()[1]) for line in f if line.startswith("MemAvailable:"))
        return kb * 1024
    except (OSError, StopIteration, ValueError, IndexError):
        return None  # not Linux: no check


def quantize_in_place(model, mode: str = "int4"):
    """Turn a float model nobody else uses into the int4 inference copy (see the module docstring).

    Layers whose input size is not a multiple of GROUP stay bf16 Linear. Returns the model, in eval mode.
    """
    if mode != "int4":
        raise ValueError(f"quantize must be one of {', '.join(QUANTIZE_MODES)}; only 'int4' quantizes")
    import torch
    from torch import nn

    int4, int8 = _modules()
    head = model.get_output_embeddings()
    with torch.no_grad():
        # Replacing the (tied) lm_head module unties it: the embedding stays a bf16 lookup table.
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if type(child) is not nn.Linear:
                    continue
                if child is head:
                    setattr(module, name, int8(child))
                elif child.in_features % GROUP == 0:
                    setattr(module, name, int4(child))
        model.config.tie_word_embeddings = False
        # .to() would round every float buffer to bf16, the int8 head's scales and the LoRA A/B too: those
        # stay fp32 (the head's refined logits are meant to be fp32).
        exact = {
            (m, n): getattr(m, n)
            for m in model.modules()
            if isinstance(m, (int4, int8))
            for n in ("scale", "lora_a", "lora_b")
            if isinstance(getattr(m, n, None), torch.Tensor)
        }
        model.to(torch.bfloat16)
        for (m, n), tensor in exact.items():
            setattr(m, n, tensor)
        model.eval()
        model(
            input_ids=torch.zeros(1, 1, dtype=torch.long)
        )  # a kernel that fails, fails here, not mid-answer
    return model


def inference_copy(model, peft_model=None, peft_name: str | None = None):
    """A private copy of what runs for one adapter, ready for quantize_in_place: the base model
    (peft_name None), or the base with each LoRA layer already turned into an int4 layer that keeps the
    adapter's low-rank path beside it. The originals are only read, never changed."""
    import copy

    if peft_model is None:
        return copy.deepcopy(model)
    clone = copy.deepcopy(peft_model)
    if peft_name is None:
        return clone.unload()  # LoRA layers out: the plain base
    from peft.tuners.lora import LoraLayer
    from torch import nn

    int4, _ = _modules()
    for module in list(clone.modules()):
        for name, child in list(module.named_children()):
            if not isinstance(child, LoraLayer) or peft_name not in child.lora_A:
                continue
            base = child.get_base_layer()
            if type(base) is nn.Linear and base.in_features % GROUP == 0:
                lora = (
                    child.lora_A[peft_name].weight,
                    child.lora_B[peft_name].weight,
                    child.scaling[peft_name],
                )
                setattr(module, name, int4(base, lora))
    # Any LoRA layer left (an odd input size) is merged, so the copy is a plain transformers model.
    clone.set_adapter(peft_name)
    return clone.merge_and_unload(adapter_names=[peft_name])


class FastCopies:
    """The quantized copies a Generator answers with: per adapter key (None = the base), the copy and its
    LeanDecoder (None where the lean loop cannot run it), built on first use (a few seconds) and kept
    for the last KEEP keys. Not thread-safe: the Generator's lock guards it."""

    KEEP = 3  # ~150 MB each: the base, the current adapter and the one before

    def __init__(self, mode: str):
        self.mode = mode
        self.off: str | None = None if mode != "none" else "quantize='none'"  # why no copy, once known
        self._copies: OrderedDict = OrderedDict()

    def cached(self, key=None):
        """(copy, LeanDecoder or None) for key if it was built, else None; builds nothing."""
        return self._copies.get(key)

    def get(self, key, model, peft_model=None, peft_name: str | None = None, label: str = "the base"):
        """(copy, LeanDecoder or None) for key, built from model (and peft_model's adapter peft_name);
        None when quantizing is off or cannot run here (logged once, with the reason)."""
        if self.off:
            return None
        if key in self._copies:
            self._copies.move_to_end(key)
            return self._copies[key]
        from adapters import decode

        self.off = unsupported_reason(self.mode, model.device.type, model)
        if getattr(model, "is_loaded_in_4bit", False):
            self.off = f"quantize={self.mode!r} does not apply to a model loaded in 4-bit"
        if not self.off:
            log.info("building the %s copy for %s", self.mode, label)
            try:
                fast = quantize_in_place(inference_copy(model, peft_model, peft_name), self.mode)
            except Exception as err:  # an architecture or kernel the CPU int4 path cannot take
                self.off = f"building the {self.mode} copy failed ({err})"
        if self.off:
            log.warning("generating with the unquantized model: %s", self.off)
            return None
        lean_off = decode.unsupported_reason(fast)
        if lean_off:
            log.info("answers use generate(), not the lean decode loop: %s", lean_off)
        self._copies[key] = entry = (fast, None if lean_off else decode.LeanDecoder(fast))
        while len(self._copies) > self.KEEP:
            self._copies.popitem(last=False)
        return entry
