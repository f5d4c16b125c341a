"""What this machine's CPU can do: its model and the instruction-set features that
change which int8 / fp32 kernels ONNX Runtime and PyTorch use (``cpu_facts``), and
where ORT's uint8 x int8 kernels saturate (``saturates_u8s8``)."""

from __future__ import annotations

import platform
from functools import cache
from pathlib import Path
from typing import Any

__all__ = ["ISA_FLAGS", "cpu_facts", "saturates_u8s8"]

#: CPU features that change what int8 / fp32 kernels ONNX Runtime and PyTorch can use.
ISA_FLAGS = (
    "avx",
    "avx2",
    "fma",
    "avx512f",
    "avx512_vnni",
    "avx_vnni",
    "amx_int8",
    "neon",
    "asimd",
)


def cpu_facts(cpuinfo: str | None = None) -> dict[str, Any]:
    """CPU model name and the ``ISA_FLAGS`` it has, from ``/proc/cpuinfo`` (Linux).

    ``cpuinfo`` is the file's text (read from the system when ``None``); on
    other systems the model falls back to ``platform.processor()`` and the
    flags are unknown (``None``).
    """
    if cpuinfo is None:
        p = Path("/proc/cpuinfo")
        try:
            cpuinfo = p.read_text(encoding="utf-8", errors="replace") if p.exists() else ""
        except OSError:
            cpuinfo = ""
    model = None
    flags: set[str] | None = None
    for line in cpuinfo.splitlines():
        key, _, val = line.partition(":")
        key = key.strip().lower()
        if model is None and key in ("model name", "hardware", "cpu model"):
            model = val.strip()
        elif flags is None and key in ("flags", "features"):
            flags = set(val.split())
    return {
        "cpu_model": model or platform.processor() or platform.machine(),
        "isa": None if flags is None else [f for f in ISA_FLAGS if f in flags],
    }


@cache
def _this_isa() -> tuple[str, ...] | None:
    isa = cpu_facts()["isa"]
    return None if isa is None else tuple(isa)


def saturates_u8s8(isa: list[str] | tuple[str, ...] | None = None) -> bool:
    """True where ONNX Runtime's uint8 x int8 kernels saturate: x86 with AVX2 and neither
    AVX-512 VNNI nor AVX-VNNI (``isa`` as ``cpu_facts`` lists it; this machine's when
    None). There ``vpmaddubsw`` adds each pair of products in saturating int16; ARM and
    VNNI kernels accumulate in int32 and do not."""
    flags = _this_isa() if isa is None else isa
    if not flags:
        return False
    return "avx2" in flags and not {"avx512_vnni", "avx_vnni"} & set(flags)
