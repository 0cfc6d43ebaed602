"""One way to write ONNX files: PyTorch's TorchScript exporter, one self-contained file, written atomically."""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from facekit.fileio import atomic_path

if TYPE_CHECKING:
    import onnx
    import torch


def export_onnx(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike,
    *,
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int = 17,
    metadata: dict[str, str] | None = None,
    digest_key: str | None = None,
) -> Path:
    """Export `module` (in eval mode) traced on `example` to `path`; the input is named "input.1" as in
    insightface's files. All weights go inside the file (external_data=False); `metadata` goes into the model's
    metadata_props, and with `digest_key` also weights_digest() of the written model under that key."""
    import torch  # here, not above: the ONNX serving path checks weights_digest() without torch

    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter warns about itself
        torch.onnx.export(
            module.eval(),
            (example,),
            str(tmp),
            input_names=["input.1"],
            output_names=output_names,
            dynamic_axes=dynamic_axes,
            opset_version=opset,
            dynamo=False,
            external_data=False,
        )
        if metadata or digest_key:
            import onnx

            graph = onnx.load(str(tmp))
            digest = {digest_key: weights_digest(graph)} if digest_key else {}
            onnx.helper.set_model_props(graph, {**(metadata or {}), **digest})
            onnx.save(graph, str(tmp))
    return Path(path)


def weights_digest(model: onnx.ModelProto) -> str:
    """sha256 (hex) of what computes an ONNX model's outputs: its weights (each initializer's name, type, dims and
    data) and the rest of its graph, opsets and functions; not its metadata_props. A metadata claim about the model
    (a fingerprint) is checked against it. About 0.35 s per 100 MB of weights."""
    import onnx

    digest = hashlib.sha256()
    graph = model.graph
    for tensor in graph.initializer:
        data = tensor.raw_data  # a copy: read once
        digest.update(f"{tensor.name}|{tensor.data_type}|{list(tensor.dims)}|{len(data)}\n".encode())
        digest.update(data or tensor.SerializeToString(deterministic=True))
    rest = onnx.GraphProto(
        node=graph.node, input=graph.input, output=graph.output, sparse_initializer=graph.sparse_initializer
    )
    head = onnx.ModelProto(
        ir_version=model.ir_version, opset_import=model.opset_import, functions=model.functions, graph=rest
    )
    digest.update(head.SerializeToString(deterministic=True))
    return digest.hexdigest()
