"""Telling whether the CPU computes bfloat16 natively, and warning when it does not."""

import warnings

import pytest

import ecgsoup.hardware as hardware
from ecgsoup import ECGPreprocessor, LayerwiseEmbedder, load_sample

X86_AVX2 = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu sse2 avx avx2 fma\n"
X86_BF16 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512_bf16 amx_tile\n"
ARM_BF16 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"


def test_cpuinfo_flags_are_read_for_x86_and_arm():
    assert "avx2" in hardware._cpuinfo_flags(X86_AVX2)
    assert not hardware._cpuinfo_flags(X86_AVX2) & hardware.BF16_FLAGS
    assert hardware._cpuinfo_flags(X86_BF16) & hardware.BF16_FLAGS
    assert hardware._cpuinfo_flags(ARM_BF16) & hardware.BF16_FLAGS
    assert hardware._cpuinfo_flags("model name : something\n") is None
    assert hardware.cpu_has_bf16() in (True, False, None)


def test_resolve_precision(monkeypatch):
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)
    assert hardware.resolve_precision("auto", "cpu") == "float32"
    assert hardware.resolve_precision("auto", "mps") == "float32"
    assert hardware.resolve_precision("bfloat16", "cpu") == "bfloat16"  # asked for: kept
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: True)
    assert hardware.resolve_precision("auto", "cpu") == "bfloat16"


def test_embedder_warns_only_when_bf16_is_emulated(monkeypatch):
    sample = load_sample()
    X = ECGPreprocessor(sampling_rate=sample.sampling_rate, lead_names=sample.lead_names).fit_transform(sample.X[:1])
    monkeypatch.setattr(hardware, "cpu_has_bf16", lambda: False)
    with pytest.warns(hardware.SlowPrecisionWarning, match=r"LayerwiseEmbedder: precision='bfloat16' on a CPU without"):
        LayerwiseEmbedder(precision="bfloat16").fit(X)
    for native, precision in ((True, "bfloat16"), (None, "bfloat16"), (False, "float32")):
        monkeypatch.setattr(hardware, "cpu_has_bf16", lambda native=native: native)
        with warnings.catch_warnings():
            warnings.simplefilter("error", hardware.SlowPrecisionWarning)
            LayerwiseEmbedder(precision=precision).fit(X)


def test_check_device_accepts_cpu_and_refuses_unknown_or_absent_devices():
    import torch

    from ecgsoup.hardware import check_device

    assert check_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="not a torch device name"):
        check_device("tpu-please")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            check_device("cuda:1")
    if not torch.backends.mps.is_available():
        with pytest.raises(ValueError, match="MPS is not available"):
            check_device("mps")
