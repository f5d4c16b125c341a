"""Client-level differential privacy for federated training (DP-FedAvg).

Each sampled device's model update (a list of arrays, the delta from the global
model) is clipped to L2 norm ``C``; the aggregator averages the clipped updates
with equal weights and adds Gaussian noise of standard deviation
``z * C / n`` to the mean, where ``z`` is the noise multiplier and ``n`` the
number of updates averaged (McMahan et al. 2018, "Learning Differentially
Private Recurrent Language Models").

Clipping is either fixed or adaptive (Andrew et al. 2021, "Differentially
Private Learning with Adaptive Clipping"): the clip norm follows a target
quantile of the update norms through a geometric step driven by the *noisy*
fraction of unclipped updates. The clipped-count noise costs privacy, so the
update noise multiplier is raised to ``(z^-2 - (2 sigma_b)^-2)^-1/2`` and the
pair together is accounted as one Gaussian mechanism with multiplier ``z``.

Privacy is accounted with Google's ``dp-accounting`` RDP accountant for the
sampling the engines actually do: every round draws a fixed number ``m`` of
devices uniformly without replacement from the population of ``N``
(``SampledWithoutReplacementDpEvent(N, m, GaussianDpEvent(z / 2))``, Wang, Balle
and Kasiviswanathan 2019, Thm. 27). That analysis is for the *replace-one*
neighbouring relation, under which the L2 sensitivity of the sum of updates
clipped to ``C`` is ``2 C``; the noise std on the sum is ``z C``, so the Gaussian
multiplier relative to the sensitivity is ``z / 2``. ``epsilon`` is reported at
``target_delta`` after every round; a budget (``target_epsilon``) stops
training, or warns, before a round would exceed it.

Noise comes from OS entropy (a fresh ``numpy`` ``SeedSequence``) on every path,
so no party that knows the run's seed can regenerate and subtract it; only a
scenario that asks for ``reproducible_noise`` (a simulation, labelled so in its
results) draws it from the caller's seeded generator.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import dp_accounting
import numpy as np

from edgeintel.errors import ConfigError, DataError

__all__ = [
    "BudgetAction",
    "ClipMode",
    "DPConfig",
    "DPRoundRecord",
    "DifferentialPrivacy",
    "PrivacyAccountant",
    "adaptive_clip_update",
    "clip_update",
    "dp_mean",
    "epsilon_for",
    "l2_norm",
    "noise_multiplier_for_epsilon",
    "sampling_event",
    "update_noise_multiplier",
]

log = logging.getLogger(__name__)


class ClipMode(StrEnum):
    FIXED = "fixed"
    ADAPTIVE = "adaptive"


class BudgetAction(StrEnum):
    """What to do when the next round would push epsilon above ``target_epsilon``."""

    STOP = "stop"
    WARN = "warn"


@dataclass(frozen=True)
class DPConfig:
    """Client-level DP settings.

    ``noise_multiplier`` (z) is the accounted noise multiplier; ``clip_norm`` (C, L2,
    in units of the model parameters) the fixed or initial clip norm. Adaptive
    clipping uses ``target_quantile`` (gamma), ``clip_lr`` (eta, geometric step) and
    ``clipped_count_stddev`` (sigma_b; default: expected devices per round / 20, as in
    Andrew et al.). ``target_epsilon`` (optional) at ``target_delta`` bounds training.
    """

    noise_multiplier: float = 1.0
    clip_norm: float = 1.0
    clipping: ClipMode = ClipMode.FIXED
    target_quantile: float = 0.5
    clip_lr: float = 0.2
    clipped_count_stddev: float | None = None
    target_epsilon: float | None = None
    target_delta: float = 1e-5
    on_budget: BudgetAction = BudgetAction.STOP
    reproducible_noise: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.noise_multiplier) and self.noise_multiplier > 0):
            raise ConfigError(
                f"dp.noise_multiplier must be > 0 (Gaussian noise std / clip norm), "
                f"got {self.noise_multiplier}"
            )
        if not (math.isfinite(self.clip_norm) and self.clip_norm > 0):
            raise ConfigError(f"dp.clip_norm must be > 0 (L2 norm bound), got {self.clip_norm}")
        object.__setattr__(self, "clipping", _enum(ClipMode, self.clipping, "dp.clipping"))
        object.__setattr__(self, "on_budget", _enum(BudgetAction, self.on_budget, "dp.on_budget"))
        if not 0 < self.target_quantile < 1:
            raise ConfigError(f"dp.target_quantile must be in (0, 1), got {self.target_quantile}")
        if not self.clip_lr > 0:
            raise ConfigError(f"dp.clip_lr must be > 0, got {self.clip_lr}")
        if self.clipped_count_stddev is not None and not self.clipped_count_stddev > 0:
            raise ConfigError(
                f"dp.clipped_count_stddev must be > 0, got {self.clipped_count_stddev}"
            )
        if self.target_epsilon is not None and not self.target_epsilon > 0:
            raise ConfigError(f"dp.target_epsilon must be > 0, got {self.target_epsilon}")
        if not 0 < self.target_delta < 1:
            raise ConfigError(f"dp.target_delta must be in (0, 1), got {self.target_delta}")


def _enum(cls: Any, value: Any, name: str) -> Any:
    try:
        return cls(value)
    except ValueError:
        known = ", ".join(m.value for m in cls)
        raise ConfigError(f"{name} must be one of: {known}; got {value!r}") from None


# --------------------------------------------------------------------------- pure maths


def l2_norm(update: Sequence[np.ndarray]) -> float:
    """L2 norm of an update given as a list of arrays (all entries together)."""
    return float(math.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in update)))


def clip_update(update: Sequence[np.ndarray], clip_norm: float) -> tuple[list[np.ndarray], float]:
    """Scale ``update`` so its L2 norm is at most ``clip_norm``; returns (clipped, norm before)."""
    if not clip_norm > 0:
        raise ConfigError(f"clip_norm must be > 0, got {clip_norm}")
    norm = l2_norm(update)
    if not math.isfinite(norm):
        raise DataError("an update contains NaN or inf; it cannot be clipped")
    scale = min(1.0, clip_norm / norm) if norm > 0 else 1.0
    return [np.asarray(a * scale, dtype=a.dtype) for a in update], norm


def dp_mean(
    updates: Sequence[Sequence[np.ndarray]],
    clip_norm: float,
    noise_multiplier: float,
    rng: np.random.Generator,
) -> tuple[list[np.ndarray], list[float]]:
    """Equal-weight mean of the clipped updates plus N(0, (z C / n)^2) noise per entry.

    Returns (noisy mean as float32 arrays, the updates' norms before clipping).
    """
    if not updates:
        raise DataError("DP aggregation needs at least one update")
    n = len(updates)
    shapes = [a.shape for a in updates[0]]
    total = [np.zeros(s, dtype=np.float64) for s in shapes]
    norms: list[float] = []
    for i, upd in enumerate(updates):
        if [a.shape for a in upd] != shapes:
            raise DataError(f"update {i} has shapes {[a.shape for a in upd]}, expected {shapes}")
        clipped, norm = clip_update(upd, clip_norm)
        norms.append(norm)
        for t, a in zip(total, clipped, strict=True):
            t += a
    std = noise_multiplier * clip_norm / n
    out = [(t / n + rng.normal(0.0, std, size=t.shape)).astype(np.float32) for t in total]
    return out, norms


def update_noise_multiplier(noise_multiplier: float, clipped_count_stddev: float) -> float:
    """Noise multiplier for the update when the clipped count also gets noise (Andrew et al.).

    Both releases together are a Gaussian mechanism with multiplier ``noise_multiplier``
    iff ``z_update = (z^-2 - (2 sigma_b)^-2)^(-1/2)``; needs ``2 sigma_b > z``.
    """
    inner = noise_multiplier**-2 - (2.0 * clipped_count_stddev) ** -2
    if inner <= 0:
        raise ConfigError(
            f"dp.clipped_count_stddev={clipped_count_stddev} is too small for "
            f"noise_multiplier={noise_multiplier}; it must exceed noise_multiplier / 2"
        )
    return float(inner**-0.5)


def adaptive_clip_update(
    clip_norm: float, unclipped_fraction: float, target_quantile: float, clip_lr: float
) -> float:
    """Geometric quantile step: ``C * exp(-eta * (b - gamma))`` (Andrew et al. 2021, Alg. 1)."""
    return float(clip_norm * math.exp(-clip_lr * (unclipped_fraction - target_quantile)))


# --------------------------------------------------------------------------- accountant


def sampling_event(
    sample_size: int, population: int, noise_multiplier: float
) -> dp_accounting.DpEvent:
    """One round: ``sample_size`` of ``population`` devices drawn uniformly without
    replacement, then a Gaussian sum with noise std ``z C`` over updates clipped to ``C``.

    Replace-one sensitivity of that sum is ``2 C``, hence ``GaussianDpEvent(z / 2)``.
    """
    if not 1 <= sample_size <= population:
        raise ConfigError(f"sample size must be in [1, population={population}], got {sample_size}")
    if not noise_multiplier > 0:
        raise ConfigError(f"noise multiplier must be > 0, got {noise_multiplier}")
    return dp_accounting.SampledWithoutReplacementDpEvent(
        int(population), int(sample_size), dp_accounting.GaussianDpEvent(noise_multiplier / 2.0)
    )


def _rdp() -> dp_accounting.rdp.RdpAccountant:
    return dp_accounting.rdp.RdpAccountant(
        neighboring_relation=dp_accounting.NeighboringRelation.REPLACE_ONE
    )


_ORDERS = np.asarray(dp_accounting.rdp.rdp_privacy_accountant.DEFAULT_RDP_ORDERS, np.float64)


@functools.lru_cache(maxsize=256)
def _event_rdp(sample_size: int, population: int, noise_multiplier: float) -> tuple[float, ...]:
    """RDP of one :func:`sampling_event` at every default order, computed once by
    dp-accounting (the sampled-without-replacement bound is costly: ~0.5 s per event)."""
    acc = _rdp()
    acc.compose(sampling_event(sample_size, population, noise_multiplier))
    return tuple(float(v) for v in acc._rdp)  # RDP composes by addition over rounds


def _epsilon(rdp: np.ndarray, delta: float) -> float:
    eps, _ = dp_accounting.rdp.rdp_privacy_accountant.compute_epsilon(_ORDERS, rdp, delta)
    return float(eps)


class PrivacyAccountant:
    """Epsilon of the rounds so far, from ``dp_accounting``'s RDP accountant.

    Each round is :func:`sampling_event` ``(m, N, z)`` (fixed-size sampling without
    replacement, replace-one relation); its RDP curve comes from dp-accounting and
    rounds compose by adding RDP. ``history`` keeps the ``(m, N, z)`` triples so the
    state can be saved and rebuilt exactly.
    """

    def __init__(self, delta: float, history: Sequence[tuple[int, int, float]] = ()) -> None:
        if not 0 < delta < 1:
            raise ConfigError(f"delta must be in (0, 1), got {delta}")
        self.delta = float(delta)
        self.history: list[tuple[int, int, float]] = []
        self._total = np.zeros_like(_ORDERS)
        for m, n, z in history:
            self.step(m, n, z)

    def step(self, sample_size: int, population: int, noise_multiplier: float) -> float:
        """Compose one round (``sample_size`` of ``population`` devices); returns epsilon."""
        key = (int(sample_size), int(population), float(noise_multiplier))
        self._total = self._total + np.asarray(_event_rdp(*key))
        self.history.append(key)
        return self.epsilon()

    def epsilon(self) -> float:
        """Epsilon at ``delta`` of all rounds so far (0 before the first)."""
        if not self.history:
            return 0.0
        return _epsilon(self._total, self.delta)

    def epsilon_after(
        self, sample_size: int, population: int, noise_multiplier: float, steps: int = 1
    ) -> float:
        """Epsilon if ``steps`` more rounds of (m, N, z) were run; the state is unchanged."""
        one = np.asarray(_event_rdp(int(sample_size), int(population), float(noise_multiplier)))
        return _epsilon(self._total + steps * one, self.delta)

    def state(self) -> dict[str, Any]:
        return {
            "delta": self.delta,
            "sampling": "fixed-size without replacement (replace-one)",
            "history": [list(h) for h in self.history],
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> PrivacyAccountant:
        try:
            hist = [(int(m), int(n), float(z)) for m, n, z in state["history"]]
            return cls(float(state["delta"]), hist)
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(
                f"invalid privacy accountant state (expected [sample, population, z] per "
                f"round): {exc}"
            ) from None


def epsilon_for(
    sample_size: int, population: int, noise_multiplier: float, rounds: int, delta: float
) -> float:
    """Epsilon after ``rounds`` identical rounds (planning helper; same accountant)."""
    one = np.asarray(_event_rdp(int(sample_size), int(population), float(noise_multiplier)))
    return _epsilon(rounds * one, delta)


def noise_multiplier_for_epsilon(
    epsilon: float, sample_size: int, population: int, rounds: int, delta: float
) -> float:
    """Smallest noise multiplier whose ``rounds`` rounds stay within ``epsilon`` at ``delta``."""
    if not epsilon > 0:
        raise ConfigError(f"epsilon must be > 0, got {epsilon}")

    def make_event(z: float) -> dp_accounting.DpEvent:
        return dp_accounting.SelfComposedDpEvent(sampling_event(sample_size, population, z), rounds)

    return float(
        dp_accounting.calibrate_dp_mechanism(
            _rdp,
            make_event,
            epsilon,
            delta,
            dp_accounting.LowerEndpointAndGuess(1e-2, 1.0),
            tol=1e-4,
        )
    )


# --------------------------------------------------------------------------- aggregator side


@dataclass(frozen=True)
class DPRoundRecord:
    """What one DP round did: epsilon after it, clip norm used, noise std on the mean."""

    round: int
    epsilon: float
    delta: float
    clip_norm: float
    noise_std: float
    unclipped_fraction: float | None
    num_updates: int
    sampling_rate: float

    def to_json(self) -> dict[str, float | int | None]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass
class DifferentialPrivacy:
    """Aggregator-side DP state: current clip norm, accountant, and the per-round records.

    ``population`` is the number of devices the sample is drawn from. Noise is drawn
    from a generator seeded by OS entropy at construction; the generator the caller
    passes in is used only when ``config.reproducible_noise`` is set.
    """

    config: DPConfig
    population: int
    clip_norm: float = field(init=False)
    accountant: PrivacyAccountant = field(init=False)
    records: list[DPRoundRecord] = field(init=False, default_factory=list)
    _entropy: np.random.Generator = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.population < 1:
            raise ConfigError(f"DP needs a population of >= 1 device, got {self.population}")
        self.clip_norm = self.config.clip_norm
        self.accountant = PrivacyAccountant(self.config.target_delta)
        # SeedSequence() without an entropy argument reads fresh OS entropy
        self._entropy = np.random.Generator(np.random.PCG64(np.random.SeedSequence()))

    def noise_rng(self, rng: np.random.Generator | None) -> np.random.Generator:
        """The generator DP noise is drawn from: OS entropy unless ``reproducible_noise``."""
        if self.config.reproducible_noise:
            if rng is None:
                raise ConfigError("dp.reproducible_noise needs a seeded generator")
            return rng
        return self._entropy

    def _sample_size(self, num_sampled: int) -> int:
        return min(max(int(num_sampled), 1), self.population)

    # -- budget ------------------------------------------------------------
    def sampling_rate(self, num_sampled: int) -> float:
        return min(1.0, num_sampled / self.population)

    def check_budget(self, num_sampled: int, steps: int = 1) -> None:
        """Raise if the budget cannot fit the next round of ``steps`` aggregations.

        Called before training starts (or resumes): a budget that is already spent, or
        that a single round would exceed, is a configuration error.
        """
        target = self.config.target_epsilon
        if target is None:
            return
        eps_now = self.accountant.epsilon()
        if eps_now > target:
            raise ConfigError(
                f"dp.target_epsilon={target} is already exceeded "
                f"(epsilon {eps_now:.3f} at delta {self.config.target_delta:g})"
            )
        q = self.sampling_rate(num_sampled)
        m = self._sample_size(num_sampled)
        if not self.accountant.history:
            eps1 = self.accountant.epsilon_after(
                m, self.population, self.config.noise_multiplier, steps
            )
            if eps1 > target:
                raise ConfigError(
                    f"dp.target_epsilon={target} is already exceeded by a single round "
                    f"(epsilon {eps1:.3f} at delta {self.config.target_delta:g}, "
                    f"noise_multiplier {self.config.noise_multiplier}, sampling rate {q:.4g}); "
                    "raise noise_multiplier or target_epsilon"
                )

    def next_round_allowed(self, num_sampled: int, steps: int = 1) -> bool:
        """False when the next round (``steps`` aggregations) would exceed ``target_epsilon``
        and ``on_budget`` is stop.

        With ``on_budget: warn`` it logs a warning and returns True.
        """
        target = self.config.target_epsilon
        if target is None:
            return True
        eps_next = self.accountant.epsilon_after(
            self._sample_size(num_sampled), self.population, self.config.noise_multiplier, steps
        )
        if eps_next <= target:
            return True
        if self.config.on_budget is BudgetAction.STOP:
            log.info(
                "DP budget: stopping, next round would reach epsilon %.3f > %g", eps_next, target
            )
            return False
        log.warning("DP budget exceeded: epsilon will be %.3f > target %g", eps_next, target)
        return True

    # -- aggregation -------------------------------------------------------
    def aggregate(
        self,
        updates: Sequence[Sequence[np.ndarray]],
        rng: np.random.Generator,
        num_sampled: int | None = None,
        account: bool = True,
    ) -> tuple[list[np.ndarray], DPRoundRecord]:
        """Clip, average, add noise, adapt the clip norm and (if ``account``) account the round.

        ``num_sampled`` is how many devices were sampled (defaults to ``len(updates)``);
        it sets the sampling rate for accounting (dropped devices still count as sampled).
        Pass ``account=False`` for the 2nd, 3rd, ... aggregator of one step whose devices
        are disjoint from the first's (edge servers of one HierFAVG edge round: parallel
        composition), after calling :meth:`account` once for that step.
        """
        cfg = self.config
        n_sampled = len(updates) if num_sampled is None else num_sampled
        q = self.sampling_rate(max(n_sampled, 1))
        clip = self.clip_norm
        if cfg.clipping is ClipMode.ADAPTIVE:
            sigma_b = cfg.clipped_count_stddev or max(n_sampled, 1) / 20.0
            z_update = update_noise_multiplier(cfg.noise_multiplier, sigma_b)
        else:
            z_update = cfg.noise_multiplier
        noise = self.noise_rng(rng)
        mean, norms = dp_mean(updates, clip, z_update, noise)
        unclipped = sum(1 for nrm in norms if nrm <= clip)
        frac = unclipped / len(norms)
        if cfg.clipping is ClipMode.ADAPTIVE:
            noisy = (unclipped + noise.normal(0.0, sigma_b)) / len(norms)
            self.clip_norm = adaptive_clip_update(clip, noisy, cfg.target_quantile, cfg.clip_lr)
        eps = (
            self.accountant.step(
                self._sample_size(n_sampled), self.population, cfg.noise_multiplier
            )
            if account
            else self.accountant.epsilon()
        )
        rec = DPRoundRecord(
            round=len(self.accountant.history),
            epsilon=eps,
            delta=cfg.target_delta,
            clip_norm=clip,
            noise_std=z_update * clip / len(updates),
            unclipped_fraction=frac,
            num_updates=len(updates),
            sampling_rate=q,
        )
        self.records.append(rec)
        return mean, rec

    def account(self, num_sampled: int) -> float:
        """Account one aggregation step with ``num_sampled`` of ``population`` devices."""
        return self.accountant.step(
            self._sample_size(num_sampled), self.population, self.config.noise_multiplier
        )

    def noise_and_mean(
        self,
        total: np.ndarray,
        count: int,
        clip_norm: float,
        rng: np.random.Generator | None = None,
        num_sampled: int | None = None,
    ) -> np.ndarray:
        """Noisy mean from the *sum* of ``count`` already clipped updates (secure aggregation).

        Fixed clipping only: noise std on the mean is ``z * C / count``. The step is
        recorded (account it with :meth:`account`).
        """
        if count < 1:
            raise DataError("DP aggregation needs at least one update")
        std = self.config.noise_multiplier * clip_norm / count
        noise = self.noise_rng(rng)
        out = (total / count + noise.normal(0.0, std, size=total.shape)).astype(np.float32)
        n_sampled = count if num_sampled is None else num_sampled
        self.records.append(
            DPRoundRecord(
                round=len(self.accountant.history),
                epsilon=self.accountant.epsilon(),
                delta=self.config.target_delta,
                clip_norm=clip_norm,
                noise_std=std,
                unclipped_fraction=None,  # devices clipped their own updates
                num_updates=count,
                sampling_rate=self.sampling_rate(max(n_sampled, 1)),
            )
        )
        return out

    # -- checkpointing -----------------------------------------------------
    def state(self) -> dict[str, Any]:
        """JSON-serialisable state (clip norm, accountant history, records)."""
        return {
            "clip_norm": self.clip_norm,
            "accountant": self.accountant.state(),
            "records": [r.to_json() for r in self.records],
        }

    def load_state(self, state: dict[str, Any]) -> None:
        try:
            self.clip_norm = float(state["clip_norm"])
            self.accountant = PrivacyAccountant.from_state(state["accountant"])
            self.records = [DPRoundRecord(**r) for r in state["records"]]
        except (KeyError, TypeError) as exc:
            raise DataError(f"invalid DP state in checkpoint: {exc}") from None
        if self.accountant.delta != self.config.target_delta:
            raise DataError(
                f"checkpoint DP delta {self.accountant.delta:g} does not match "
                f"dp.target_delta {self.config.target_delta:g}"
            )
