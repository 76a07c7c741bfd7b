"""The typed, frozen configuration tree behind config files and ``--set``.

Names follow vLLM where vLLM has a name, so users can paste their engine flags. Precedence is
defaults < config file < flags < ``--set``. Unknown keys fail with the list of valid ones.
Pydantic stays at the edge: the simulator is built from plain values before the run.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from servoir.errors import InputError


class _Frozen(BaseModel):
    # The attribute docstrings below document each field for readers of this file; pydantic is
    # not asked to parse them (use_attribute_docstrings reads and parses this module's source
    # at import: ~10 ms of every command's start-up, for schema text nothing shows).
    model_config = ConfigDict(frozen=True, extra="forbid")


class PolicySpec(_Frozen):
    """A policy chosen by registry name with its hyperparameters."""

    name: str
    """Registry name (``servoir policies`` lists them) or ``package.module:Class``."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Constructor parameters, checked by constructing the policy."""


class LengthsConfig(_Frozen):
    """Prompt/output length distribution for generated workloads."""

    kind: Literal["uniform", "fixed", "lognormal", "empirical"] = "empirical"
    """``empirical`` resamples (prompt, output) pairs from ``trace``."""
    trace: str = "azure_conv"
    """Built-in trace name or file for ``empirical``."""
    prompt: tuple[int, int] = (128, 2048)
    """``uniform``: inclusive prompt range; ``fixed``: first element is the prompt length."""
    output: tuple[int, int] = (32, 512)
    """``uniform``: inclusive output range; ``fixed``: first element is the output length."""
    prompt_mean: float = Field(default=1024.0, gt=0)
    """``lognormal``: mean prompt tokens."""
    prompt_sigma: float = Field(default=1.0, ge=0)
    """``lognormal``: log-space sigma of prompt tokens."""
    output_mean: float = Field(default=256.0, gt=0)
    """``lognormal``: mean output tokens."""
    output_sigma: float = Field(default=1.0, ge=0)
    """``lognormal``: log-space sigma of output tokens."""


class GeneratorConfig(_Frozen):
    """Arrival process for generated workloads (used when no trace is given)."""

    kind: Literal["poisson", "gamma", "mmpp", "sessions", "sharegpt_sessions"] = "poisson"
    """Poisson, Gamma-bursty (``cv``), Markov-modulated Poisson (``rates``, ``sojourn_s``), or
    multi-turn sessions (``sessions``: ``turns`` turns with lengths from ``lengths``;
    ``sharegpt_sessions``: real ShareGPT conversations). For sessions ``workload.rate`` is the
    rate of session starts and each later turn arrives ``think_time_s`` (exponential mean) after
    the previous turn finishes."""
    cv: float = Field(default=1.0, gt=0)
    """Coefficient of variation of Gamma inter-arrival gaps (1 = Poisson)."""
    rates: tuple[float, ...] = (1.0, 0.0)
    """MMPP per-state rates, as multiples of ``workload.rate`` normalised to mean 1."""
    sojourn_s: tuple[float, ...] = (10.0, 10.0)
    """MMPP mean time in each state (seconds)."""
    turns: int = Field(default=4, ge=1)
    """``sessions``: turns per session."""
    think_time_s: float = Field(default=5.0, ge=0)
    """Sessions: mean think time between a turn's finish and the next turn's arrival."""
    history: bool = True
    """``sessions``: each turn's prompt carries the whole conversation so far."""
    sessions: int | None = Field(default=None, gt=0)
    """Number of sessions (default: ``num_requests / turns``, rounded up)."""
    lengths: LengthsConfig = Field(default_factory=LengthsConfig)
    """Length distribution."""


class WorkloadConfig(_Frozen):
    """What arrives."""

    trace: str | None = None
    """Trace file or built-in name (azure_code, azure_conv, mooncake_conversation, ...)."""
    rate: float | None = Field(default=None, gt=0)
    """Mean arrival rate (req/s): generator rate, or a trace replayed at another rate."""
    num_requests: int | None = Field(default=None, gt=0)
    """Number of requests (the first N of a trace; generated workloads default to 1000)."""
    max_concurrency: int | None = Field(default=None, gt=0)
    """Closed-loop cap on requests in flight, as vLLM's benchmark ``--max-concurrency``."""
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    """Arrival process and lengths when no trace is given."""


class HardwareConfig(_Frozen):
    """Model, GPU and parallelism of every instance."""

    model: str = "llama-3-8b"
    """Model name (``servoir hardware list``)."""
    gpu: str = "a100"
    """GPU name."""
    tp: int = Field(default=1, ge=1)
    """Tensor-parallel degree."""
    pp: int = Field(default=1, ge=1)
    """Pipeline-parallel degree."""
    kv_tokens: int | None = Field(default=None, gt=0)
    """Override the KV capacity per instance, in tokens."""
    expert_parallel: bool = False
    """MoE models in ``cluster.mode=dp_attention``: the group's ``tp x instances`` GPUs share
    the routed experts (vLLM's ``--enable-expert-parallel``, DeepSeek-style serving); each rank
    keeps attention, dense layers and shared experts."""


# Engine defaults per preset: what the engine being mirrored ships.
PRESETS: dict[str, dict[str, Any]] = {
    # vLLM v1 (online serving defaults for an 80 GB GPU).
    "vllm_v1": {"max_num_seqs": 256, "max_num_batched_tokens": 8192,
                "enable_chunked_prefill": True, "scheduler_reserve_full_isl": True},
    # Vidur 0.0.26's vLLM scheduler: batch_size_cap 128, max_tokens_in_batch 4096, no chunking.
    "vidur_v0": {"max_num_seqs": 128, "max_num_batched_tokens": 4096,
                 "enable_chunked_prefill": False, "scheduler_reserve_full_isl": False},
}


class EngineConfig(_Frozen):
    """Engine settings, with vLLM's names. Unset (``None``) values take the preset's default."""

    preset: Literal["vllm_v1", "vidur_v0"] = "vllm_v1"
    """Engine behaviour: ``vllm_v1`` (chunked prefill, mixed batches, recompute preemption) or
    ``vidur_v0`` (Vidur 0.0.26's vLLM v0 scheduler: prefill-first, whole prompts, pipeline
    stages as Vidur models them, Vidur's memory planner and latency tables)."""
    max_num_seqs: int | None = Field(default=None, ge=1)
    """Cap on sequences in the running batch (vllm_v1: 256, vidur_v0: 128)."""
    max_num_batched_tokens: int | None = Field(default=None, ge=1)
    """Token budget per iteration (vllm_v1: 8192, vidur_v0: 4096)."""
    block_size: int = Field(default=16, ge=1)
    """KV block size in tokens."""
    gpu_memory_utilization: float = Field(default=0.9, gt=0, le=1)
    """Fraction of GPU memory the engine may use (weights, activations, KV)."""
    enable_chunked_prefill: bool | None = None
    """Split long prompts across iterations within the token budget (vllm_v1: true)."""
    scheduler_reserve_full_isl: bool | None = None
    """Admit a request only if its whole prompt fits in the free KV blocks (vLLM 0.19's
    default; its first chunk alone is allocated). Without it a request is admitted when its
    first chunk fits and may be preempted later."""
    enable_prefix_caching: bool = False
    """Reuse KV blocks of shared prefixes (not yet modelled; must stay false)."""
    async_scheduling: bool = False
    """vLLM 0.19's async scheduling: step j+1 is formed while step j runs, from what the
    scheduler knew when step j started (a request arriving mid-step starts one step later; a
    finished one holds its slot for one more decision). ``servoir validate`` turns it on."""
    cache_preempted: bool = False
    """The part of vLLM's prefix cache that matters without shared prefixes: a preempted
    request's freed blocks stay cached until reused, and on readmission it recomputes only what
    was evicted. ``servoir validate`` turns it on."""
    preemption_mode: Literal["recompute"] = "recompute"
    """What happens to a preempted request's KV (vLLM v1 recomputes)."""
    max_model_len: int | None = Field(default=None, gt=0)
    """Longest prompt + output accepted; longer requests are rejected and counted."""

    def setting(self, name: str) -> Any:
        """The value of ``name`` with the preset's default filled in."""
        value = getattr(self, name)
        return PRESETS[self.preset][name] if value is None else value

    @model_validator(mode="after")
    def _check(self) -> EngineConfig:
        seqs, tokens = self.setting("max_num_seqs"), self.setting("max_num_batched_tokens")
        if tokens < seqs:
            raise ValueError(
                f"max_num_batched_tokens ({tokens}) must be >= max_num_seqs ({seqs}), "
                f"as vLLM requires")
        if self.enable_prefix_caching:
            raise ValueError("enable_prefix_caching is not modelled yet; set it to false")
        if self.preset == "vidur_v0" and self.block_size != 16:
            raise ValueError("vidur_v0 models Vidur's block size of 16")
        if self.preset == "vidur_v0" and (self.async_scheduling or self.cache_preempted):
            raise ValueError("vidur_v0 models Vidur's synchronous scheduler without a prefix "
                             "cache; async_scheduling and cache_preempted must stay false")
        return self


class ClusterConfig(_Frozen):
    """Instances and the router in front of them."""

    mode: Literal["independent", "dp_attention", "pd"] = "independent"
    """``independent``: instances behind a router, each at its own pace. ``dp_attention``: the
    instances are the G ranks of one data-parallel attention group in lock-step (DeepSeek-style
    serving): every decode step ends at a barrier, so a step lasts as long as the most loaded
    rank's iteration; requests are sticky to their rank (:mod:`servoir.sim.dp_attention`).
    ``pd``: prefill-decode disaggregation: ``prefill_instances`` of the ``instances`` run
    prefills only, the rest decode, and each request's KV crosses its prefill instance's link
    (:mod:`servoir.sim.pd`)."""
    instances: int = Field(default=1, ge=1)
    """Number of instances (each with tp x pp GPUs)."""
    router: PolicySpec = Field(default_factory=lambda: PolicySpec(name="round_robin"))
    """Routing policy."""
    prefill_instances: int = Field(default=1, ge=1)
    """``mode=pd``: instances in the prefill pool (the other ``instances - prefill_instances``
    decode); must leave at least one decode instance."""
    link_gb_per_s: float = Field(default=25.0, gt=0)
    """``mode=pd``: bandwidth of each prefill instance's KV-transfer link, in GB/s (1e9 bytes;
    25 GB/s is a 200 Gb/s NIC). A request's KV (``kv_bytes_per_token x prompt``) crosses it
    FIFO after its prefill."""


class InstanceConfig(_Frozen):
    """Per-instance policies."""

    scheduler: PolicySpec = Field(default_factory=lambda: PolicySpec(name="fcfs"))
    """Admission scheduling policy."""


class PredictionConfig(_Frozen):
    """Output-length predictions shown to scheduling policies (``servoir.workload.predictors``)."""

    kind: Literal["none", "oracle", "noisy", "interval", "learned"] = "none"
    """``none``: no prediction (policies use their fallback); ``oracle``: the truth; ``noisy``:
    truth times a lognormal factor (``params.sigma``); ``interval``: ``[l, u]`` with
    ``l = params.alpha * u``, truth uniform inside or at the worst end
    (``params.placement=adversarial``); ``learned``: quantiles by prompt-length bucket fitted on
    the first ``params.train_frac`` (0.2) of the trace."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Parameters of the predictor kind (checked when the run is built)."""


class SloConfig(_Frozen):
    """Service-level objectives; a request meets the SLO when it meets every one set."""

    ttft_s: float | None = Field(default=None, gt=0)
    """Time-to-first-token target (seconds)."""
    tpot_s: float | None = Field(default=None, gt=0)
    """Time-per-output-token target (seconds)."""


class SimConfig(_Frozen):
    """One simulation run."""

    seed: int = Field(default=0, ge=0)
    """The only seed; every random stream derives from it by name."""
    workload: WorkloadConfig = Field(default_factory=WorkloadConfig)
    hardware: HardwareConfig = Field(default_factory=HardwareConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)
    cluster: ClusterConfig = Field(default_factory=ClusterConfig)
    instance: InstanceConfig = Field(default_factory=InstanceConfig)
    slo: SloConfig = Field(default_factory=SloConfig)
    prediction: PredictionConfig = Field(default_factory=PredictionConfig)

    def digest(self) -> str:
        """SHA-256 of the canonical JSON of the config."""
        blob = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()


def valid_keys(model: type[BaseModel] = SimConfig, prefix: str = "") -> list[str]:
    """Every dotted key of the tree (leaves and policy ``params.*`` prefixes)."""
    out = []
    for name, f in model.model_fields.items():
        ann = f.annotation
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            if ann is PolicySpec:
                out += [f"{prefix}{name}.name", f"{prefix}{name}.params.*"]
            else:
                out += valid_keys(ann, f"{prefix}{name}.")
        elif name == "params":  # free-form parameters of a named kind (prediction.params.*)
            out.append(f"{prefix}params.*")
        else:
            out.append(prefix + name)
    return out


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = tree
    for p in parts[:-1]:
        nxt = node.setdefault(p, {})
        if not isinstance(nxt, dict):
            raise InputError(f"'{key}' sets inside '{p}', which is a value", field=key)
        node = nxt
    node[parts[-1]] = value


def _check_key(key: str, file: str | None = None) -> None:
    valid = valid_keys()
    if key in valid:
        return
    for v in valid:
        # "x.params.*": one parameter, or the whole mapping "x.params" at once.
        if v.endswith(".*") and (key == v[:-2] or (key.startswith(v[:-1])
                                                   and len(key) > len(v) - 1)):
            return
    raise InputError(f"unknown configuration key '{key}'; valid keys: {', '.join(valid)}",
                     file=file, field=key)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``key=value`` with the value read as a YAML scalar."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise InputError(f"--set expects key=value, got '{text}'")
    return key.strip(), yaml_scalar(raw, field=key.strip())


# Words YAML 1.1 (PyYAML) reads as booleans or null; any other identifier is a plain string.
_YAML_WORDS = frozenset(["y", "n", "yes", "no", "true", "false", "on", "off", "null"])


def yaml_scalar(raw: str, field: str | None = None) -> Any:
    """``raw`` read as a YAML scalar. A plain identifier (``vidur_v0``, ``round_robin``) is
    returned as the string it is without loading the YAML parser (a tenth of start-up); the
    result equals ``yaml.safe_load(raw)`` (tested)."""
    text = raw.strip()
    if not text:
        return None
    if text.isidentifier() and text.isascii() and text.lower() not in _YAML_WORDS:
        return text
    import yaml

    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError as e:
        raise InputError(f"cannot parse value '{raw}': {e}", field=field) from e


def _flatten(tree: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted leaf keys of a nested mapping (an empty mapping contributes no key)."""
    keys = []
    for k, v in tree.items():
        full = f"{prefix}{k}"
        if isinstance(v, dict):
            keys += _flatten(v, full + ".")
        else:
            keys.append(full)
    return keys


def _merge(dst: dict[str, Any], src: dict[str, Any]) -> None:
    """Deep-merge ``src`` into ``dst`` (mappings merge, everything else replaces)."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = v


def load_config(
    path: str | Path | None = None,
    flags: dict[str, Any] | None = None,
    overrides: list[str] | None = None,
) -> SimConfig:
    """Build a :class:`SimConfig`: defaults < ``path`` (YAML/JSON) < ``flags`` < ``overrides``.

    ``flags`` map dotted keys to values (``None`` values are ignored); ``overrides`` are
    ``key=value`` strings. Errors name the file and the offending field.
    """
    # Start from the defaults so that a partial section (say, only a policy's params) keeps
    # the defaults of its siblings (the policy's name).
    tree: dict[str, Any] = SimConfig().model_dump(mode="json")
    src = "config"
    if path is not None:
        src = str(path)
        try:
            text = Path(path).read_text()
        except OSError as e:
            raise InputError(f"cannot read config: {e}", file=src) from e
        import yaml

        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            problem = getattr(e, "problem", None) or str(e).splitlines()[0]
            raise InputError(f"invalid YAML: {problem}", file=src,
                             line=mark.line + 1 if mark else None) from e
        if not isinstance(loaded, dict):
            raise InputError("top level must be a mapping of keys", file=src)
        for k in _flatten(loaded):
            _check_key(k, file=src)
        _merge(tree, loaded)
    for key, value in (flags or {}).items():
        if value is not None:
            _check_key(key)
            _set_dotted(tree, key, value)
    for text in overrides or []:
        key, value = parse_override(text)
        _check_key(key)
        _set_dotted(tree, key, value)
    try:
        return SimConfig.model_validate(tree)
    except ValidationError as e:
        err = e.errors()[0]
        field = ".".join(str(p) for p in err["loc"])
        raise InputError(f"{err['msg']} (got {err.get('input')!r})", file=src, field=field) from e
