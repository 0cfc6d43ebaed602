"""One way to write ONNX files: PyTorch's TorchScript exporter, one self-contained file, written atomically."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from facekit.fileio import temp_beside


def export_onnx(
    module: torch.nn.Module,
    example: torch.Tensor,
    path: str | os.PathLike,
    *,
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    opset: int = 17,
) -> Path:
    """Export `module` (in eval mode) traced on `example` to `path`; the input is named "input.1" as in
    insightface's files. All weights go inside the file (external_data=False)."""
    f = temp_beside(path, "wb")
    f.close()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the legacy exporter warns about itself
            torch.onnx.export(
                module.eval(),
                (example,),
                f.name,
                input_names=["input.1"],
                output_names=output_names,
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                dynamo=False,
                external_data=False,
            )
        os.replace(f.name, path)
    finally:
        Path(f.name).unlink(missing_ok=True)
    return Path(path)
