"""Convert a checkpoint for other tools: ONNX, the earlier toolkit's key layout, or a VNN-COMP benchmark folder.

  uv run python convert_model.py onnx artifacts/alexnet_repaired.pth [--output F.onnx] [--opset 17] [--batch dynamic|1]
  uv run python convert_model.py state-dict CKPT --to plain|flat [--output F.pth]
  uv run python convert_model.py vnnlib CKPT EDITSET [--margin M] [--epsilon E] [--output DIR] [--timeout S]

onnx: exports the model (Conv/Relu/MaxPool/Flatten/Gemm; input (N, 3, 64, 64) in [0, 1] after the toolkit's
preprocessing), checks onnxruntime against torch on test images of the checkpoint's dataset (the one its training
sidecar or run_repair.py record names, else cifar10; --dataset overrides) and writes a JSON sidecar (F.onnx.json).
state-dict: rewrites the keys only; tensors stay byte-identical. vnnlib: one VNN-LIB property per edit image
("unsat" = the label wins by more than M on the whole box) plus instances.csv, ready for alpha-beta-CROWN, Marabou,
NNV, PyRAT ... Nothing is overwritten without --force.
"""

from __future__ import annotations

import argparse

from alexnet_repair.cli import add_common_args, add_data_args, script_main, setup_logging
from alexnet_repair.interop.commands import run_onnx, run_state_dict, run_vnnlib
from alexnet_repair.interop.onnx_export import BATCH_CHOICES, DEFAULT_OPSET, DEFAULT_TOLERANCE
from alexnet_repair.interop.statedict import LAYOUTS
from alexnet_repair.interop.vnnlib import ENCODINGS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{onnx,state-dict,vnnlib}")

    export = argparse.ArgumentParser(add_help=False)
    export.add_argument("--opset", type=int, default=DEFAULT_OPSET, help=f"ONNX opset (default {DEFAULT_OPSET})")
    export.add_argument("--tolerance", type=float, default=DEFAULT_TOLERANCE,
                        help=f"max |onnxruntime - torch| logit difference allowed (default {DEFAULT_TOLERANCE:g})")
    export.add_argument("--force", action="store_true", help="overwrite existing outputs")
    add_common_args(export, seed=None)

    onnx = commands.add_parser("onnx", parents=[export], help="export to ONNX, checked with onnxruntime")
    onnx.add_argument("checkpoint", help="any checkpoint the toolkit loads")
    onnx.add_argument("--output", default=None, help="ONNX path (default: the checkpoint's path with .onnx)")
    onnx.add_argument("--batch", choices=BATCH_CHOICES, default="dynamic",
                      help="batch dimension: dynamic (default) or fixed 1")
    onnx.add_argument("--check-images", type=int, default=256,
                      help="test images the export is checked on (default 256; 0 = the whole split)")
    add_data_args(onnx, default=None, default_from="the dataset the checkpoint's sidecar NAME.json or its "
                  "run_repair.py record names")

    state = commands.add_parser("state-dict", help="convert between plain (features.*) and flat (0.*/3.*) keys")
    state.add_argument("checkpoint", help="checkpoint to convert (a {'state_dict': ...} wrapper is unwrapped)")
    state.add_argument("--to", required=True, choices=LAYOUTS, help="plain: torchvision keys; flat: 0.i / 3.i keys")
    state.add_argument("--output", default=None, help="default: <checkpoint>_<layout>.pth beside it")
    state.add_argument("--force", action="store_true", help="overwrite an existing output")
    add_common_args(state, seed=None)

    vnn = commands.add_parser("vnnlib", parents=[export], help="VNN-COMP benchmark folder for an edit set")
    vnn.add_argument("checkpoint", help="the model to verify (e.g. the repaired checkpoint)")
    vnn.add_argument("editset", help="edit set .pt (from editset_generator.py)")
    vnn.add_argument("--margin", type=float, default=0.0,
                     help="label logit must beat every other logit by more than M (default 0)")
    vnn.add_argument("--epsilon", type=float, default=0.0,
                     help="L-infinity radius of the input box, clipped to [0, 1] (default 0: the image itself)")
    vnn.add_argument("--timeout", type=float, default=300.0, help="per-instance timeout in instances.csv (default 300)")
    vnn.add_argument("--encoding", choices=ENCODINGS, default="simple",
                     help="simple (default): (<= Y_i Y_j) atoms only, margin via 10 extra shifted outputs; "
                          "linear: (<= (- Y_t Y_c) M) on the 10 logits")
    vnn.add_argument("--output", default=None,
                     help="benchmark folder (default: artifacts/vnncomp/<checkpoint>__<edit set>)")
    return parser


@script_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    command = {"onnx": run_onnx, "state-dict": run_state_dict, "vnnlib": run_vnnlib}[args.command]
    for line in command(args):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
