"""Early exit in offloading: the threshold from validation data, its expected cost, execution.

``choose_threshold`` picks the exit rule on a *validation* split: among the
thresholds that separate the validation inputs by confidence, the one that
lets the most inputs leave at the exit while the cascade (exit prediction for
those that leave, the full model's for the rest) keeps at least
``target_accuracy``. ``ExitProfile`` holds what the planner needs (device
compute up to the exit, the rest, the feature's bytes, the exit probability),
``exit_breakdown`` costs it with ``costs.expected_exit_breakdown`` (only
non-exiting requests pay the offload), and ``EarlyExitRunner`` executes it:
the head on the device, the rule on the exit's logits, and only for inputs
that do not exit the serialized feature and the tail.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeintel.errors import ConfigError
from edgeintel.models.early_exit import (
    EXIT_LOGITS_NAME,
    FEATURE_NAME,
    EarlyExitFiles,
    EarlyExitNet,
    ExitKind,
    ExitRule,
    exit_scores,
)
from edgeintel.models.export import INPUT_NAME, OUTPUT_NAME
from edgeintel.offloading.costs import Breakdown, LinkState, breakdown, expected_exit_breakdown
from edgeintel.offloading.transfer import deserialize_tensors, serialize_tensors
from edgeintel.onnx_files import make_session

__all__ = [
    "EarlyExitRunner",
    "ExitCalibration",
    "ExitPointChoice",
    "ExitProfile",
    "ExitResult",
    "cascade_predictions",
    "check_exit_blocks",
    "choose_exit_point",
    "choose_threshold",
    "default_candidates",
    "exit_breakdown",
    "profile_exit",
    "select_exit_point",
]


@dataclass(frozen=True)
class ExitCalibration:
    """The chosen rule and what it did on the validation split (fractions in [0, 1])."""

    rule: ExitRule
    exit_rate: float
    accuracy: float
    full_accuracy: float
    exit_accuracy: float
    target_accuracy: float
    met: bool
    samples: int

    @property
    def exit_rate_lower(self) -> float:
        """One-sided 95 % Clopper-Pearson lower bound of the exit rate: what a planner should
        assume, since a small validation split overstates how often inputs exit."""
        from scipy.stats import beta

        k = round(self.exit_rate * self.samples)
        return 0.0 if k == 0 else float(beta.ppf(0.05, k, self.samples - k + 1))

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["rule"] = {"kind": str(self.rule.kind), "threshold": float(self.rule.threshold)}
        d["exit_rate_lower"] = self.exit_rate_lower
        return d


def cascade_predictions(
    exit_logits: np.ndarray, final_logits: np.ndarray, rule: ExitRule
) -> tuple[np.ndarray, np.ndarray]:
    """(predicted class, exited) per input: the exit's class where ``rule`` fires, else
    the full model's."""
    exited = rule.exits(exit_logits)
    pred = np.where(exited, np.argmax(exit_logits, axis=1), np.argmax(final_logits, axis=1))
    return pred, exited


def choose_threshold(
    exit_logits: np.ndarray,
    final_logits: np.ndarray,
    y: np.ndarray,
    target_accuracy: float,
    kind: ExitKind | str = ExitKind.MAX_PROB,
) -> ExitCalibration:
    """The rule with the highest exit rate whose cascade accuracy on (``exit_logits``,
    ``final_logits``, ``y``) — a validation split — is >= ``target_accuracy``.

    Candidates are the thresholds that let exactly the k most confident inputs
    exit (ties exit together), k = 0 .. N; the accuracy of each comes from
    prefix sums over the inputs sorted by confidence (O(N log N)). When no k
    reaches the target (not even k = 0, the full model alone), the rule never
    exits and ``met`` is False.
    """
    y = np.asarray(y)
    n = len(y)
    if n == 0 or len(exit_logits) != n or len(final_logits) != n:
        raise ConfigError("choose_threshold needs one exit and one final logit row per label")
    if not 0.0 <= target_accuracy <= 1.0:
        raise ConfigError(f"target_accuracy must be in [0, 1], got {target_accuracy}")
    kind = ExitKind(kind)
    s = exit_scores(exit_logits, kind)
    order = np.argsort(-s, kind="stable")
    s_sorted = s[order]
    exit_ok = (np.argmax(exit_logits, axis=1) == y)[order]
    final_ok = (np.argmax(final_logits, axis=1) == y)[order]
    # acc[k]: the k most confident inputs take the exit's answer, the rest the full model's
    right = np.concatenate([[0], np.cumsum(exit_ok)]) + np.concatenate(
        [[final_ok.sum()], final_ok.sum() - np.cumsum(final_ok)]
    )
    acc = right / n
    separable = np.ones(n + 1, dtype=bool)
    separable[1:n] = s_sorted[:-1] > s_sorted[1:]
    ok = separable & (acc >= target_accuracy - 1e-12)
    met = bool(ok.any())
    k = int(np.flatnonzero(ok).max()) if met else 0
    if k == 0:
        rule = ExitRule(kind, np.inf if kind is ExitKind.MAX_PROB else -np.inf)
    else:
        score = float(s_sorted[k - 1])
        rule = ExitRule(kind, score if kind is ExitKind.MAX_PROB else -score)
    return ExitCalibration(
        rule=rule,
        exit_rate=k / n,
        accuracy=float(acc[k]),
        full_accuracy=float(final_ok.mean()),
        exit_accuracy=float(exit_ok.mean()),
        target_accuracy=float(target_accuracy),
        met=met,
        samples=n,
    )


def select_exit_point(calibrations: dict[int, ExitCalibration]) -> int | None:
    """The exit point rule, on *validation* calibrations only (one per candidate block).

    Among the candidates whose threshold met the accuracy target and lets at least
    one input exit, the one with the highest validation exit rate; ties go to the
    later block (its exit head is the more accurate, so the rate it shows on a
    small validation split is the less likely to collapse on new data). ``None``
    when no candidate lets anything exit.
    """
    ok = [(c.exit_rate, k) for k, c in calibrations.items() if c.met and c.exit_rate > 0]
    return max(ok)[1] if ok else None


def default_candidates(num_stages: int) -> list[int]:
    """Exit points at about 1/4, 1/2 and 3/4 of a chain of ``num_stages`` stages."""
    cand = {min(max(round(num_stages * q), 1), num_stages - 1) for q in (0.25, 0.5, 0.75)}
    return sorted(cand)


def check_exit_blocks(model: Any, after_block: int | None, candidates: list[int]) -> list[int]:
    """The candidate exit points for ``model`` (``after_block`` alone when set); a
    ``ConfigError`` naming the setting for an unsupported family or a block it lacks."""
    from edgeintel.errors import ModelError
    from edgeintel.models.early_exit import backbone_stages

    field = "settings.offloading.early_exit"
    try:
        n = len(backbone_stages(model))
    except ModelError as exc:
        raise ConfigError(f"{field}: {exc}") from None
    blocks = [after_block] if after_block is not None else (candidates or default_candidates(n))
    for b in blocks:
        if not 1 <= b < n:
            name = "after_block" if after_block is not None else "candidate_blocks"
            raise ConfigError(
                f"{field}.{name}: this model has exit points 1..{n - 1} "
                f"(after that many of its {n} stages), got {b}"
            )
    return sorted(set(blocks))


@dataclass
class ExitPointChoice:
    """The chosen exit (``net`` with its head fitted), its validation calibration, and
    every candidate's validation figures (``candidates``: block -> calibration JSON)."""

    after: int
    net: EarlyExitNet
    calibration: ExitCalibration
    candidates: dict[int, dict[str, Any]]
    chosen_by: str


def choose_exit_point(
    model: Any,
    input_shape: tuple[int, ...],
    num_classes: int,
    blocks: list[int],
    fit: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    target_accuracy: float | None = None,
    max_accuracy_drop: float = 0.01,
    kind: ExitKind | str = ExitKind.MAX_PROB,
    seed: int = 0,
    epochs: int = 30,
) -> ExitPointChoice:
    """Fit an exit head after each of ``blocks`` on ``fit``, calibrate each on ``val``
    (target: ``target_accuracy``, or the full model's validation accuracy minus
    ``max_accuracy_drop``) and keep the one ``select_exit_point`` picks.

    Only the fitting data and the validation split are arguments: the choice
    cannot see a test split. With one block it is used as given; when no
    candidate lets anything exit, the latest one is kept (its rule never exits).
    """
    import torch

    from edgeintel.models.early_exit import attach_exit, fit_exit_head
    from edgeintel.models.train import TrainConfig

    if len(val[1]) == 0:
        raise ConfigError("early exit needs a validation split (data.validation_fraction > 0)")
    nets: dict[int, EarlyExitNet] = {}
    cals: dict[int, ExitCalibration] = {}
    x_val = torch.from_numpy(np.ascontiguousarray(val[0], dtype=np.float32))
    for b in blocks:
        net = attach_exit(model, input_shape, num_classes, after=b, seed=seed)
        cfg = TrainConfig(epochs=epochs, batch_size=64, lr=1e-2, threads=1)
        fit_exit_head(net, fit[0], fit[1], cfg, seed=seed)
        net.eval()
        with torch.no_grad():
            v_exit, v_full = (t.numpy() for t in net(x_val))
        target = target_accuracy
        if target is None:
            target = max(float(np.mean(v_full.argmax(1) == val[1])) - max_accuracy_drop, 0.0)
        nets[b], cals[b] = net, choose_threshold(v_exit, v_full, val[1], target, kind)
    picked = select_exit_point(cals) if len(blocks) > 1 else blocks[0]
    chosen_by = "given (one candidate)" if len(blocks) == 1 else "rule on the validation split"
    if picked is None:
        picked, chosen_by = max(blocks), "no candidate exits on validation: the latest kept"
    return ExitPointChoice(
        picked, nets[picked], cals[picked], {b: c.to_json() for b, c in cals.items()}, chosen_by
    )


@dataclass(frozen=True)
class ExitProfile:
    """An early-exit model's costs at ``reference_speed`` (1.0 = this machine).

    ``head_ms``: prefix + exit head (every request); ``tail_ms``: the rest;
    ``feature_bytes``: the float32 tensor sent when a request does not exit;
    ``output_bytes``: the logits coming back; ``p_exit``: exit probability
    (from validation); ``serialize_ms_per_mb``: device time to pack 1 MB.
    """

    head_ms: float
    tail_ms: float
    feature_bytes: int
    output_bytes: int
    p_exit: float
    serialize_ms_per_mb: float = 0.0
    reference_speed: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.p_exit <= 1.0:
            raise ConfigError(f"p_exit must be in [0, 1], got {self.p_exit}")
        if min(self.head_ms, self.tail_ms) < 0:
            raise ConfigError("head_ms and tail_ms must be >= 0")


def exit_breakdown(
    profile: ExitProfile,
    device_speed: float,
    server_speed: float | None = None,
    link: LinkState | None = None,
) -> Breakdown:
    """Expected latency components (ms) with the exit: the rest runs on the device
    (``link`` None) or, for the non-exiting requests only, on a server over ``link``."""
    ref = profile.reference_speed
    head = profile.head_ms * ref / device_speed
    if link is None:
        rest = Breakdown(device_ms=profile.tail_ms * ref / device_speed)
    else:
        if server_speed is None:
            raise ConfigError("an offloaded exit needs the server's speed")
        rest = breakdown(
            0.0,
            profile.feature_bytes,
            profile.output_bytes,
            profile.tail_ms * ref / server_speed,
            link,
            serialize_ms=profile.feature_bytes
            / 1e6
            * profile.serialize_ms_per_mb
            * ref
            / device_speed,
        )
    return expected_exit_breakdown(head, profile.p_exit, rest)


@dataclass(frozen=True)
class ExitResult:
    """One request: outputs, whether it exited, payload bytes sent, ms of each part (here)."""

    logits: np.ndarray
    exited: bool
    payload_bytes: int
    head_ms: float
    serialize_ms: float
    tail_ms: float


class EarlyExitRunner:
    """Runs an exported early-exit model as deployed: head (device) -> rule -> tail (server)."""

    def __init__(self, files: EarlyExitFiles, rule: ExitRule | None = None, int8: bool = False):
        self.files = files
        self.rule = rule or files.rule
        self.int8 = int8
        self._head = make_session(files.head_path)
        self._tail = make_session(files.tail_path)

    def run(self, x: np.ndarray) -> ExitResult:
        """One request (batch 1): the tail runs only when the exit is not confident."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        t0 = time.perf_counter()
        exit_logits, feature = self._head.run([EXIT_LOGITS_NAME, FEATURE_NAME], {INPUT_NAME: x})
        t1 = time.perf_counter()
        if bool(np.all(self.rule.exits(exit_logits))):
            return ExitResult(exit_logits, True, 0, (t1 - t0) * 1e3, 0.0, 0.0)
        payload = serialize_tensors({FEATURE_NAME: feature}, int8=self.int8)
        t2 = time.perf_counter()
        logits = self._tail.run([OUTPUT_NAME], deserialize_tensors(payload))[0]
        t3 = time.perf_counter()
        return ExitResult(
            logits, False, len(payload), (t1 - t0) * 1e3, (t2 - t1) * 1e3, (t3 - t2) * 1e3
        )


def profile_exit(
    files: EarlyExitFiles,
    p_exit: float,
    num_classes: int,
    input_shape: tuple[int, ...],
    runs: int = 50,
) -> ExitProfile:
    """Measure head and tail (ONNX Runtime, 1 thread, p50 ms here) and serialization."""
    from edgeintel.latency import measure_latency
    from edgeintel.offloading.profiler import measure_serialization

    x = np.zeros((1, *input_shape), dtype=np.float32)
    f = np.zeros((1, *files.feature_shape), dtype=np.float32)
    head = measure_latency(Path(files.head_path), x, runs=runs, warmup=5)
    tail = measure_latency(Path(files.tail_path), f, runs=runs, warmup=5)
    return ExitProfile(
        head_ms=float(head.p50_ms),
        tail_ms=float(tail.p50_ms),
        feature_bytes=files.feature_bytes,
        output_bytes=4 * num_classes,
        p_exit=float(p_exit),
        serialize_ms_per_mb=measure_serialization(False),
    )
