"""edgeintel's Flower ServerApp: ``edgeintel.training.flower.server_app:app``."""

from __future__ import annotations

from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp

from edgeintel.models.train import evaluate_accuracy
from edgeintel.training.flower.settings import FlowerSettings
from edgeintel.training.flower.strategy import EdgeIntelStrategy
from edgeintel.training.flower.task import load_task, make_model
from edgeintel.training.weights import get_weights, set_weights, weight_shapes

__all__ = ["app"]

app = ServerApp()


@app.main()
def main(grid: Grid, context: Context) -> None:
    """Train for ``num-server-rounds`` rounds; evaluate the global model centrally."""
    settings = FlowerSettings.from_run_config(context.run_config)
    task = load_task(settings)
    model = make_model(settings, task)
    initial = get_weights(model)
    strategy = EdgeIntelStrategy(settings, weight_shapes(initial))
    accuracy: dict[int, float] = {}

    def evaluate(server_round: int, arrays: ArrayRecord) -> MetricRecord:
        set_weights(model, arrays.to_numpy_ndarrays())
        acc = evaluate_accuracy(model, task.x_test, task.y_test)
        accuracy[server_round] = acc
        return MetricRecord({"accuracy": acc})

    result = strategy.start(
        grid=grid,
        initial_arrays=ArrayRecord(initial),
        num_rounds=settings.num_server_rounds,
        evaluate_fn=evaluate,
    )
    strategy.write_summary(
        {
            "accuracy": {str(k): v for k, v in sorted(accuracy.items())},
            "completed_rounds": len(strategy.records),
            "final_weights_sha": _sha(result.arrays),
        }
    )


def _sha(arrays: ArrayRecord) -> str:
    import hashlib

    h = hashlib.sha256()
    for a in arrays.to_numpy_ndarrays():
        h.update(a.tobytes())
    return h.hexdigest()
