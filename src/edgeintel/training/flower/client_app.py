"""edgeintel's Flower ClientApp: ``edgeintel.training.flower.client_app:app``.

Each SuperNode is started with ``--node-config "partition-id=I num-partitions=N"``;
it trains the zoo model on its shard of the dataset and replies with its compressed
update (error-feedback residual kept in the node's ``context.state``).
"""

from __future__ import annotations

from typing import cast

import numpy as np
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp
from torch import nn

from edgeintel.errors import ConfigError
from edgeintel.models.train import TrainConfig, evaluate_accuracy, train_model
from edgeintel.training.compressors import compress_with_feedback, make_compressor
from edgeintel.training.flower.settings import FlowerSettings
from edgeintel.training.flower.strategy import UPDATE_KEY, compressor_config
from edgeintel.training.flower.task import TaskData, client_shard, load_task, make_model
from edgeintel.training.weights import flatten, get_weights, set_weights

__all__ = ["app"]

app = ClientApp()
_RESIDUAL = "edgeintel-residual"


def _partition(context: Context) -> tuple[int, int]:
    try:
        pid = int(context.node_config["partition-id"])
        n = int(context.node_config["num-partitions"])
    except (KeyError, ValueError):
        raise ConfigError(
            "start the SuperNode with --node-config 'partition-id=I num-partitions=N'"
        ) from None
    if not 0 <= pid < n:
        raise ConfigError(f"partition-id must be in [0, {n}), got {pid}")
    return pid, n


def _local_model(
    msg: Message, context: Context
) -> tuple[FlowerSettings, int, TaskData, np.ndarray, nn.Module]:
    """Run settings, partition id, task data, this node's shard and the model at the
    weights the server sent."""
    settings = FlowerSettings.from_run_config(context.run_config)
    pid, n = _partition(context)
    task = load_task(settings)
    idx = client_shard(settings, pid, n)
    model = make_model(settings, task)
    set_weights(model, msg.content.array_records["arrays"].to_numpy_ndarrays())
    return settings, pid, task, idx, model


@app.train()
def train(msg: Message, context: Context) -> Message:
    settings, pid, task, idx, model = _local_model(msg, context)
    start = flatten(get_weights(model))
    server_round = int(cast(int, msg.content.config_records["config"]["server-round"]))
    history = train_model(
        model,
        task.x_train[idx],
        task.y_train[idx],
        TrainConfig(epochs=settings.local_epochs, batch_size=settings.batch_size, lr=settings.lr),
        seed=settings.seed * 1_000_003 + pid * 1009 + server_round,
    )
    update = flatten(get_weights(model)) - start
    cfg = compressor_config(settings)
    residual = None
    if cfg.uses_feedback and _RESIDUAL in context.state:
        residual = context.state.array_records[_RESIDUAL].to_numpy_ndarrays()[0]
    blob, _, new_residual = compress_with_feedback(make_compressor(cfg), update, residual)
    if cfg.uses_feedback:
        context.state[_RESIDUAL] = ArrayRecord([new_residual])
    content = RecordDict(
        {
            UPDATE_KEY: ArrayRecord([np.frombuffer(blob, dtype=np.uint8).copy()]),
            "metrics": MetricRecord(
                {
                    "num-examples": len(idx),
                    "train-loss": history[-1].loss,
                    "partition-id": pid,
                }
            ),
        }
    )
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context) -> Message:
    _, _, task, idx, model = _local_model(msg, context)
    acc = evaluate_accuracy(model, task.x_train[idx], task.y_train[idx])
    metrics = MetricRecord({"num-examples": len(idx), "local-accuracy": acc})
    return Message(content=RecordDict({"metrics": metrics}), reply_to=msg)
