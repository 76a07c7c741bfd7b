"""Model architecture specs: the shapes that set weights, KV bytes per token and GEMM sizes.

Numbers are the Hugging Face ``config.json`` values of each checkpoint. ``num_params`` counts
every stored parameter (embeddings and LM head included), so ``weight_bytes`` is the size vLLM
loads onto the GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

from servoir.errors import UnknownNameError

__all__ = ["ModelSpec", "get_model", "list_models"]


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """Shape of a decoder-only transformer.

    Parameters
    ----------
    name : str
        Registry key (lower case, e.g. ``"llama-3-8b"``).
    num_layers, hidden_size, num_heads, num_kv_heads, head_dim, intermediate_size, vocab_size : int
        As in the Hugging Face config (``num_hidden_layers``, ``num_attention_heads``,
        ``num_key_value_heads`` ...). ``intermediate_size`` is the dense MLP width.
    num_params : int
        Total stored parameters.
    max_model_len : int
        ``max_position_embeddings``.
    num_experts, experts_per_token, moe_intermediate_size : int
        MoE shape (0 for dense models). For MoE models every layer counted in ``num_layers`` is
        treated as an MoE layer except the first ``num_dense_layers``.
    dtype_bytes : int
        Bytes per weight element (2 for bf16, 1 for fp8 checkpoints).
    kv_dtype_bytes : int
        Bytes per KV-cache element; 0 means "same as ``dtype_bytes``" except that fp8 weights
        keep a bf16 KV cache (vLLM's ``kv_cache_dtype="auto"`` follows the activation dtype).
    mla_kv_dim : int
        Multi-head latent attention (DeepSeek-V2/V3): elements cached per token per layer
        (``kv_lora_rank + qk_rope_head_dim``), shared by all heads and replicated on every
        tensor-parallel rank. 0 for ordinary (GQA/MHA) attention.
    num_shared_experts, num_dense_layers : int
        DeepSeek-style always-active experts and leading dense layers.
    attn_layer_params : int
        Parameters of one attention layer when the head shapes do not give them (MLA's
        low-rank projections); 0: ``hidden * (q_size + 2 kv_size) + q_size * hidden``.
    """

    name: str
    num_layers: int
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    intermediate_size: int
    vocab_size: int
    num_params: int
    max_model_len: int
    num_experts: int = 0
    experts_per_token: int = 0
    moe_intermediate_size: int = 0
    dtype_bytes: int = 2
    kv_dtype_bytes: int = 0
    mla_kv_dim: int = 0
    num_shared_experts: int = 0
    num_dense_layers: int = 0
    attn_layer_params: int = 0

    @property
    def is_moe(self) -> bool:
        """True when the MLP is a mixture of experts."""
        return self.num_experts > 0

    @property
    def cache_dtype_bytes(self) -> int:
        """Bytes per KV-cache element (see ``kv_dtype_bytes``)."""
        if self.kv_dtype_bytes:
            return self.kv_dtype_bytes
        return max(self.dtype_bytes, 2)

    @property
    def kv_bytes_per_token(self) -> int:
        """KV-cache bytes one token occupies across all layers (whole model, all GPUs).

        GQA/MHA: ``2 (K and V) * num_layers * num_kv_heads * head_dim * bytes``.
        MLA (DeepSeek-V3): ``num_layers * mla_kv_dim * bytes``: vLLM caches only the compressed
        latent (512) plus the decoupled RoPE key (64) per layer, in bf16, i.e.
        ``61 * 576 * 2 = 70,272`` bytes per token.
        """
        if self.mla_kv_dim:
            return self.num_layers * self.mla_kv_dim * self.cache_dtype_bytes
        return 2 * self.num_layers * self.num_kv_heads * self.head_dim * self.cache_dtype_bytes

    @property
    def weight_bytes(self) -> int:
        """Bytes of all weights (``num_params * dtype_bytes``)."""
        return self.num_params * self.dtype_bytes

    @property
    def routed_expert_bytes(self) -> int:
        """Bytes of the routed experts (gate, up and down of every expert of every MoE layer;
        0 for dense models): the weights expert parallelism shards over its ranks. The shared
        experts, attention, router and dense layers stay on every rank."""
        if not self.is_moe:
            return 0
        per_expert = 3 * self.hidden_size * self.moe_intermediate_size
        moe_layers = self.num_layers - self.num_dense_layers
        return moe_layers * self.num_experts * per_expert * self.dtype_bytes

    @property
    def q_size(self) -> int:
        """Width of the query projection (``num_heads * head_dim``)."""
        return self.num_heads * self.head_dim

    @property
    def kv_size(self) -> int:
        """Width of the key (or value) projection (``num_kv_heads * head_dim``)."""
        return self.num_kv_heads * self.head_dim


_MODELS: dict[str, ModelSpec] = {}


def _add(spec: ModelSpec) -> None:
    _MODELS[spec.name] = spec


# meta-llama/Llama-2-7b-hf
_add(ModelSpec("llama-2-7b", 32, 4096, 32, 32, 128, 11008, 32000, 6_738_415_616, 4096))
# meta-llama/Meta-Llama-3-8B (Llama-3.1-8B has the same shapes and a 128k context)
_add(ModelSpec("llama-3-8b", 32, 4096, 32, 8, 128, 14336, 128256, 8_030_261_248, 8192))
_add(ModelSpec("llama-3.1-8b", 32, 4096, 32, 8, 128, 14336, 128256, 8_030_261_248, 131072))
# meta-llama/Llama-2-70b-hf
_add(ModelSpec("llama-2-70b", 80, 8192, 64, 8, 128, 28672, 32000, 68_976_648_192, 4096))
# meta-llama/Meta-Llama-3-70B (Llama-3.1-70B: same shapes, 128k context)
_add(ModelSpec("llama-3-70b", 80, 8192, 64, 8, 128, 28672, 128256, 70_553_706_496, 8192))
_add(ModelSpec("llama-3.1-70b", 80, 8192, 64, 8, 128, 28672, 128256, 70_553_706_496, 131072))
# mistralai/Mixtral-8x7B-v0.1: 8 experts, top-2, expert width 14336
_add(
    ModelSpec(
        "mixtral-8x7b", 32, 4096, 32, 8, 128, 14336, 32000, 46_702_792_704, 32768,
        num_experts=8, experts_per_token=2, moe_intermediate_size=14336,
    )
)  # fmt: skip
# Qwen/Qwen3-32B
_add(ModelSpec("qwen3-32b", 64, 5120, 64, 8, 128, 25600, 151936, 32_762_123_264, 40960))
# Qwen/Qwen3-30B-A3B: 128 experts, top-8, expert width 768, every layer MoE
_add(
    ModelSpec(
        "qwen3-30b-a3b", 48, 2048, 32, 4, 128, 6144, 151936, 30_532_122_624, 40960,
        num_experts=128, experts_per_token=8, moe_intermediate_size=768,
    )
)  # fmt: skip
# deepseek-ai/DeepSeek-V3: MLA (kv_lora_rank 512 + rope 64), 256 routed experts top-8 plus one
# shared expert of width 2048, first 3 layers dense (width 18432), fp8 weights (671B params;
# the 14B multi-token-prediction module is not loaded for plain decoding). head_dim is the
# value head dim (128); the q/k head dim is 192 (128 nope + 64 rope).
_add(
    ModelSpec(
        "deepseek-v3", 61, 7168, 128, 128, 128, 18432, 129280, 671_000_000_000, 163840,
        num_experts=256, experts_per_token=8, moe_intermediate_size=2048, dtype_bytes=1,
        kv_dtype_bytes=2, mla_kv_dim=576, num_shared_experts=1, num_dense_layers=3,
        # MLA per layer: q_a 7168x1536, q_b 1536x(128x192), kv_a 7168x576, kv_b 512x(128x256),
        # o (128x128)x7168 (config.json: q_lora_rank 1536, kv_lora_rank 512).
        attn_layer_params=7168 * 1536 + 1536 * 24576 + 7168 * 576 + 512 * 32768 + 16384 * 7168,
    )
)  # fmt: skip

# Names that resolve to another entry's latency profile (same shapes, different context length).
PROFILE_ALIASES: dict[str, str] = {"llama-3.1-8b": "llama-3-8b", "llama-3.1-70b": "llama-3-70b"}


def get_model(name: str) -> ModelSpec:
    """Return the registered model spec.

    Examples
    --------
    >>> get_model("llama-3-8b").kv_bytes_per_token
    131072
    """
    key = name.strip().lower()
    try:
        return _MODELS[key]
    except KeyError:
        raise UnknownNameError("model", name, list(_MODELS)) from None


def list_models() -> list[str]:
    """Names of the registered models."""
    return sorted(_MODELS)
