"""secagg: SecAgg+ against plain FedAvg at 100 devices (issue 25, item 4).

The measurement is ``bench_privacy.secagg_overhead`` (one federated round of 100 devices
on MNIST, the zoo MLP, every device taking part; plain, SecAgg and SecAgg+ rounds
interleaved ``BENCH_SECAGG_REPEATS`` times, one torch thread; the time ratio is of the
round's CPU seconds, wall ratios in details): SecAgg+ as sized in Bell
et al. 2020 -- a Harary graph of degree k = 2 ceil(log2 n), masks expanded locally from
seeds with AES-CTR, only seeds' Shamir shares travel, a 32-bit ring. The peer here is
plain FedAvg itself: the goals are ratios to it.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from bench_privacy import SECAGG_DEVICES, secagg_overhead, secagg_targets

__all__ = ["run"]


def run() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    torch.set_num_threads(1)
    load = [os.getloadavg()[0]]
    sec = secagg_overhead(("plain", "secagg_plus"))
    load.append(os.getloadavg()[0])
    return secagg_targets(sec, "secagg: "), {"devices": SECAGG_DEVICES, **sec, "load_1min": load}
