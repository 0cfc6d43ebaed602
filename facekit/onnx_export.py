"""One way to write ONNX files: PyTorch's TorchScript exporter, one self-contained file, written atomically."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from facekit.fileio import atomic_path


def export_onnx(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike,
    *,
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int = 17,
    metadata: dict[str, str] | None = None,
) -> Path:
    """Export `module` (in eval mode) traced on `example` to `path`; the input is named "input.1" as in
    insightface's files. All weights go inside the file (external_data=False); `metadata` goes into the model's
    metadata_props."""
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
        if metadata:
            import onnx

            graph = onnx.load(str(tmp))
            onnx.helper.set_model_props(graph, metadata)
            onnx.save(graph, str(tmp))
    return Path(path)
