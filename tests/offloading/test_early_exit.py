"""Early exit: threshold from validation, expected costs by hand, exits executed for real."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from edgeintel.models import build_model, predict_logits, train_model
from edgeintel.models.early_exit import (
    ExitKind,
    ExitRule,
    attach_exit,
    backbone_stages,
    exit_scores,
    export_early_exit,
    fit_exit_head,
)
from edgeintel.models.train import TrainConfig
from edgeintel.offloading.costs import Breakdown, LinkState, Power, device_energy_j
from edgeintel.offloading.costs import expected_exit_breakdown as expected
from edgeintel.offloading.early_exit import (
    EarlyExitRunner,
    ExitProfile,
    choose_threshold,
    exit_breakdown,
)
from edgeintel.onnx_files import make_session


def _logits(conf: list[float], pred: list[int], k: int = 3) -> np.ndarray:
    """Logits whose softmax has top probability ``conf[i]`` on class ``pred[i]``."""
    out = np.zeros((len(conf), k))
    for i, (p, c) in enumerate(zip(conf, pred, strict=True)):
        row = np.full(k, np.log((1 - p) / (k - 1)))
        row[c] = np.log(p)
        out[i] = row
    return out


# 5 validation inputs, most confident first; exit right: T T F T F; full right: T T T T F
Y = np.array([0, 1, 2, 0, 1])
EXIT = _logits([0.95, 0.9, 0.8, 0.7, 0.6], [0, 1, 0, 0, 2])
FULL = _logits([0.99] * 5, [0, 1, 2, 0, 2])


def test_threshold_by_hand_most_exits_that_keep_the_target() -> None:
    # cascade accuracy when the k most confident exit: k=0..5 -> .8 .8 .8 .6 .6 .6
    cal = choose_threshold(EXIT, FULL, Y, target_accuracy=0.8)
    assert cal.met and cal.exit_rate == pytest.approx(0.4) and cal.accuracy == pytest.approx(0.8)
    assert cal.rule.threshold == pytest.approx(0.9)
    assert list(cal.rule.exits(EXIT)) == [True, True, False, False, False]
    assert cal.full_accuracy == pytest.approx(0.8) and cal.exit_accuracy == pytest.approx(0.6)
    everyone = choose_threshold(EXIT, FULL, Y, target_accuracy=0.6)
    assert everyone.exit_rate == 1.0 and everyone.rule.threshold == pytest.approx(0.6)
    never = choose_threshold(EXIT, FULL, Y, target_accuracy=0.9)
    assert not never.met and never.exit_rate == 0.0 and not never.rule.exits(EXIT).any()


def test_tied_confidences_exit_together() -> None:
    exit_l = _logits([0.9, 0.9, 0.5], [0, 1, 2])  # the second is wrong
    full = _logits([0.99] * 3, [0, 0, 2])
    y = np.array([0, 0, 2])
    # k=1 would keep accuracy 1.0 but cannot be separated from its twin: no exit
    assert choose_threshold(exit_l, full, y, 1.0).exit_rate == 0.0
    assert choose_threshold(exit_l, full, y, 2 / 3).exit_rate == 1.0


def test_entropy_rule_orders_like_max_prob_for_two_classes() -> None:
    ex = _logits([0.95, 0.9, 0.8, 0.7, 0.6], [0, 1, 0, 0, 0], k=2)
    full = _logits([0.99] * 5, [0, 1, 1, 0, 0], k=2)
    y = np.array([0, 1, 1, 0, 1])
    a = choose_threshold(ex, full, y, 0.8, ExitKind.MAX_PROB)
    b = choose_threshold(ex, full, y, 0.8, ExitKind.ENTROPY)
    assert a.exit_rate == b.exit_rate == pytest.approx(0.4)
    p = 0.9  # entropy of (0.9, 0.1) in nats
    assert b.rule.threshold == pytest.approx(-(p * np.log(p) + (1 - p) * np.log(1 - p)))
    assert list(b.rule.exits(ex)) == list(a.rule.exits(ex))
    assert exit_scores(ex, "entropy")[0] > exit_scores(ex, "entropy")[1]


def test_expected_exit_cost_by_hand() -> None:
    rest = Breakdown(2.0, 1.0, 8.0, 20.0, 0.0, 3.0, 1.0)
    b = expected(4.0, 0.75, rest)
    # 4 + .25 x (2 + 1 + 8 + 20 + 0 + 3 + 1) = 12.75 ms
    assert b.latency_ms == pytest.approx(12.75)
    assert (b.device_ms, b.uplink_ms, b.rtt_ms) == pytest.approx((4.5, 2.0, 5.0))
    # energy: 4 W x (4.5 + .25) + 2 W x 2 + 1 W x (5 + .75 + .25) = 29 mJ
    assert device_energy_j(b, Power(4.0, 2.0, 1.0)) == pytest.approx(0.029)
    assert expected(4.0, 1.0, rest).latency_ms == pytest.approx(4.0)
    assert expected(4.0, 0.0, rest).latency_ms == pytest.approx(4.0 + rest.latency_ms)
    with pytest.raises(Exception, match="exit probability"):
        expected(4.0, 1.5, rest)


def test_exit_profile_costs_by_hand() -> None:
    prof = ExitProfile(
        head_ms=2.0,
        tail_ms=6.0,
        feature_bytes=250_000,
        output_bytes=12,
        p_exit=0.6,
        serialize_ms_per_mb=1.0,
    )
    # device at half speed: head 4 ms; offloaded rest: serialize .25 MB x 1 / .5 = .5 ms,
    # uplink 250,000 x 8 / 10 Mbit/s = 200 ms, RTT 20, server 6 / 2 = 3 ms, down 0.0096 ms
    b = exit_breakdown(prof, 0.5, 2.0, LinkState(10.0, 20.0))
    assert b.latency_ms == pytest.approx(4.0 + 0.4 * (0.5 + 200.0 + 20.0 + 3.0 + 0.0096))
    assert b.server_ms == pytest.approx(1.2)
    assert exit_breakdown(prof, 0.5).latency_ms == pytest.approx(4.0 + 0.4 * 12.0)


def test_placement_charges_queueing_only_to_requests_that_do_not_exit() -> None:
    from edgeintel.offloading.placement import (
        FleetProblem,
        Option,
        Resource,
        evaluate_assignment,
        place,
        queue_wait_ms,
    )

    res = {
        "s": Resource("s", "edge", workers=1, service_ms=10.0),
        "d": Resource("d", "device", 1, 0.0, 50.0),
    }
    # 50 Hz x 10 ms = utilisation 0.5 -> M/M/1 wait 10 ms; a quarter of requests reach s
    opt = Option("exit:s", "exit", "s", Breakdown(1.0, server_ms=2.5), 0.0, 3.5, 10.0)
    opt_f = Option("exit:s", "exit", "s", Breakdown(1.0, server_ms=2.5), 0.0, 3.5, 10.0, (), 0, 0,
                   None, 0.25)  # fmt: skip
    # local (12 ms) beats the exit only if the exit paid the full 10 ms wait: 3.5 + 10
    local = Option("local", "local", None, Breakdown(12.0), 0.0, 12.0, 0.0, (("d", 12.0),))

    def prob(o: Option) -> FleetProblem:
        return FleetProblem(
            ["d"], [[local, o]], np.array([50.0]), np.array([np.inf]), np.ones(1),
            np.zeros(1), res, 0.9, np.array([0.5, 0.9]),
        )  # fmt: skip

    assert queue_wait_ms(res["s"], 0.5) == pytest.approx(10.0)
    assert evaluate_assignment(prob(opt), [1]).wait_ms[0] == pytest.approx(10.0)
    assert evaluate_assignment(prob(opt_f), [1]).wait_ms[0] == pytest.approx(2.5)
    assert place(prob(opt_f), "milp").objective == pytest.approx(3.5 + 2.5)
    assert place(prob(opt_f), "greedy").objective == pytest.approx(3.5 + 2.5)


@pytest.fixture(scope="module")
def trained_digits() -> tuple[torch.nn.Module, np.ndarray, np.ndarray]:
    from edgeintel.data.datasets import DATASETS

    ds = DATASETS.get("digits")()
    x, y = ds.x.astype(np.float32), ds.y
    model = build_model("image_cnn", tuple(x.shape[1:]), 10, width=8, seed=0)
    train_model(model, x[:1200], y[:1200], TrainConfig(epochs=3, lr=3e-3, threads=1), seed=0)
    return model, x, y


def test_post_hoc_exit_learns_and_leaves_the_backbone_alone(trained_digits: tuple) -> None:
    model, x, y = trained_digits
    before = predict_logits(model, x[1200:])
    net = attach_exit(model, tuple(x.shape[1:]), 10, after=8, seed=0)  # two conv blocks
    fit_exit_head(net, x[:1200], y[:1200], TrainConfig(epochs=30, batch_size=64, lr=1e-2))
    np.testing.assert_array_equal(predict_logits(model, x[1200:]), before)
    net.eval()
    with torch.no_grad():
        ex, full = (t.numpy() for t in net(torch.from_numpy(x[1200:])))
    np.testing.assert_allclose(full, before, atol=1e-5)
    exit_acc = float((ex.argmax(1) == y[1200:]).mean())
    assert exit_acc > 0.8  # 10 classes: chance is ~0.1; the full model: 0.91
    with pytest.raises(Exception, match="after stage 1"):
        attach_exit(model, tuple(x.shape[1:]), 10, after=len(backbone_stages(model)))


@pytest.mark.parametrize(("family", "shape", "after"), [("mobilenet_v3_small", (3, 96, 96), 4)])
def test_exported_exit_runs_for_real_and_equals_the_exit_head(
    tmp_path: Path, family: str, shape: tuple[int, ...], after: int
) -> None:
    model = build_model(family, shape, 3, width=8, seed=0)
    net = attach_exit(model, shape, 3, after=after, seed=1)
    x = np.random.default_rng(0).standard_normal((12, *shape)).astype(np.float32)
    probe = export_early_exit(net, shape, tmp_path / "probe", ExitRule("max_prob", 2.0))
    head = make_session(probe.head_path)
    exit_logits = np.concatenate([head.run(None, {"input": x[i : i + 1]})[0] for i in range(12)])
    conf = np.sort(exit_scores(exit_logits, "max_prob"))
    rule = ExitRule("max_prob", float((conf[5] + conf[6]) / 2))  # half of them exit
    files = export_early_exit(net, shape, tmp_path / "ee", rule)
    fused = make_session(files.fused_path)
    model.eval()
    with torch.no_grad():
        full = model(torch.from_numpy(x)).numpy()
    runner = EarlyExitRunner(files)
    exited = []
    for i in range(12):
        logits, flag = fused.run(None, {"input": x[i : i + 1]})
        res = runner.run(x[i : i + 1])
        assert bool(flag) == res.exited == bool(rule.exits(exit_logits[i : i + 1])[0])
        want = exit_logits[i] if res.exited else full[i]
        np.testing.assert_allclose(logits[0], want, atol=1e-5)
        np.testing.assert_allclose(res.logits[0], want, atol=1e-5)
        if res.exited:
            assert res.payload_bytes == 0 and res.tail_ms == 0.0
        else:
            assert res.payload_bytes >= files.feature_bytes
        exited.append(res.exited)
    assert sum(exited) == 6
    # the exit is not the full model: an exiting input's answer is the exit head's
    assert not np.allclose(exit_logits[np.array(exited)], full[np.array(exited)], atol=1e-3)


def test_exit_rate_lower_bound_is_clopper_pearson() -> None:
    cal = choose_threshold(EXIT, FULL, Y, target_accuracy=0.6)  # 5 of 5 exit
    # k = n: the one-sided 95 % bound is 0.05 ** (1 / n)
    assert cal.exit_rate_lower == pytest.approx(0.05 ** (1 / 5))
    assert choose_threshold(EXIT, FULL, Y, 0.9).exit_rate_lower == 0.0


def test_planner_offers_exit_options_costed_with_the_exit_probability() -> None:
    from edgeintel.offloading.placement import place
    from edgeintel.offloading.planner import OffloadPlanner
    from edgeintel.offloading.profiler import ModelProfile
    from edgeintel.scenario import parse_scenario

    from ..conftest import tiny_scenario_dict
    from .conftest import random_dag

    sc = parse_scenario(tiny_scenario_dict())
    g = random_dag(6, 0)
    prof = ModelProfile("x", list(g.names), [50.0] * 6, 300.0, 300.0, 3, 0.1, 0.3)
    ee = ExitProfile(head_ms=40.0, tail_ms=260.0, feature_bytes=20_000, output_bytes=40,
                     p_exit=0.9, serialize_ms_per_mb=0.1)  # fmt: skip
    dev = sc.expand_devices()[0]
    plain = OffloadPlanner(g, prof, sc.settings.offloading).options(sc, dev)
    opts = OffloadPlanner(g, prof, sc.settings.offloading, early_exit=ee).options(sc, dev)
    exits = {o.label: o for o in opts if o.tier == "exit"}
    assert set(exits) == {"exit:local", "exit:micro-1", "exit:cloud"}
    assert len(opts) == len(plain) + 3
    # phone at 0.25x: head 160 ms; 10 % continue locally (1040 ms) -> 264 ms
    assert exits["exit:local"].base.latency_ms == pytest.approx(160 + 0.1 * 1040)
    micro = next(t for t in OffloadPlanner(g, prof, sc.settings.offloading).targets(sc, dev)
                 if t.name == "micro-1")  # fmt: skip
    want = exit_breakdown(ee, 0.25, micro.speed, micro.link)
    assert exits["exit:micro-1"].base == want
    assert exits["exit:micro-1"].remote_fraction == pytest.approx(0.1)
    assert exits["exit:micro-1"].server_ms == pytest.approx(0.1 * 260.0 / micro.speed)
    # with 90 % of requests stopping after 40 ms of compute the fleet takes the exit
    planner = OffloadPlanner(g, prof, sc.settings.offloading, early_exit=ee)
    problem = planner.problem(sc)
    plan = place(problem, "milp")
    assert all(lab.startswith("exit:") for lab in plan.labels)
    never = OffloadPlanner(g, prof, sc.settings.offloading, early_exit=replace(ee, p_exit=0.0))
    # nothing exits: running on is the plain model (head + tail = its 300 ms here)
    local = next(o for o in never.options(sc, dev) if o.label == "exit:local")
    assert local.base.latency_ms == pytest.approx(plain[0].base.latency_ms)
    assert place(never.problem(sc), "milp").objective > plan.objective + 50
