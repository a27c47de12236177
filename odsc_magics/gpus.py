"""The GPUs the shapes carry: memory, memory bandwidth and dense BF16 throughput from the vendors' datasheets."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["GPU", "GPUS", "gpu"]


@dataclass(frozen=True)
class GPU:
    """One GPU's datasheet figures (per GPU; GB = 10⁹ bytes, TFLOPS dense, without sparsity)."""

    name: str
    memory_gb: float  # per GPU, as the datasheet and the shape table state it
    bandwidth_gbps: float  # memory bandwidth, GB/s
    bf16_tflops: float  # dense FP16/BF16 tensor TFLOPS (no sparsity); P100/V100: their FP16 figure
    source: str  # datasheet cited, with the date read
    cuda_gib: float | None = None  # total memory as CUDA reports it, GiB (what vLLM budgets from), where observed
    nvlink: bool = True  # GPUs of a shape talk over NVLink / Infinity Fabric rather than PCIe

    @property
    def visible_bytes(self) -> float:
        """Memory CUDA reports for the GPU: the observed figure, else the datasheet's (binary) gigabytes less ~1%."""
        if self.cuda_gib is not None:
            return self.cuda_gib * 2**30
        return self.memory_gb * 2**30 * 0.99


# The datasheets' memory is binary (a "24 GB" A10 holds 24 GiB of GDDR6, less what ECC reserves); the shape table
# keeps the datasheet's number, vLLM budgets from what CUDA reports. ``cuda_gib`` is the total printed by PyTorch's
# out-of-memory message ("GPU 0 has a total capacity of ...") or vLLM's memory profiler on that GPU, read 2026-11-29:
# A10 22.18 (github.com/OpenBMB/MiniCPM-V/issues/640, one A10 24 GB), A100 40 GB 39.50
# (github.com/TianheWu/CoSeR/issues/10), A100 80 GB 79.25 (github.com/HiDream-ai/VAREdit/issues/6), H100 79.22
# (github.com/vllm-project/vllm/pull/10511), V100 16 GB 15.77 (github.com/vllm-project/vllm/issues/10637), L40S
# 44.52 (github.com/vllm-project/vllm-omni/issues/807). The A40 (48 GB GDDR6, ECC on, like the L40S) is taken as the
# L40S; the others as the datasheet's GiB less 1%.
_TABLE = [
    GPU(
        "P100",
        16,
        732,
        18.7,
        "NVIDIA Tesla P100 datasheet (PCIe 16 GB: 732 GB/s HBM2, 18.7 TFLOPS FP16), read 2026-11-29",
        nvlink=False,
    ),
    GPU(
        "V100",
        16,
        900,
        125,
        "NVIDIA Tesla V100 datasheet (SXM2 16 GB: 900 GB/s HBM2, 125 TFLOPS tensor), read 2026-11-29",
        15.77,
    ),
    GPU(
        "A10",
        24,
        600,
        125,
        "NVIDIA A10 Tensor Core GPU datasheet (24 GB GDDR6, 600 GB/s, BF16 tensor 125 TFLOPS | 250 sparse); memory "
        "and bandwidth also in baseten.co/blog/nvidia-a10-vs-a10g-for-ml-model-inference, read 2026-11-29",
        22.18,
        nvlink=False,
    ),
    GPU(
        "A100-40G",
        40,
        1555,
        312,
        "NVIDIA A100 Tensor Core GPU datasheet (40 GB HBM2 SXM: 1,555 GB/s; BF16 tensor 312 TFLOPS | 624 sparse), "
        "read 2026-11-29",
        39.50,
    ),
    GPU(
        "A100-80G",
        80,
        2039,
        312,
        "NVIDIA A100 Tensor Core GPU datasheet (80 GB HBM2e SXM: 2,039 GB/s; BF16 tensor 312 TFLOPS), read 2026-11-29",
        79.25,
    ),
    GPU(
        "H100",
        80,
        3350,
        989,
        "NVIDIA H100 Tensor Core GPU datasheet (H100 SXM: 80 GB, 3.35 TB/s; BF16 tensor 1,979 TFLOPS with sparsity, "
        "989 dense), read 2026-11-29",
        79.22,
    ),
    GPU(
        "H200",
        141,
        4800,
        989,
        "NVIDIA H200 Tensor Core GPU datasheet (H200 SXM: 141 GB HBM3e, 4.8 TB/s; BF16 tensor 1,979 TFLOPS with "
        "sparsity, 989 dense), read 2026-11-29",
    ),
    GPU(
        "L40S",
        48,
        864,
        362.05,
        "NVIDIA L40S datasheet (48 GB GDDR6 with ECC, 864 GB/s; BFLOAT16 tensor 362.05 | 733 sparse TFLOPS, as "
        "reproduced at mullet.se/product.html?product_id=355414), read 2026-11-29",
        44.52,
        nvlink=False,
    ),
    GPU(
        "MI300X",
        192,
        5300,
        1307.4,
        'AMD Instinct MI300X data sheet (192 GB HBM3, 5.3 TB/s peak; FP16/BF16 dense 1,307.4 TFLOPS, "~1.3 PFLOPS '
        'FP16" in jaredwatkins.com/research/ai-accelerators/amd-instinct/mi300-series), read 2026-11-29',
    ),
    GPU(
        "B200",
        180,
        7700,
        2250,
        "NVIDIA DGX B200 datasheet (1,440 GB HBM3e over 8 GPUs: 180 GB each); HGX B200 at 1,000 W: BF16 2,250 "
        "TFLOPS dense, 4,500 sparse (glennklockwood.com/garden/processors/B200), 7.7 TB/s "
        "(hmc-tech.com/gpus/nvidia-b200-vs-nvidia-b100), read 2026-11-29",
    ),
    GPU(
        "GB200",
        192,
        8000,
        2500,
        "NVIDIA GB200 launch specification (superchip: 384 GB HBM3e and 16 TB/s over 2 GPUs, "
        "hmc-tech.com/gpus/nvidia-b200-vs-nvidia-gb200); B200 in GB200 at 1,200 W: BF16 2,500 TFLOPS dense "
        "(glennklockwood.com/garden/processors/B200), read 2026-11-29",
    ),
    # Not in the shape catalog: GPUs of the published vLLM measurements the speed model is calibrated against.
    GPU(
        "A40",
        48,
        696,
        149.7,
        "NVIDIA A40 datasheet (48 GB GDDR6 with ECC, 696 GB/s; BF16 tensor with FP32 accumulate 149.7 | 299.4 "
        "sparse TFLOPS, as reproduced at ecer.com), read 2026-11-29",
        44.52,
        nvlink=False,
    ),
    GPU(
        "RTX4090",
        24,
        1008,
        165.2,
        "NVIDIA Ada GPU architecture whitepaper, GeForce RTX 4090 (24 GB GDDR6X, 1,008 GB/s; FP16/BF16 tensor with "
        "FP32 accumulate 165.2 TFLOPS dense), read 2026-11-29",
        nvlink=False,
    ),
    GPU(
        "A6000",
        48,
        768,
        154.8,
        "NVIDIA RTX A6000 datasheet (48 GB GDDR6 with ECC, 768 GB/s; tensor 309.7 TFLOPS with sparsity, 154.8 "
        "dense), read 2026-11-29",
        nvlink=False,
    ),
    GPU(
        "L4",
        24,
        300,
        121,
        "NVIDIA L4 Tensor Core GPU datasheet (24 GB GDDR6, 300 GB/s; BF16 tensor 242 TFLOPS with sparsity, 121 "
        "dense), read 2026-11-29",
        nvlink=False,
    ),
]

GPUS: dict[str, GPU] = {g.name: g for g in _TABLE}
"""Known GPUs by the name the shape catalog uses."""


def gpu(name: str) -> GPU:
    """The table's entry for a GPU; an unknown name raises ValueError naming the known ones."""
    found = GPUS.get(name)
    if found is None:
        raise ValueError(f"unknown GPU {name!r}; known GPUs: {', '.join(GPUS)}")
    return found
