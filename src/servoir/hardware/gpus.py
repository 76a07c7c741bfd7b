"""GPU specs: memory, HBM bandwidth, dense bf16 FLOP/s, board power, NVLink bandwidth.

Figures are NVIDIA's data-sheet values for the SXM parts, except ``memory_bytes``: it is the
total CUDA reports (``torch.cuda.get_device_properties().total_memory``, the number vLLM
multiplies by ``gpu_memory_utilization``), about 79.1-79.2 GiB for the "80 GB" parts and
139.8 GiB for the "141 GB" H200 (nvidia-smi shows 81,920 MiB and 143,771 MiB; the difference is
the driver's reservation). Rounded to 0.01 GiB.
``interconnect_bytes_per_s`` is the one-direction NVLink bandwidth of one GPU (half the
bidirectional figure NVIDIA quotes).
"""

from __future__ import annotations

from dataclasses import dataclass

from servoir.errors import UnknownNameError

__all__ = ["GpuSpec", "get_gpu", "list_gpus"]

_GIB = 1024**3


@dataclass(frozen=True, slots=True)
class GpuSpec:
    """One accelerator.

    Parameters
    ----------
    name : str
        Registry key (``"a100"``, ``"h100"``, ``"h200"``).
    memory_bytes : int
        Device memory as CUDA reports it (see the module docstring).
    hbm_bandwidth_bytes_per_s : float
        Peak memory bandwidth.
    bf16_flops : float
        Peak dense bf16 tensor-core FLOP/s (no sparsity).
    power_w : float
        Board power limit (TDP).
    interconnect_bytes_per_s : float
        NVLink bandwidth per GPU, one direction.
    description : str
        The full product name.
    """

    name: str
    memory_bytes: int
    hbm_bandwidth_bytes_per_s: float
    bf16_flops: float
    power_w: float
    interconnect_bytes_per_s: float
    description: str = ""
    collective_latency_s: float = 10e-6  # fixed cost of one NCCL collective between GPUs


_GPUS: dict[str, GpuSpec] = {
    "a100": GpuSpec("a100", int(79.15 * _GIB), 2.039e12, 312e12, 400.0, 300e9, "A100-SXM4-80GB"),
    "h100": GpuSpec(
        "h100", int(79.11 * _GIB), 3.35e12, 989.4e12, 700.0, 450e9, "H100 SXM5 80GB HBM3"
    ),
    "h200": GpuSpec(
        "h200", int(139.8 * _GIB), 4.8e12, 989.4e12, 700.0, 450e9, "H200 SXM 141GB HBM3e"
    ),
    # The GPUs of the real vLLM validation runs (servoir validate). Memory is what CUDA reports
    # (the RTX 4090 run's vLLM saw 23.5 GiB); links are PCIe (no NVLink).
    "rtx4090": GpuSpec(
        "rtx4090", int(23.5 * _GIB), 1.008e12, 165.2e12, 450.0, 32e9, "GeForce RTX 4090 24GB"
    ),
    # Between the validation server's RTX PRO 6000s NCCL goes over PCIe without peer-to-peer:
    # 16 GB/s and 20 us per collective, the link its cluster description records
    # (data/validation/*/config.json: link_bw, link_latency), not the PCIe 5 x16 peak.
    "rtxpro6000": GpuSpec(
        "rtxpro6000", int(94.97 * _GIB), 1.597e12, 251.9e12, 600.0, 16e9,
        "RTX PRO 6000 Blackwell Server Edition 96GB", collective_latency_s=20e-6,
    ),
}
_GPU_ALIASES = {
    "a100-80gb": "a100",
    "a100-sxm": "a100",
    "a100_sxm": "a100",
    "h100-80gb": "h100",
    "h100-sxm": "h100",
    "h100_sxm": "h100",
    "h200-sxm": "h200",
    "h200_sxm": "h200",
    "rtx-4090": "rtx4090",
    "rtx-pro-6000": "rtxpro6000",
    "rtx_pro_6000": "rtxpro6000",
}


def get_gpu(name: str) -> GpuSpec:
    """Return the registered GPU spec (a few spellings such as ``"h100_sxm"`` are accepted).

    Examples
    --------
    >>> get_gpu("h100").hbm_bandwidth_bytes_per_s
    3350000000000.0
    """
    key = name.strip().lower()
    key = _GPU_ALIASES.get(key, key)
    try:
        return _GPUS[key]
    except KeyError:
        raise UnknownNameError("GPU", name, list(_GPUS)) from None


def list_gpus() -> list[str]:
    """Names of the registered GPUs."""
    return sorted(_GPUS)
