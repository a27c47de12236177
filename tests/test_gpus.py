"""The GPU table against the vendors' datasheets."""

from __future__ import annotations

import pytest

from odsc_magics.gpus import GPUS, gpu

# Written from the vendors' datasheets, not from the table (read 2026-11-29): memory per GPU (GB), memory bandwidth
# (GB/s), dense FP16/BF16 tensor TFLOPS without sparsity (P100: its FP16 figure).
# NVIDIA A10 datasheet: 24 GB GDDR6, 600 GB/s, BF16 125 | 250* TFLOPS (* with sparsity).
# NVIDIA Tesla P100 datasheet, PCIe 16 GB: 732 GB/s, FP16 18.7 TFLOPS. Tesla V100 SXM2: 16 GB, 900 GB/s, 125 tensor.
# NVIDIA A100 datasheet: 40 GB HBM2 1,555 GB/s, 80 GB HBM2e SXM 2,039 GB/s; BF16 tensor 312 | 624* TFLOPS.
# NVIDIA H100 datasheet, H100 SXM: 80 GB, 3.35 TB/s, BF16 tensor 1,979* TFLOPS (989 dense).
# NVIDIA H200 datasheet, H200 SXM: 141 GB HBM3e, 4.8 TB/s, BF16 1,979* (989 dense).
# NVIDIA L40S datasheet: 48 GB GDDR6, 864 GB/s, BF16 tensor 362.05 | 733*.
# AMD Instinct MI300X data sheet: 192 GB HBM3, 5.3 TB/s, FP16/BF16 1,307.4 TFLOPS dense.
# NVIDIA A40 datasheet: 48 GB GDDR6, 696 GB/s, BF16 149.7 | 299.4*. NVIDIA L4: 24 GB, 300 GB/s, BF16 242* (121).
# NVIDIA Ada whitepaper, GeForce RTX 4090: 24 GB GDDR6X, 1,008 GB/s, FP16 tensor with FP32 accumulate 165.2 dense.
DATASHEETS = {
    "A10": (24, 600, 125),
    "P100": (16, 732, 18.7),
    "V100": (16, 900, 125),
    "A100-40G": (40, 1555, 312),
    "A100-80G": (80, 2039, 312),
    "H100": (80, 3350, 989),
    "H200": (141, 4800, 989),
    "L40S": (48, 864, 362.05),
    "MI300X": (192, 5300, 1307.4),
    "A40": (48, 696, 149.7),
    "L4": (24, 300, 121),
    "RTX4090": (24, 1008, 165.2),
}


@pytest.mark.parametrize("name", sorted(DATASHEETS))
def test_gpu_matches_its_datasheet(name):
    memory, bandwidth, tflops = DATASHEETS[name]
    entry = gpu(name)
    assert (entry.memory_gb, entry.bandwidth_gbps, entry.bf16_tflops) == (memory, bandwidth, tflops)
    assert "read 20" in entry.source  # each entry says where it comes from and when it was read


def test_blackwell_memory_per_gpu():
    # NVIDIA DGX B200: 1,440 GB over 8 GPUs; GB200 superchip: 384 GB HBM3e over 2 GPUs
    assert gpu("B200").memory_gb == 1440 / 8
    assert gpu("GB200").memory_gb == 384 / 2
    # Blackwell is faster than Hopper on both counts
    assert gpu("B200").bandwidth_gbps > gpu("H200").bandwidth_gbps
    assert gpu("B200").bf16_tflops > 2 * gpu("H100").bf16_tflops * 0.99


def test_every_shape_gpu_is_in_the_table():
    from odsc_magics.sizing import SHAPES

    assert {s.gpu_model for s in SHAPES.values() if s.is_gpu} <= set(GPUS)


def test_cuda_reports_less_than_the_datasheet():
    # CUDA reports less than the datasheet (an A10's ECC reserves part of its 24 GiB: PyTorch sees 22.18 GiB)
    for entry in GPUS.values():
        assert entry.visible_bytes < entry.memory_gb * 2**30


def test_unknown_gpu_names_the_known_ones():
    with pytest.raises(ValueError, match=r"known GPUs: .*A10.*H100"):
        gpu("Z900")


# What PyTorch reports as a GPU's total memory ("GPU 0 has a total capacity of X GiB"), the budget vLLM starts from,
# as printed in public logs (read 2026-11-29): OpenBMB/MiniCPM-V#640 (one A10 24 GB), TianheWu/CoSeR#10 (A100 40 GB),
# HiDream-ai/VAREdit#6 (A100 80 GB), vllm-project/vllm PR #10511 (H100 80 GB, "total_gpu_memory 79.22GiB").
LOGGED_TOTAL_GIB = {"A10": 22.18, "A100-40G": 39.50, "A100-80G": 79.25, "H100": 79.22}


@pytest.mark.parametrize("name", sorted(LOGGED_TOTAL_GIB))
def test_memory_vllm_budgets_from_is_what_pytorch_reports(name):
    assert gpu(name).visible_bytes / 2**30 == pytest.approx(LOGGED_TOTAL_GIB[name], abs=0.005)
