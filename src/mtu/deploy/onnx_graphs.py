"""ONNX files: the optional dependency, the folder index key, and graphs saved with their weights beside them.

Shared by the export (`mtu.deploy.onnx_export`), quantization (`mtu.deploy.quantize`) and the runtimes.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

INDEX_KEY = "mtu_onnx"  # model_index.json's entry for the export's manifest (tasks, channels, opset)
# Above this size a graph keeps its weights in a side file (`model.onnx_data`): protobuf stops at 2 GiB.
EXTERNAL_DATA_BYTES = 1_800_000_000
DATA_FILE = "model.onnx_data"


def require(module: str) -> Any:
    """Import an optional ONNX dependency, or say in one line how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise RuntimeError(
            f"{module} is not installed: pip install 'mtu-diffusion[onnx]' (onnx and onnxruntime)"
        ) from None


def save_graph(source: Path, path: Path) -> Path:
    """Copy the graph file `source` to `path`, its weights in one side file `model.onnx_data` when it is big.

    A graph whose weights already lie outside it (the tracer's and onnxruntime's way past 2 GiB, in one file
    or many) is copied one tensor at a time: loading SD1.5's 3.4 GB of weights to save them again held them
    twice over, beside the torch model, on a 24 GB machine.
    """
    onnx = require("onnx")
    from onnx.external_data_helper import uses_external_data

    graph = onnx.load(str(source), load_external_data=False)
    if any(uses_external_data(tensor) for tensor in _tensors(graph.graph)):
        _stream_external_data(graph, source.parent, path.parent / DATA_FILE)
        onnx.save_model(graph, str(path))
        return path
    weights = sum(len(tensor.raw_data) for tensor in graph.graph.initializer)  # ByteSize() fails past 2 GiB
    external = weights > EXTERNAL_DATA_BYTES
    onnx.save_model(graph, str(path), save_as_external_data=external, all_tensors_to_one_file=True, location=DATA_FILE)
    return path


def _tensors(graph: Any) -> Iterator[Any]:
    """Every TensorProto of `graph`: initializers and node attributes, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attribute in node.attribute:
            if attribute.HasField("t"):
                yield attribute.t
            yield from attribute.tensors
            for subgraph in [*([attribute.g] if attribute.HasField("g") else []), *attribute.graphs]:
                yield from _tensors(subgraph)


def _stream_external_data(graph: Any, source: Path, data_path: Path) -> None:
    """Append each external tensor's bytes (read from under `source`) to `data_path`; re-point the tensor there."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    root = source.resolve()
    with open(data_path, "wb") as data:
        for tensor in filter(uses_external_data, _tensors(graph.graph)):
            info = ExternalDataInfo(tensor)
            where = (root / info.location).resolve()
            if not where.is_relative_to(root):
                raise ValueError(f"{tensor.name}: external data {info.location!r} lies outside {root}")
            with open(where, "rb") as file:
                file.seek(info.offset or 0)
                blob = file.read() if info.length is None else file.read(info.length)
            offset = data.tell()
            data.write(blob)
            del tensor.external_data[:]
            for key, value in (("location", DATA_FILE), ("offset", offset), ("length", len(blob))):
                tensor.external_data.add(key=key, value=str(value))
