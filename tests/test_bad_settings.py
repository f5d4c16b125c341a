"""Issue 19: bad settings of the newer components are refused by ``edgeintel validate`` in one
line naming the field and what is expected -- never a traceback, never accepted.

``CASES`` is the corpus: a shipped scenario, a mutation (dotted paths set in its mapping,
``--set`` assignments, or a sweep grid) and words the one-line message must contain.
``outcome`` runs one case the way the command does (``load_scenario`` then, for the cases
that need the data or the model, ``preflight``; ``load_scenario_with`` for ``--set``;
``load_grid`` + ``sweep_points`` for a grid) and classifies it as ``exit2`` (one line with
the words), ``unhelpful`` (a project error without them, or on several lines),
``accepted`` or ``traceback``. ``python tests/test_bad_settings.py`` prints the counts per
class (the closing note's before/after figures).

A property test mutates the shipped scenarios' settings at random (types, magnitudes,
signs, NaN/inf, booleans, strings) and checks validation never tracebacks and never
accepts a value no field allows.
"""

from __future__ import annotations

import copy
import math
import re
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

DEL = object()  # a mutation value: remove the key
APPEND = "+"  # a last path part: append the value to the list


@dataclass(frozen=True)
class Case:
    """One bad input: ``changes`` (path -> value) applied to shipped scenario ``base``."""

    id: str
    changes: dict[str, Any]
    words: tuple[str, ...]
    base: str = "default"
    deep: bool = False  # needs the data or the model: validate's preflight
    sets: tuple[str, ...] = ()  # --set assignments instead of a file mutation
    files: dict[str, str] = field(default_factory=dict)  # extra files beside the scenario
    grid: str | None = None  # a sweep grid file's text


def C(id: str, changes: dict[str, Any], *words: str, **kw: Any) -> Case:
    return Case(id, changes, tuple(words), **kw)


S = "settings."
RC = S + "caching.result_cache."
PL = S + "caching.placement."
FI = S + "caching.filter."
OF = S + "offloading."
SIM = S + "sim."
DEP = S + "runtime.deploy."
TR = S + "training."

BIG = 1e30
MOST = "at most|less than or equal"  # pydantic's words for a bound, or ours
LEAST = "at least|greater than or equal"
TOKEN = "t" * 24

CASES: list[Case] = [
    # ---------------------------------------------------------------- types
    C("rc-capacity-bool", {RC + "capacity": True}, "result_cache.capacity", "integer"),
    C("rc-k-float", {RC + "k": 3.0}, "result_cache.k", "integer"),
    C("rc-ttl-str", {RC + "ttl_s": "60"}, "ttl_s", "number"),
    C("rc-enabled-str", {RC + "enabled": "no"}, "result_cache.enabled", "true or false"),
    C("pl-item-mb-str", {PL + "item_mb": "10"}, "item_mb", "number"),
    C("pl-items-float", {PL + "items": 2000.5}, "placement.items", "integer"),
    C("fi-probe-every-str", {FI + "probe_every": "10"}, "probe_every", "integer"),
    C("fi-adapt-int", {FI + "adapt": 1}, "filter.adapt", "true or false"),
    C("caching-enabled-no", {S + "caching.enabled": "no"}, "caching.enabled", "true or false"),
    C("caching-policies-int", {S + "caching.policies": ["lru", 3]}, "policies", "string"),
    C("of-deadline-inf", {OF + "deadline_ms": math.inf}, "deadline_ms", "finite"),
    C("of-deadline-str", {OF + "deadline_ms": "50"}, "deadline_ms", "number"),
    C("of-d2d-bw-inf", {OF + "d2d": {"bandwidth_mbps": math.inf}}, "d2d.bandwidth_mbps", "finite"),
    C("of-d2d-neighbors-bool", {OF + "d2d": {"neighbors": True}}, "d2d.neighbors", "integer"),
    C("of-workers-bool", {OF + "server_workers": True}, "server_workers", "integer"),
    C("of-rate-bool", {OF + "request_rate_hz": True}, "request_rate_hz", "number"),
    C("of-weight-str", {OF + "latency_weight": "0.5"}, "latency_weight", "number"),
    C("of-int8-int", {OF + "int8_intermediate": 1}, "int8_intermediate", "true or false"),
    C("of-deadlines-str", {OF + "deadlines_ms": {"phone": "50"}}, "deadlines_ms", "number"),
    C("of-load-bool", {OF + "server_load": {"macro-1": True}}, "server_load", "number"),
    C("of-ee-epochs-str", {OF + "early_exit": {"epochs": "30"}}, "early_exit.epochs", "integer"),
    C("battery-str", {"device_profiles.phone.battery_j": "4e4"}, "battery_j", "number"),
    C("cache-mb-str", {"edge_servers.0.cache_mb": "4096"}, "cache_mb", "number"),
    C("sim-duration-str", {SIM + "duration_s": "600"}, "sim.duration_s", "number"),
    C("sim-filter-str", {SIM + "filter": "yes"}, "sim.filter", "true or false"),
    C("sim-seed-float", {SIM + "seed": 1.5}, "sim.seed", "integer"),
    C("rt-rate-nan", {S + "runtime.rate_hz": math.nan}, "rate_hz", "finite"),
    C("deploy-duration-bool", {DEP + "duration_s": True}, "deploy.duration_s", "number"),
    C("training-rounds-bool", {TR + "rounds": True}, "training.rounds", "integer"),
    C(
        "tr-lr-schedule-unknown",
        {TR + "lr_schedule": "linear"},
        "training.lr_schedule",
        "'constant', 'cosine' or 'onecycle'",
    ),
    C("fi-target-nan", {FI + "target": math.nan}, "filter.target", "finite"),
    C("rc-maxdist-inf", {RC + "max_distance": math.inf}, "max_distance", "finite"),
    C("pl-zipf-nan", {PL + "zipf_alpha": math.nan}, "zipf_alpha", "finite"),
    C("trace-t-inf", {"links.2.trace.1.t_s": math.inf}, "t_s", "finite"),
    # ---------------------------------------------------------------- magnitudes
    C("cache-mb-huge", {"edge_servers.0.cache_mb": 3e38}, "cache_mb", MOST),
    C("device-cache-mb-huge", {"device_profiles.kiosk.cache_mb": 1e20}, "cache_mb", MOST),
    C("sim-duration-huge", {SIM + "duration_s": BIG}, "sim.duration_s", MOST),
    C("sim-task-ms-huge", {SIM + "task_ms": BIG}, "task_ms", MOST),
    C("sim-catalog-huge", {SIM + "catalog": 2 * 10**18}, "catalog", MOST),
    C("sim-devices-huge", {SIM + "devices": 10**9}, "sim.devices", MOST),
    C("sim-cache-entries-huge", {SIM + "cache_entries": 10**12}, "cache_entries", MOST),
    C("sim-queue-limit-huge", {SIM + "queue_limit": 10**12}, "queue_limit", MOST),
    C("sim-input-bytes-huge", {SIM + "input_bytes": 10**15}, "input_bytes", MOST),
    C("sim-task-rate-huge", {SIM + "task_rate_hz": 1e9}, "task_rate_hz", MOST),
    C("sim-overhead-ms-huge", {SIM + "request_overhead_ms": BIG}, "request_overhead_ms", MOST),
    C(
        "sim-sigma-huge",
        {SIM + "request_overhead_sigma": 1000},
        "request_overhead_sigma",
        MOST,
    ),
    C("sim-forward-bytes-huge", {SIM + "forward_bytes": 10**15}, "forward_bytes", MOST),
    C("sim-uplink-huge", {SIM + "macro_uplink_mbps": BIG}, "macro_uplink_mbps", MOST),
    C("sim-on-tiny", {SIM + "traces": {"mean_on_s": 1e-6}}, "mean_on_s", LEAST),
    C("sim-off-tiny", {SIM + "traces": {"mean_off_s": 1e-6}}, "mean_off_s", LEAST),
    C("sim-speed-sigma-huge", {SIM + "traces": {"speed_sigma": 1000}}, "speed_sigma", MOST),
    C("sim-handover-huge", {SIM + "mobility": {"handover_rate_hz": 1e6}}, "handover", MOST),
    C(
        "sim-fed-interval-tiny",
        {SIM + "federated": {"enabled": True, "round_interval_s": 1e-6}},
        "round_interval_s",
        LEAST,
    ),
    C(
        "sim-fed-model-bytes-huge",
        {SIM + "federated": {"model_bytes": 10**15}},
        "model_bytes",
        MOST,
    ),
    C(
        "sim-fed-clients-huge",
        {SIM + "federated": {"clients_per_round": 10**9}},
        "clients_per_round",
        MOST,
    ),
    C("battery-huge", {"device_profiles.phone.battery_j": BIG}, "battery_j", MOST),
    C("power-huge", {"device_profiles.phone.power_compute_w": BIG}, "power_compute_w", MOST),
    C("memory-huge", {"device_profiles.phone.memory_mb": BIG}, "memory_mb", MOST),
    C("speed-huge", {"device_profiles.phone.compute_speed": BIG}, "compute_speed", MOST),
    C("cloud-memory-huge", {"cloud.memory_mb": BIG}, "cloud.memory_mb", MOST),
    C("link-bw-huge", {"devices.0.link.bandwidth_mbps": BIG}, "bandwidth_mbps", MOST),
    C("link-rtt-huge", {"links.0.rtt_ms": BIG}, "rtt_ms", MOST),
    C("pl-items-huge", {PL + "items": 2 * 10**9}, "placement.items", MOST),
    C("pl-requests-huge", {PL + "requests": 10**9}, "placement.requests", MOST),
    C("pl-item-mb-tiny", {PL + "item_mb": 1e-12}, "item_mb", LEAST),
    C("pl-cloud-ms-huge", {PL + "cloud_ms": BIG}, "cloud_ms", MOST),
    C("rc-capacity-huge", {RC + "capacity": 10**12}, "result_cache.capacity", MOST),
    C("rc-exact-huge", {RC + "exact_capacity": 10**12}, "exact_capacity", MOST),
    C("rc-k-huge", {RC + "k": 10**6}, "result_cache.k", MOST),
    C("rc-requests-huge", {RC + "requests": 10**9}, "result_cache.requests", MOST),
    C("rc-noise-huge", {RC + "noise": BIG}, "noise", MOST),
    C("rc-ttl-huge", {RC + "ttl_s": BIG}, "ttl_s", MOST),
    C("fi-max-devices-huge", {FI + "max_devices": 10**9}, "max_devices", MOST),
    C("fi-probe-every-huge", {FI + "probe_every": 10**12}, "probe_every", MOST),
    C("of-deadline-huge", {OF + "deadline_ms": BIG}, "deadline_ms", MOST),
    C("of-deadline-zero", {OF + "deadline_ms": 0}, "deadline_ms", "greater than"),
    C("of-d2d-bw-huge", {OF + "d2d": {"bandwidth_mbps": BIG}}, "d2d.bandwidth_mbps", MOST),
    C("of-rate-huge", {OF + "request_rate_hz": 1e9}, "request_rate_hz", MOST),
    C("rt-timeout-huge", {S + "runtime.offload_timeout_ms": BIG}, "offload_timeout_ms", MOST),
    C("rt-store-ttl-huge", {S + "runtime.store.ttl_s": BIG}, "store.ttl_s", MOST),
    C("rt-records-huge", {S + "runtime.store.max_records": 10**15}, "max_records", MOST),
    C(
        "rt-request-bytes-huge",
        {S + "runtime.server.max_request_bytes": 10**15},
        "max_request_bytes",
        MOST,
    ),
    C("deploy-max-devices-huge", {DEP + "max_devices": 10**9}, "max_devices", MOST),
    # the retrain loop as a run setting (issue 22)
    C(
        "retrain-window-vs-reference",
        {DEP + "lifecycle.retrain": {"window": 80}},
        "retrain.window",
        "reference / 2",
    ),
    C(
        "retrain-beside-scripted",
        {DEP + "lifecycle": {"enabled": True, "retrain": {"on_drift": True}}},
        "retrain.on_drift",
        "turn one of them off",
    ),
    C(
        "retrain-regression",
        {DEP + "lifecycle.retrain.on_drift": True},
        "retrain.on_drift",
        "not supported",
        base="solar_farm",
    ),
    C(
        "churn-unknown-device",
        {DEP + "churn": [{"at_s": 1, "device": "nobody-0", "action": "leave"}]},
        "churn[0].device",
        "unknown device",
    ),
    C(
        "churn-late-join",
        {
            DEP + "churn": [
                {"at_s": 1, "device": "kiosk-0", "action": "reboot"},
                {"at_s": 2, "device": "kiosk-0", "action": "join"},
            ]
        },
        "churn[1].action",
        "first event",
    ),
    C(
        "churn-after-run",
        {DEP + "churn": [{"at_s": 999, "device": "kiosk-0", "action": "leave"}]},
        "churn[0].at_s",
        "duration_s",
    ),
    C(
        "churn-bad-action",
        {DEP + "churn": [{"at_s": 1, "device": "kiosk-0", "action": "nap"}]},
        "churn[0].action",
        "join",
    ),
    C("retrain-fresh-tiny", {DEP + "lifecycle.retrain.fresh_inputs": 1}, "fresh_inputs", LEAST),
    C("tr-clients-huge", {TR + "clients_per_round": 10**9}, "clients_per_round", MOST),
    C("tr-finetune-huge", {TR + "finetune_layers": 10**9}, "finetune_layers", MOST),
    C("tr-clip-huge", {TR + "clip_norm": BIG}, "clip_norm", MOST),
    C("dp-epsilon-huge", {TR + "dp": {"target_epsilon": BIG}}, "target_epsilon", MOST),
    C("sim-duration-neg", {SIM + "duration_s": -5}, "sim.duration_s", "greater than"),
    C("rc-ttl-neg", {RC + "ttl_s": -1}, "ttl_s", "greater than"),
    C("sim-overhead-neg", {SIM + "request_overhead_ms": -1}, "request_overhead_ms", "greater"),
    C(
        "max-model-kb-tiny",
        {S + "inference.compress.budgets.kiosk.max_model_kb": 1e-9},
        "max_model_kb",
        LEAST,
    ),
    # ---------------------------------------------------------------- --set
    C("set-capacity-bool", {}, "result_cache.capacity", "integer", sets=(RC + "capacity=true",)),
    C(
        "set-battery-str",
        {},
        "battery_j",
        "number",
        sets=("device_profiles.phone.battery_j='4e4'",),
    ),
    C("set-duration-huge", {}, "sim.duration_s", MOST, sets=(SIM + "duration_s=1e30",)),
    C("set-deadline-inf", {}, "deadline_ms", "finite", sets=(OF + "deadline_ms=.inf",)),
    C("set-probe-str", {}, "probe_every", "integer", sets=(FI + "probe_every='3'",)),
    C("set-neighbors-bool", {}, "neighbors", "integer", sets=(OF + "d2d={neighbors: true}",)),
    C("set-cache-mb-huge", {}, "cache_mb", MOST, sets=("edge_servers.0.cache_mb=3e38",)),
    C("set-workers-nan", {}, "server_workers", "integer", sets=(OF + "server_workers=.nan",)),
    # ---------------------------------------------------------------- cross-field
    C("plan-offloading-off", {OF + "enabled": False}, "placement", "plan", "offloading"),
    C(
        "plans-offloading-off",
        {OF + "enabled": False, DEP + "placement": "edge", DEP + "placements": {"phone": "plan"}},
        "placements",
        "offloading",
    ),
    C("dp-central", {TR + "mode": "central", TR + "dp": {}}, "dp", "central"),
    C("dp-solo", {TR + "mode": "solo", TR + "dp": {}}, "dp", "solo"),
    C(
        "secagg-central",
        {TR + "mode": "central", TR + "secure_aggregation": {}},
        "secure",
        "central",
    ),
    C("secagg-solo", {TR + "mode": "solo", TR + "secure_aggregation": {}}, "secure", "solo"),
    C(
        "secagg-neighbors",
        {TR + "secure_aggregation": {"neighbors": 100}},
        "neighbors",
        "devices",
    ),
    C(
        "two-links-same-pair",
        {"links.+": {"between": ["macro-1", "micro-1"], "bandwidth_mbps": 10}},
        "links[3]",
        "already",
    ),
    C("device-named-as-node", {"devices.0.name": "micro"}, "micro-1", "node"),
    C("group-named-as-node", {"devices.0.name": "macro-1"}, "devices[0].name", "node"),
    C("dup-policies", {S + "caching.policies": ["lru", "lru"]}, "policies", "lru", "twice"),
    C("empty-policies", {S + "caching.policies": []}, "policies", "at least one"),
    C("unknown-policy", {S + "caching.policies": ["lru", "nope"]}, "policies", "nope"),
    C("unknown-feature", {FI + "features": ["nope"]}, "features", "nope", "expected one of"),
    C("sensor-feature-on-images", {FI + "features": ["ks"]}, "features", "ks", "image", deep=True),
    C(
        "image-feature-on-sensors",
        {FI + "features": ["edge"]},
        "features",
        "edge",
        "sensor",
        base="wearable_health",
        deep=True,
    ),
    C("trace-loss-one", {"links.2.trace.1.loss": 1.0}, "loss", "less than 1"),
    C(
        "after-and-candidates",
        {OF + "early_exit": {"after_block": 1, "candidate_blocks": [1, 2]}},
        "after_block",
        "candidate_blocks",
    ),
    C("dup-candidates", {OF + "early_exit": {"candidate_blocks": [1, 1]}}, "candidate_blocks"),
    # early exit on a kind without a confidence rule (issue 20): one line at validate
    C(
        "ee-on-anomaly",
        {},
        "offloading.early_exit",
        "no rule for the anomaly task kind",
        base="pipeline_monitoring",
        sets=("settings.offloading.early_exit.epochs=3",),
    ),
    C(
        "ee-on-regression",
        {OF + "early_exit": {}},
        "offloading.early_exit",
        "no rule for the regression task kind",
        base="solar_farm",
    ),
    # keyword spotting (issue 20): raw audio needs an audio model, an audio model audio
    C(
        "audio-with-image-model",
        {"task.model": "image_cnn"},
        "task.model",
        "does not take audio",
        "kws_dscnn",
        base="smart_home",
        deep=True,
    ),
    C(
        "audio-model-on-sensors",
        {"task.model": "kws_dscnn"},
        "task.model",
        "takes raw audio",
        base="wearable_health",
        deep=True,
    ),
    C(
        "same-address",
        {DEP + "addresses": {"cloud": "127.0.0.1:9000", "macro-1": "127.0.0.1:9000"}},
        "addresses",
        "127.0.0.1:9000",
    ),
    C(
        "same-address-localhost",
        {DEP + "addresses": {"cloud": "localhost:9000", "micro-1": "127.0.0.1:9000"}},
        "addresses",
        "9000",
    ),
    C("bad-ipv4", {DEP + "addresses": {"cloud": "999.1.1.1:80"}}, "addresses", "999.1.1.1"),
    C("bad-port", {DEP + "addresses": {"cloud": "127.0.0.1:70000"}}, "addresses", "port"),
    C("only-empty", {DEP + "only": []}, "only", "at least one"),
    C("only-unknown", {DEP + "only": ["nope"]}, "only", "nope"),
    C("only-dup", {DEP + "only": ["cloud", "cloud"]}, "only", "cloud"),
    C("tokens-missing", {DEP + "tokens_file": "nope.yaml"}, "tokens_file", "not found"),
    C(
        "tokens-shared",
        {DEP + "tokens_file": "tokens.yaml"},
        "tokens_file",
        "same token",
        files={
            "tokens.yaml": "\n".join(
                f"{g}-{i}: {TOKEN if (g, i) in (('phone', 0), ('phone', 1)) else f'{g}{i:02d}' * 8}"
                for g, n in (("phone", 20), ("kiosk", 10))
                for i in range(n)
            )
        },
    ),
    C(
        "tokens-no-device",
        {DEP + "tokens_file": "tokens.yaml"},
        "tokens_file",
        "phone-1",
        files={"tokens.yaml": f"phone-0: {TOKEN}\n"},
    ),
    C(
        "tokens-short",
        {DEP + "tokens_file": "tokens.yaml"},
        "tokens_file",
        "16 characters",
        files={"tokens.yaml": "phone-0: short\n"},
    ),
    C(
        "tokens-not-yaml",
        {DEP + "tokens_file": "tokens.yaml"},
        "tokens_file",
        "mapping",
        files={"tokens.yaml": "[1, 2"},
    ),
    C("signing-key-missing", {DEP + "signing_key": "nope.key"}, "signing_key", "not found"),
    C(
        "signing-key-not-pem",
        {DEP + "signing_key": "k.pem"},
        "signing_key",
        "not an unencrypted PEM private key",
        files={"k.pem": "not a key\n"},
    ),
    C("tls-ca-missing", {DEP + "tls_ca": "nope.pem"}, "tls_ca", "not found"),
    C(
        "tls-ca-not-pem",
        {DEP + "tls_ca": "ca.pem"},
        "tls_ca",
        "expected a PEM CA certificate",
        files={"ca.pem": "not a certificate\n", "ca.key": "not a key\n"},
    ),
    C("placements-unknown", {DEP + "placements": {"nope": "edge"}}, "placements", "nope"),
    C("deadlines-unknown", {OF + "deadlines_ms": {"nope": 50}}, "deadlines_ms", "nope"),
    C("server-load-unknown", {OF + "server_load": {"nope": 0.5}}, "server_load", "nope"),
    C("budgets-unknown", {S + "inference.compress.budgets.nope": {}}, "budgets", "nope"),
    C(
        "redis-unreachable",
        {RC + "backend": "redis", RC + "redis_url": "redis://127.0.0.1:9/0"},
        "redis_url",
        "127.0.0.1:9",
        deep=True,
    ),
    C("redis-bad-url", {RC + "redis_url": "http://x"}, "redis_url", "redis://"),
    C("min-votes-above-k", {RC + "k": 2, RC + "min_votes": 3}, "min_votes", "k"),
    C(
        "latency-order",
        {PL + "local_ms": 50, PL + "neighbour_ms": 20},
        "local_ms",
        "neighbour_ms",
    ),
    C("sim-cache-policy-unknown", {SIM + "cache_policy": "nope"}, "cache_policy", "nope"),
    C("sim-placement-unknown", {SIM + "placement": "nope"}, "sim.placement", "nope"),
    C("of-splitter-unknown", {OF + "splitter": "brute_force"}, "splitter", "mincut"),
    C("of-placement-unknown", {OF + "placement": "nope"}, "offloading.placement", "auto"),
    C("profile-file-folder", {OF + "profile_file": "."}, "profile_file", "not a file"),
    C("profile-file-missing", {OF + "profile_file": "nope.json"}, "profile_file", "not found"),
    C(
        "profile-file-strings",
        {OF + "profile_file": "p.json"},
        "profile_file",
        "node_ms",
        deep=True,
        files={"p.json": '{"model_sha256": "x", "node_names": ["a", "b"], "node_ms": ["1", 2]}'},
    ),
    C(
        "profile-file-short",
        {OF + "profile_file": "p.json"},
        "profile_file",
        "one value per node",
        deep=True,
        files={"p.json": '{"model_sha256": "x", "node_names": ["a", "b"], "node_ms": [1.0]}'},
    ),
    # ---------------------------------------------------------------- sweep grids
    C(
        "grid-ignored-axis",
        {},
        "settings.sim.duration_s",
        "duration_s",
        grid="axes: {settings.sim.duration_s: [10, 20]}\n",
    ),
    C(
        "grid-1e9-points",
        {},
        "grid",
        "points",
        MOST,
        grid="axes:\n"
        + "".join(
            f"  {a}: {list(range(1, 11))}\n"
            for a in (
                "devices",
                "cache_entries",
                "catalog",
                "input_bytes",
                "result_bytes",
                "max_batch",
                "queue_limit",
                "series_bins",
                "forward_bytes",
            )
        ),
    ),
    C(
        "grid-yaml-bomb",
        {},
        "grid",
        MOST,
        grid="axes:\n  policy: [&a [x, x, x, x, x, x, x, x, x]"
        + "".join(
            f", &{b} [{', '.join([f'*{a}'] * 9)}]"
            for a, b in zip("abcdefg", "bcdefgh", strict=True)
        )
        + "]\n",
    ),
    C("grid-sim-value-bad", {}, "duration_s", MOST, grid="axes: {duration_s: [1e30]}\n"),
    C("grid-devices-huge", {}, "devices", MOST, grid="axes: {devices: [1000000000]}\n"),
]


# --------------------------------------------------------------------------- running a case


def _put(raw: Any, path: str, value: Any) -> None:
    """Set dotted ``path`` in ``raw`` (list indices as numbers; ``+`` appends; ``DEL``
    removes); missing mappings on the way are created."""
    node = raw
    parts = path.split(".")
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        else:
            if node.get(part) is None:
                node[part] = {}
            node = node[part]
    last = parts[-1]
    if isinstance(node, list):
        if last == APPEND:
            node.append(value)
        else:
            node[int(last)] = value
    elif value is DEL:
        node.pop(last, None)
    else:
        node[last] = value


class _Dumper(yaml.SafeDumper):
    """Quotes a string such as ``"4e4"`` (``load_yaml`` reads it unquoted as a number)."""


_Dumper.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def base_raw(name: str) -> dict[str, Any]:
    from edgeintel.examples import example_path
    from edgeintel.schema import load_yaml

    loaded: dict[str, Any] = load_yaml(example_path(name).read_text(encoding="utf-8"))
    return loaded


def write_case(case: Case, folder: Path) -> Path:
    """The case's scenario file (and its extra files) in ``folder``."""
    raw = copy.deepcopy(base_raw(case.base))
    for path, value in case.changes.items():
        _put(raw, path, value)
    for name, text in case.files.items():
        (folder / name).write_text(text, encoding="utf-8")
    path = folder / "scenario.yaml"
    path.write_text(yaml.dump(raw, Dumper=_Dumper, sort_keys=False), encoding="utf-8")
    return path


def run_case(case: Case, folder: Path) -> None:
    """What the command does with the case; raises what it raises."""
    from edgeintel.examples import load_scenario_with
    from edgeintel.scenario import load_scenario

    path = write_case(case, folder)
    if case.sets:
        load_scenario_with(path, list(case.sets))
        return
    sc = load_scenario(path)
    if case.grid is not None:
        from edgeintel.sim.sweep import load_grid, sweep_points

        grid_file = folder / "grid.yaml"
        grid_file.write_text(case.grid, encoding="utf-8")
        sweep_points(sc, load_grid(grid_file))
        return
    if case.deep:
        from edgeintel.pipeline.preflight import preflight

        preflight(sc, scenario_file=str(path))


def outcome(case: Case, folder: Path) -> tuple[str, str]:
    """(class, message): ``exit2``, ``unhelpful``, ``accepted``, ``memory`` or ``traceback``."""
    from edgeintel.errors import EdgeIntelError

    try:
        run_case(case, folder)
    except EdgeIntelError as exc:
        msg = str(exc)
        text = msg.lower()
        helpful = "\n" not in msg and len(msg) < 600
        helpful = helpful and all(
            any(alt in text for alt in w.lower().split("|")) for w in case.words
        )
        return ("exit2" if helpful else "unhelpful"), msg
    except MemoryError:
        return "memory", "MemoryError"
    except Exception as exc:  # the class being counted
        return "traceback", f"{type(exc).__name__}: {str(exc)[:300]}"
    return "accepted", ""


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_setting_is_one_line_naming_the_field(case: Case, tmp_path: Path) -> None:
    kind, msg = outcome(case, tmp_path)
    assert kind == "exit2", f"{kind}: {msg!r} (expected the words {case.words})"


def test_case_ids_are_unique() -> None:
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids))


def _guarded(case: Case, folder: Path, seconds: float = 30.0) -> tuple[str, str]:
    """``outcome`` in a forked child limited to 4 GiB and ``seconds``: a case that
    blows up memory is ``memory``, one that does not end is ``hang``."""
    import multiprocessing as mp
    import resource

    def child(conn: Any) -> None:
        resource.setrlimit(resource.RLIMIT_AS, (4 * 2**30, 4 * 2**30))
        try:
            conn.send(outcome(case, folder))
        except MemoryError:
            conn.send(("memory", "MemoryError"))

    parent, kid = mp.get_context("fork").Pipe(duplex=False)
    proc = mp.get_context("fork").Process(target=child, args=(kid,))
    proc.start()
    if parent.poll(seconds):
        result: tuple[str, str] = parent.recv()
        proc.join()
        return result
    proc.kill()
    proc.join()
    return "hang", f"no answer within {seconds:g} s"


def _main() -> None:
    """Print each case's class and the counts per class (for the closing note)."""
    import tempfile

    counts: Counter[str] = Counter()
    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            kind, msg = _guarded(case, Path(tmp)) if case.grid else outcome(case, Path(tmp))
        counts[kind] += 1
        print(f"{kind:10s} {case.id:28s} {msg[:160]}")
    print(f"{len(CASES)} cases: " + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))


def _iter_cases() -> Iterator[Case]:  # for other test modules
    yield from CASES


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    _main()


# --------------------------------------------------------------------------- property

SHIPPED = ("default", "wearable_health", "smart_camera", "home_energy", "mnist_federated")
NEVER_VALID = "never valid"  # a mutation no field accepts


def _full(name: str) -> dict[str, Any]:
    """A shipped scenario with every default written out (so every field can mutate)."""
    from edgeintel.examples import example_path
    from edgeintel.scenario import dump_scenario, parse_scenario

    raw = base_raw(name)
    raw["settings"] = {**raw.get("settings", {})}
    raw["settings"].setdefault("sim", {})
    raw["settings"].setdefault("offloading", {}).setdefault("d2d", {})
    raw["settings"]["offloading"].setdefault("early_exit", {})
    raw["settings"].setdefault("training", {}).setdefault("dp", {})
    return dump_scenario(parse_scenario(raw, base_dir=example_path(name).parent))


def _leaves(node: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    """(path, value) of every number and boolean in the settings, profiles and links."""
    if isinstance(node, dict):
        for k, v in node.items():
            yield from _leaves(v, (*path, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from _leaves(v, (*path, i))
    elif isinstance(node, bool | int | float) and path[0] in (
        "settings", "device_profiles", "edge_servers", "links", "devices", "cloud"
    ):  # fmt: skip
        yield path, node


def _mutants(value: Any) -> list[tuple[Any, str]]:
    """Replacements for ``value``: (new value, NEVER_VALID or 'maybe')."""
    if isinstance(value, bool):
        return [(1, NEVER_VALID), ("yes", NEVER_VALID), (0.0, NEVER_VALID), (None, "maybe")]
    out: list[tuple[Any, str]] = [
        (math.nan, NEVER_VALID),
        (math.inf, NEVER_VALID),
        (-math.inf, NEVER_VALID),
        (True, NEVER_VALID),
        (str(value), NEVER_VALID),
        (1e30, NEVER_VALID),
        (-1e30, NEVER_VALID),
        (10**20, NEVER_VALID),
        (value * 1e6 if value else 1e6, "maybe"),
        (-abs(value) - 1, "maybe"),
        (0, "maybe"),
        (1e-12, "maybe"),
    ]
    if isinstance(value, int):
        out.append((value + 0.5, NEVER_VALID))
    return out


_FULL: dict[str, dict[str, Any]] = {}


def _check_mutation(name: str, pick: int, which: int) -> None:
    from edgeintel.errors import EdgeIntelError
    from edgeintel.examples import example_path
    from edgeintel.scenario import parse_scenario

    if name not in _FULL:
        _FULL[name] = _full(name)
    raw = copy.deepcopy(_FULL[name])
    leaves = list(_leaves(raw))
    path, value = leaves[pick % len(leaves)]
    mutants = _mutants(value)
    new, verdict = mutants[which % len(mutants)]
    node: Any = raw
    for k in path[:-1]:
        node = node[k]
    node[path[-1]] = new
    where = ".".join(map(str, path))
    try:
        parse_scenario(raw, base_dir=example_path(name).parent)
    except EdgeIntelError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 600, str(exc)
        return
    except Exception as exc:  # a traceback in the CLI
        raise AssertionError(f"{where} = {new!r}: {type(exc).__name__}: {exc}") from None
    assert verdict != NEVER_VALID, f"{name}: {where} = {new!r} was accepted"


def test_random_mutations_never_traceback_nor_pass_out_of_bounds() -> None:
    """Random mutations of the shipped scenarios' settings (types, magnitudes, signs,
    NaN/inf, booleans, strings): validation refuses in one line or accepts a value some
    field allows -- never a traceback, never NaN, inf, 1e30, a quoted number or a bool."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.sampled_from(SHIPPED), st.integers(0, 10**6), st.integers(0, 100))
    def prop(name: str, pick: int, which: int) -> None:
        _check_mutation(name, pick, which)

    prop()


@pytest.mark.slow
def test_every_mutation_of_every_field() -> None:
    """Exhaustive over every numeric and boolean field and every mutant (a few seconds per
    scenario)."""
    for name in SHIPPED:
        leaves = list(_leaves(_full(name)))
        for pick, (_, value) in enumerate(leaves):
            for which in range(len(_mutants(value))):
                _check_mutation(name, pick, which)


def test_tokens_file_resolves_against_the_scenario_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A valid input: ``deploy.tokens_file`` beside the scenario is found from any working
    folder (it resolved against the working folder before), and checked at validate."""
    from edgeintel.scenario import load_scenario

    folder = tmp_path / "deploy"
    folder.mkdir()
    names = [f"{g}-{i}" for g, n in (("phone", 20), ("kiosk", 10)) for i in range(n)]
    (folder / "tokens.yaml").write_text(
        "\n".join(f"{d}: {d.replace('-', '_') * 4}-token-{i:04d}" for i, d in enumerate(names))
    )
    path = write_case(Case("ok", {DEP + "tokens_file": "tokens.yaml"}, ()), folder)
    monkeypatch.chdir(tmp_path)  # not the scenario's folder
    sc = load_scenario(path)
    assert sc.settings.runtime.deploy.tokens_file == folder / "tokens.yaml"


CLI_CASES = [c for c in CASES if c.sets or c.id in ("battery-str", "two-links-same-pair")]


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.id for c in CLI_CASES])
def test_edgeintel_validate_exits_2_in_one_line(case: Case, tmp_path: Path) -> None:
    """The same cases through the command: ``edgeintel validate [--set ...]`` exits 2 with
    the words and no traceback."""
    from typer.testing import CliRunner

    from edgeintel.cli import app

    path = write_case(case, tmp_path)
    args = ["validate", "--schema-only", str(path)]
    for assignment in case.sets:
        args += ["--set", assignment]
    res = CliRunner().invoke(app, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert res.exit_code == 2, res.output
    text = " ".join(res.output.split()).lower()  # the console may wrap the line
    assert "traceback" not in text and text.startswith("error:")
    for w in case.words:
        assert any(alt in text for alt in w.lower().split("|")), (w, text)
