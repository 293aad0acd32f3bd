"""`python -m resnet_exp.export RUN_DIR --format onnx|torchscript [--out FILE] [--trust]`: a run's
best network as one file that runs without this package, with its preprocessing beside it.

The network is the bare eval one (runs/inference.py: neither compiled nor channels_last, on the
CPU, float32), taking N x C x H x W float images prepared as the run's test images are and
giving logits; the batch size is free. Written to --out, by default RUN_DIR/export/model.onnx or
model.pt. What the network expects (class names, mean and std, resize and crop, input size and
channels: `inference.preprocessing`) goes in the file:
- ONNX: one metadata_props entry per key, its value JSON (`onnx.load(f).metadata_props`;
  onnxruntime: `session.get_modelmeta().custom_metadata_map`). Exported by torch.export (the
  `dynamo=True` exporter, torch's default since 2.9), which needs onnxscript; the optional
  extra `pip install 'resnet-exp[export]'` installs it with onnx and onnxruntime.
- TorchScript: `preprocessing.json` among the archive's extra files
  (`torch.jit.load(f, _extra_files={"preprocessing.json": ""})`). Traced: a ResNet's forward
  has no data-dependent branch to lose.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import warnings
from pathlib import Path

import torch

from resnet_exp.core.console import command
from resnet_exp.core.errors import UserError

SUFFIX = {"onnx": ".onnx", "torchscript": ".pt"}
METADATA_FILE = "preprocessing.json"  # TorchScript's extra file
INPUT, OUTPUT = "input", "logits"  # the ONNX graph's names
EXAMPLE_BATCH = 2  # torch.export specialises a dimension of size 0 or 1; 2 stays symbolic


def onnx_bytes(model: torch.nn.Module, example: torch.Tensor, metadata: dict) -> bytes:
    try:
        import onnx  # noqa: F401  (the exporter's proto)
        import onnxscript  # noqa: F401  (the exporter's translator)
    except ImportError as e:
        raise UserError(f"--format onnx needs {e.name}: pip install 'resnet-exp[export]' "
                        "(onnx, onnxscript and onnxruntime)") from None
    batch = torch.export.Dim("batch", min=1)
    program = torch.onnx.export(model, (example,), dynamo=True, input_names=[INPUT],
                                output_names=[OUTPUT], dynamic_shapes=({0: batch},),
                                verbose=False)
    proto = program.model_proto
    for key, value in metadata.items():
        proto.metadata_props.add(key=key, value=json.dumps(value))
    return proto.SerializeToString()


def torchscript_bytes(model: torch.nn.Module, example: torch.Tensor, metadata: dict) -> bytes:
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # torch 2.10+ says TorchScript is deprecated in favour of torch.export; asked for it
        # by name, the file is what the user wants
        warnings.filterwarnings("ignore", message=r"`torch\.jit\.(trace|trace_method|save)` is "
                                "deprecated")
        traced = torch.jit.trace(model, example)
        torch.jit.save(traced, buffer,
                       _extra_files={METADATA_FILE: json.dumps(metadata, indent=2)})
    return buffer.getvalue()


WRITERS = {"onnx": onnx_bytes, "torchscript": torchscript_bytes}


def export(run_dir: Path, format: str, out: Path | None = None, trust: bool = False) -> Path:
    """Write the run's best network as `format` to `out` (default RUN_DIR/export/model.<ext>);
    returns where."""
    from resnet_exp.runs import EXPORT_DIR
    from resnet_exp.runs.atomic import atomic_write
    from resnet_exp.runs.inference import load_plain, preprocessing

    loaded = load_plain(run_dir, trust)
    metadata = preprocessing(loaded)
    model = loaded.model.float().eval()
    size = metadata["image_size"]
    example = torch.zeros(EXAMPLE_BATCH, metadata["in_channels"], size, size)
    data = WRITERS[format](model, example, metadata)
    out = Path(out) if out is not None else Path(run_dir) / EXPORT_DIR / f"model{SUFFIX[format]}"
    atomic_write(out, lambda f: f.write(data), binary=True)
    return out


@command
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m resnet_exp.export",
        description="Write a run's best network as ONNX or TorchScript, with its preprocessing "
                    "in the file.")
    parser.add_argument("run_dir", type=Path, help="the run folder")
    parser.add_argument("--format", required=True, choices=sorted(WRITERS),
                        help="onnx (metadata_props) or torchscript (extra file "
                             f"{METADATA_FILE})")
    parser.add_argument("--out", type=Path,
                        help="the file to write (default RUN_DIR/export/model.onnx or .pt)")
    parser.add_argument("--trust", action="store_true",
                        help="accept _target_ entries outside the allow-list (runs/trust.py)")
    args = parser.parse_args(argv)
    out = export(args.run_dir, args.format, args.out, args.trust)
    print(f"{args.format}: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
