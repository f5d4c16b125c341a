"""Back-ends of the commands that are not pipeline stages: ``compress`` on a scenario,
an ONNX model or a run folder (``compress_target``), and ``simulate`` writing a run folder
of its own (``simulate``). The CLI calls them; they call the components and the report.
"""

__all__: list[str] = []
