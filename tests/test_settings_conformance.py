"""One settings base (issue 18 item 2): every model reachable from ``Scenario`` is a
``schema.Strict``, every path field goes through ``schema``'s resolvers, every registry
choice through ``registry_name``. A new settings model is covered the moment a scenario
can reach it."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any, Union, get_args, get_origin

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from edgeintel import schema
from edgeintel.scenario import Scenario
from edgeintel.schema import Strict

RESOLVERS = {schema.resolve_file, schema.resolve_path, schema.resolve_folder}

#: fields that name a registered thing: (model, field) -> found by ``_registry_fields``
REGISTRY_FIELDS = {
    ("PartitionSpec", "kind"),
    ("DataSpec", "dataset"),
    ("TrainingSettings", "algorithm"),
    ("TrainingSettings", "compressor"),
    ("TrainingSettings", "aggregation"),
    ("TrainingSettings", "attack"),
    ("OffloadingSettings", "splitter"),
    ("OffloadingSettings", "placement"),
    ("FilterSettings", "features"),
    ("ResultCacheSettings", "policy"),
    ("CachingSettings", "policies"),
    ("SimSettings", "placement"),
    ("SimSettings", "cache_policy"),
}


def _inner_types(annotation: Any) -> list[Any]:
    """Every type inside an annotation (through Annotated, unions, lists, dicts)."""
    origin = get_origin(annotation)
    if origin is Annotated:
        return _inner_types(get_args(annotation)[0])
    if origin is None:
        return [annotation]
    out = []
    for arg in get_args(annotation):
        out.extend(_inner_types(arg))
    return out if origin in (Union, list, dict, tuple, set) or out else [annotation]


def reachable_models(root: type[BaseModel] = Scenario) -> list[type[BaseModel]]:
    """Every pydantic model a scenario can contain, ``root`` first."""
    seen: list[type[BaseModel]] = []
    todo: list[type[BaseModel]] = [root]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.append(model)
        for field in model.model_fields.values():
            for t in _inner_types(field.annotation):
                if inspect.isclass(t) and issubclass(t, BaseModel) and t not in seen:
                    todo.append(t)
    return seen


def _validators_of(model: type[BaseModel], name: str) -> list[Any]:
    """The functions of ``model``'s field validators that apply to field ``name``."""
    out = []
    for dec in model.__pydantic_decorators__.field_validators.values():
        if name in dec.info.fields:
            out.append(getattr(dec.func, "__func__", dec.func))
    return out


def _resolves(func: Any) -> bool:
    """``func`` is one of schema's resolvers, or calls one."""
    if func in RESOLVERS:
        return True
    names = set(getattr(getattr(func, "__code__", None), "co_names", ()))
    return bool(names & {r.__name__ for r in RESOLVERS})


def _is_registry_checked(field: FieldInfo) -> bool:
    """A ``registry_name`` validator in the field's metadata (or its items')."""

    def metas(annotation: Any) -> list[Any]:
        found = []
        if get_origin(annotation) is Annotated:
            found.extend(get_args(annotation)[1:])
        for arg in get_args(annotation):
            found.extend(metas(arg))
        return found

    every = [*field.metadata, *metas(field.annotation)]
    return any(hasattr(getattr(m, "func", None), "registry") for m in every)


def test_the_walk_reaches_every_component_slot() -> None:
    names = {m.__name__ for m in reachable_models()}
    for expected in (
        "TrainingSettings",
        "CompressBudget",
        "OffloadingSettings",
        "D2DLink",
        "EarlyExitSettings",
        "CachingSettings",
        "FilterSettings",
        "PlacementSettings",
        "RuntimeSettings",
        "DeploySettings",
        "SimSettings",
        "FederatedSimSettings",
        "DeviceProfile",
        "TracePoint",
    ):
        assert expected in names


def test_every_scenario_model_is_strict() -> None:
    loose = [m.__name__ for m in reachable_models() if not issubclass(m, Strict)]
    assert not loose, f"models on another base than schema.Strict: {loose}"


def test_every_path_field_is_resolved_by_schema() -> None:
    """A ``Path`` field resolves against the scenario's folder with the one resolver."""
    missing = []
    for model in reachable_models():
        for name, field in model.model_fields.items():
            if Path not in _inner_types(field.annotation):
                continue
            if not any(_resolves(f) for f in _validators_of(model, name)):
                missing.append(f"{model.__name__}.{name}")
    assert not missing, f"path fields not resolved by schema.resolve_*: {missing}"


def test_every_registry_choice_uses_registry_name() -> None:
    found = {
        (m.__name__, name)
        for m in reachable_models()
        for name, field in m.model_fields.items()
        if _is_registry_checked(field)
    }
    assert found >= REGISTRY_FIELDS, f"not checked by registry_name: {REGISTRY_FIELDS - found}"


def test_the_walk_catches_a_loose_model() -> None:
    """The check fails when a model a scenario reaches is on a plain BaseModel."""

    class Loose(BaseModel):
        x: int = 1

    class Holder(Strict):
        loose: Loose = Loose()
        path: Path | None = None

    models = reachable_models(Holder)
    assert Loose in models and not issubclass(Loose, Strict)
    assert not any(_resolves(f) for f in _validators_of(Holder, "path"))
