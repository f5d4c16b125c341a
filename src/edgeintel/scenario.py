"""Scenario files: the validated description of a deployment.

A scenario is composed of parts that each live with their owner:

* the topology (cloud, edge servers, device groups and profiles, links with
  time-varying traces) from ``edgeintel.topology``;
* the data and the task (``DataSpec``, ``TaskSpec``, defined here);
* ``settings``: one slot per component, each a settings model defined in the
  component's package (``training/settings.py``, ``inference/settings.py``,
  ``offloading/settings.py``, ``caching/settings.py``, ``runtime/settings.py``,
  ``sim/settings.py``), all on ``schema.Strict``. A component plugs in by adding its
  model as one field of ``Settings``; if the model has a ``check_scenario(topology)``
  method, it is called with the checked ``Topology`` for cross-references (e.g. budgets
  naming device profiles). Checks across slots (a deployment placement that needs the
  offloading stage) are ``Scenario._across_slots``.

``load_scenario(path)`` reads YAML, validates everything (types, unknown fields,
names against the registries, dangling links, missing files, reachability of the
cloud) and raises a ``ConfigError`` whose message is one line naming the field
path (formatted by ``edgeintel.errors.format_validation_error``).

Units: compute speed is relative to the machine running edgeintel (1.0 = this
machine, 0.1 = ten times slower); memory in MB; power in watts; energy in
joules; bandwidth in Mbit/s; round-trip time in ms; loss as a fraction.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, ValidationError, ValidationInfo, field_validator, model_validator

from edgeintel.caching.settings import CachingSettings
from edgeintel.data.datasets import DATASETS, Dataset
from edgeintel.data.partition import PARTITIONERS
from edgeintel.data.split import RunSplits, run_splits
from edgeintel.errors import ConfigError, FieldError, format_validation_error
from edgeintel.inference.settings import (
    CompressBudget,
    CompressSettings,
    InferenceSettings,
    check_profile_runtime,
)
from edgeintel.models.families import MODELS, resolve_model_ref
from edgeintel.offloading.settings import OffloadingSettings
from edgeintel.runtime.settings import DeployPlacement, RuntimeSettings

# Fraction, NonNegative, Positive: number types for the settings slots defined below
from edgeintel.schema import (  # noqa: F401
    Fraction,
    NodeName,
    NonNegative,
    Positive,
    Strict,
    load_yaml,
    registry_name,
    resolve_file,
    resolve_path,
)
from edgeintel.sim.settings import SimSettings
from edgeintel.tasks import TASKS, TaskKind, make_task, option_names
from edgeintel.topology import (
    BaseStationKind,
    CloudSpec,
    Device,
    DeviceGroup,
    DeviceProfile,
    EdgeServer,
    Link,
    LinkSpec,
    Topology,
    TracePoint,
)
from edgeintel.training.settings import (
    DPSettings,
    SecureAggregationSettings,
    TrainingMode,
    TrainingSettings,
)

__all__ = [
    "BaseStationKind",
    "CachingSettings",
    "CloudSpec",
    "CompressBudget",
    "CompressSettings",
    "DPSettings",
    "DataSpec",
    "Device",
    "DeviceGroup",
    "DeviceProfile",
    "EdgeServer",
    "InferenceSettings",
    "Link",
    "LinkSpec",
    "OffloadingSettings",
    "PartitionSpec",
    "RuntimeSettings",
    "Scenario",
    "SecureAggregationSettings",
    "Settings",
    "SimSettings",
    "StreamSpec",
    "TaskSpec",
    "Topology",
    "TracePoint",
    "TrainingMode",
    "TrainingSettings",
    "dump_scenario",
    "load_scenario",
    "parse_scenario",
]

_Strict = Strict  # the settings slots below derive from it


# --------------------------------------------------------------------------- data & task


class PartitionSpec(_Strict):
    """How a dataset is split across devices.

    ``dirichlet``: label skew, each device's class mix ~ Dir(alpha).
    ``quantity``: IID labels, device sizes ~ Dir(alpha).
    ``natural``: by subject / recording id where the dataset has one.
    ``kind`` is any name in ``edgeintel.data.PARTITIONERS``.
    """

    kind: Annotated[str, registry_name(PARTITIONERS)] = "iid"
    alpha: Positive = 0.5
    min_samples: Annotated[int, Field(ge=0)] = 1


class StreamSpec(_Strict):
    """How a device's inputs arrive at inference time: each sample of its shard is seen for
    ``frames_per_sample`` consecutive inputs (a camera watching the same digit or display
    for several frames), every copy with Gaussian sensor noise of standard deviation
    ``noise`` (data units). The default, 1 and 0, sends every sample once as loaded.
    Training and evaluation use the samples, never the stream; the report states the
    stream beside the redundancy filter's figures."""

    frames_per_sample: Annotated[int, Field(ge=1, le=1000)] = 1
    noise: Annotated[float, Field(ge=0, le=10)] = 0.0


class DataSpec(_Strict):
    """Either a bundled ``dataset`` (a name in ``DATASETS``) or a user's ``path`` (NPZ, CSV,
    Parquet, image folder).

    Held-out sets (see docs/data.md): ``test_fraction`` of all samples is the test set;
    of the rest, ``server_fraction`` is a server-held set and ``validation_fraction``
    the validation set (selection); both stay off the devices. ``split`` says how
    each is cut (``segment``: contiguous blocks of ``segment_blocks`` per recording,
    ``segment_gap`` samples purged at each boundary). ``standardize`` (on by default)
    scales tabular and time-series features with training statistics
    (``edgeintel.data.device_data``).
    """

    dataset: Annotated[str, registry_name(DATASETS)] | None = None
    path: Path | None = None
    label_column: str = "label"
    group_column: str | None = None
    shape: list[Annotated[int, Field(ge=1)]] | None = Field(
        default=None, description="reshape each row of a table to this sample shape"
    )
    image_size: Annotated[int, Field(ge=4, le=512)] = 32
    max_samples: Annotated[int, Field(ge=10)] | None = None
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = 0.25
    split: Literal["auto", "stratified", "group", "segment"] = Field(
        default="auto",
        description="how held-out sets are cut: auto = segment for sequences (video), "
        "group with group ids, else stratified",
    )
    segment_blocks: Annotated[int, Field(ge=2, le=10_000)] = 8
    segment_gap: Annotated[int, Field(ge=0, le=10_000)] = 3
    validation_fraction: Annotated[float, Field(gt=0, lt=0.5)] = 0.15
    server_fraction: Annotated[float, Field(ge=0, lt=0.5)] = Field(
        default=0.0,
        description="share of the non-test data held by the server (never on a device): "
        "calibration and fine-tuning of edge-trained models",
    )
    standardize: bool = Field(
        default=True,
        description="standardise tabular and time-series features with statistics of the "
        "fitting party's training data (per column of a table, per sensor channel); images "
        "are left as loaded",
    )
    partition: PartitionSpec = PartitionSpec()
    stream: StreamSpec = StreamSpec()

    _check_path = field_validator("path")(resolve_path)

    @model_validator(mode="after")
    def _one_source(self) -> DataSpec:
        if self.dataset is not None and self.path is not None:
            raise ValueError("give only one of 'dataset' (a bundled dataset) or 'path', not both")
        if self.dataset is None and self.path is None:
            raise ValueError("give 'dataset' (a bundled dataset) or 'path' (your own data file)")
        return self

    def splits(self, ds: Dataset, seed: int) -> RunSplits:
        """The disjoint test / server-held / validation / train index sets this spec asks
        for on the loaded ``ds`` (see ``edgeintel.data.split.run_splits``)."""
        return run_splits(
            ds.strata,
            ds.groups,
            test_fraction=self.test_fraction,
            validation_fraction=self.validation_fraction,
            server_fraction=self.server_fraction,
            kind=self.split,
            sequential=bool(ds.extra.get("sequential")),
            blocks=self.segment_blocks,
            gap=self.segment_gap,
            seed=seed,
        )


class TaskSpec(_Strict):
    """The task's ``kind`` (a name in ``edgeintel.tasks.TASKS``: classification, regression,
    anomaly; see docs/tasks.md) with its options, and the model: a zoo family (a name in
    ``MODELS``) or a user factory ``module:function``.

    Options belong to one kind each (``tolerance``: regression agreement, target unit;
    ``false_alarm_rate``: the share of validation normal data an anomaly threshold may
    flag); naming one for another kind is an error.

    A factory's module is a ``.py`` file beside the scenario (``mymodels:build`` or
    ``models/mymodels.py:build``), pinned to its absolute path when the scenario is
    loaded and imported by that path, or else an installed package's module.
    """

    kind: Annotated[str, registry_name(TASKS)] = "classification"
    model: str
    width: Annotated[int, Field(ge=1, le=1024)] = 16
    tolerance: NonNegative | None = Field(
        default=None,
        description="regression: two predictions agree when they differ by at most this "
        "(target unit); default a tenth of the validation targets' standard deviation",
    )
    false_alarm_rate: Annotated[float, Field(gt=0, lt=0.5)] | None = Field(
        default=None,
        description="anomaly: the threshold flags at most this share of validation normal "
        "data (default 0.01)",
    )

    @model_validator(mode="after")
    def _kind_options(self) -> TaskSpec:
        own = option_names(self.kind)
        for name in sorted({"tolerance", "false_alarm_rate"} & self.model_fields_set - own):
            raise FieldError(
                (name,), f"an option of another task kind, not of {self.kind!r}; remove it"
            )
        return self

    def task_kind(self) -> TaskKind:
        """The configured kind (``edgeintel.tasks.make_task``)."""
        return make_task(
            self.kind, tolerance=self.tolerance, false_alarm_rate=self.false_alarm_rate
        )

    @field_validator("model")
    @classmethod
    def _model_name(cls, value: str, info: ValidationInfo) -> str:
        if ":" not in value:
            MODELS.check(value)  # a zoo family: ConfigError listing the registered ones
            return value
        if not re.fullmatch(r"([\w.]+|[^:]+\.py):\w+", value):
            raise ValueError(
                "a model factory must look like 'module:function' or 'file.py:function', "
                f"got {value!r}"
            )
        return resolve_model_ref(value, (info.context or {}).get("base_dir"))


# --------------------------------------------------------------------------- settings


class Settings(_Strict):
    """One slot per component, and ``threads``: the torch/BLAS/ONNX Runtime threads every
    stage of a run uses for training, fine-tuning and calibration (1 by default, so
    several runs or processes share a machine without oversubscribing it)."""

    threads: Annotated[int, Field(ge=1, le=256)] = 1
    training: TrainingSettings = TrainingSettings()
    inference: InferenceSettings = InferenceSettings()
    offloading: OffloadingSettings = OffloadingSettings()
    caching: CachingSettings = CachingSettings()
    runtime: RuntimeSettings = RuntimeSettings()
    sim: SimSettings | None = None  # the fleet simulator (edgeintel simulate); None: defaults


# --------------------------------------------------------------------------- scenario


class Scenario(_Strict):
    """A whole deployment; build with ``load_scenario`` or ``parse_scenario``."""

    name: NodeName
    description: str = ""
    seed: Annotated[int, Field(ge=0, lt=2**32)] = 0
    task: TaskSpec
    data: DataSpec
    cloud: CloudSpec = CloudSpec()
    edge_servers: list[EdgeServer] = Field(default_factory=list)
    device_profiles: dict[NodeName, DeviceProfile]  # a name becomes <out>/<profile>.onnx
    devices: Annotated[list[DeviceGroup], Field(min_length=1)]
    links: list[Link] = Field(default_factory=list)
    settings: Settings = Settings()

    @model_validator(mode="after")
    def _topology(self) -> Scenario:
        topology = self.topology
        topology.check()
        for name, profile in self.device_profiles.items():  # a name of the RUNTIMES registry
            why = check_profile_runtime(profile.runtime)
            if why is not None:
                raise FieldError(("device_profiles", name, "runtime"), why)
        for slot in type(self.settings).model_fields:
            check = getattr(getattr(self.settings, slot), "check_scenario", None)
            if check is None:
                continue
            try:
                check(topology)
            except FieldError as err:
                raise FieldError(("settings", slot, *err.loc), err.msg) from None
        self._across_slots()
        return self

    def _across_slots(self) -> None:
        """Settings of one component that need another: a deployment placement ``plan``
        runs the offloading planner's options, so offloading must be enabled."""
        s = self.settings
        self._kind_features()
        dep = s.runtime.deploy
        if dep.enabled and not s.offloading.enabled:
            if dep.placement is DeployPlacement.PLAN:
                raise FieldError(
                    ("settings", "runtime", "deploy", "placement"),
                    "'plan' uses the offloading planner, but settings.offloading.enabled is "
                    "false; enable offloading or choose device, edge or cloud",
                )
            for group, where in dep.placements.items():
                if where is DeployPlacement.PLAN:
                    raise FieldError(
                        ("settings", "runtime", "deploy", "placements", group),
                        "'plan' uses the offloading planner, but settings.offloading.enabled "
                        "is false; enable offloading or choose device, edge or cloud",
                    )

    def _kind_features(self) -> None:
        """Settings that only make sense for some task kinds: early-exit heads need a
        confidence rule (``TaskKind.early_exit``); accuracy budgets need labels to match;
        a metric-drop budget must fit the range of the kind's metric."""
        kind = TASKS.get(self.task.kind)
        s = self.settings
        comp = s.inference.compress
        if s.offloading.early_exit is not None and not kind.early_exit:
            raise FieldError(
                ("settings", "offloading", "early_exit"),
                f"early exit has no rule for the {kind.name} task kind (only a classifier's "
                "confidence); remove it",
            )
        if s.runtime.deploy.lifecycle.retrain.on_drift and kind.name != "classification":
            raise FieldError(
                ("settings", "runtime", "deploy", "lifecycle", "retrain", "on_drift"),
                f"the retrain loop fine-tunes a classifier on feedback labels; the "
                f"{kind.name} task kind is not supported yet, turn it off",
            )
        bounds = kind.metric_range
        tol = s.training.central_tolerance
        if bounds is not None and tol > bounds[1] - bounds[0]:
            raise FieldError(
                ("settings", "training", "central_tolerance"),
                f"the {kind.name} task kind's {kind.metric} lies in [{bounds[0]:g}, "
                f"{bounds[1]:g}]; expected a tolerance of at most {bounds[1] - bounds[0]:g}, "
                f"got {tol:g}",
            )
        budgets = {"budget": comp.budget, **comp.budgets}
        for where, budget in budgets.items():
            loc = ("budget",) if where == "budget" else ("budgets", where)
            drop = budget.max_metric_drop
            if drop is not None and bounds is not None and drop > bounds[1] - bounds[0]:
                raise FieldError(
                    ("settings", "inference", "compress", *loc, "max_metric_drop"),
                    f"the {kind.name} task kind's {kind.metric} lies in [{bounds[0]:g}, "
                    f"{bounds[1]:g}], so a drop of {drop:g} never binds; expected at most "
                    f"{bounds[1] - bounds[0]:g} (e.g. 0.02)",
                )
        if kind.metric == "accuracy":
            return
        if comp.objective == "accuracy":
            raise FieldError(
                ("settings", "inference", "compress", "objective"),
                f"the {kind.name} task kind has no accuracy (its metric is {kind.metric}); "
                "use 'metric'",
            )
        for where, budget in budgets.items():
            if budget.min_accuracy is not None:
                loc = ("budget",) if where == "budget" else ("budgets", where)
                raise FieldError(
                    ("settings", "inference", "compress", *loc, "min_accuracy"),
                    f"the {kind.name} task kind has no accuracy (its metric is {kind.metric}); "
                    "remove min_accuracy",
                )

    # ----------------------------------------------------------------- topology

    @property
    def topology(self) -> Topology:
        """The node/link graph (paths to the cloud, device expansion)."""
        return Topology(
            cloud=self.cloud,
            edge_servers=self.edge_servers,
            device_profiles=self.device_profiles,
            devices=self.devices,
            links=self.links,
        )

    def expand_devices(self) -> list[Device]:
        """All devices, named ``<group>-<i>``, in declaration order."""
        return self.topology.expand_devices()

    @property
    def num_devices(self) -> int:
        return self.topology.num_devices

    def path_to_cloud(self, node: str) -> list[str]:
        """Nodes from ``node`` (an edge server or the cloud) up to the cloud, both included."""
        return self.topology.path_to_cloud(node)

    def link_between(self, a: str, b: str) -> Link:
        return self.topology.link_between(a, b)

    def edge_server(self, name: str) -> EdgeServer:
        return self.topology.edge_server(name)


# --------------------------------------------------------------------------- loading


def parse_scenario(
    raw: dict[str, Any], base_dir: Path | None = None, source: str = "scenario"
) -> Scenario:
    """Validate a scenario mapping; relative paths resolve against ``base_dir``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping of scenario fields at the top level")
    try:
        return Scenario.model_validate(raw, context={"base_dir": base_dir})
    except ValidationError as exc:
        raise format_validation_error(exc, source, root=Scenario) from None


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate a scenario YAML file; raise ConfigError with a one-line message."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"scenario file not found: {p}")
    try:
        raw = load_yaml(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{p}: not valid YAML{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not a UTF-8 text file") from None
    return parse_scenario(raw, base_dir=p.parent, source=str(p))


def dump_scenario(scenario: Scenario) -> dict[str, Any]:
    """JSON-ready mapping of a scenario (round-trips through ``parse_scenario``)."""
    return scenario.model_dump(mode="json", exclude_none=True)
