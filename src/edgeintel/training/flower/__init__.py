"""Flower adapter: edgeintel's aggregation rules, compressors and DP as a Flower ServerApp
(strategy) and ClientApp for multi-machine training with SuperLink + SuperNodes.

The ``server_app`` and ``client_app`` modules are loaded by Flower by reference
(``edgeintel.training.flower.server_app:app``); they are not imported here.
"""

from edgeintel.training.flower.settings import FlowerSettings, write_flower_app

__all__ = ["FlowerSettings", "write_flower_app"]
