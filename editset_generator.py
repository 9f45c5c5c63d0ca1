"""Build an edit set (the images a repair must fix) from the base model's mistakes, or look at one.

  uv run python editset_generator.py misclassified --max-size 100
  uv run python editset_generator.py by-class --target-class 3 --max-size 50 [--focus incorrect|correct|all]
  uv run python editset_generator.py show data/edit_sets/misclassified_edit_dataset.pt [--weights W]

Sets are written to data/edit_sets/<prefix>_edit_dataset.pt plus a JSON manifest beside it. A share of the
candidates (--holdout-fraction) is held out for measuring generalization; the rest of the split is the drawdown set.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from alexnet_repair.cli import add_common_args, add_data_args, add_device_args, device_from, script_main, setup_logging
from alexnet_repair.data import CLASS_NAMES, load_split
from alexnet_repair.editsets import (CLASS_LIST, FOCUSES, SIZINGS, EditSet, build_editset, default_editset_path,
                                     describe_kind, load_editset, parse_class, save_editset)
from alexnet_repair.errors import UsageError
from alexnet_repair.model import file_sha256, load_checkpoint
from alexnet_repair.paths import manifest_path, path_for
from alexnet_repair.plots import contact_sheet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    modes = parser.add_subparsers(dest="mode", required=True, metavar="{misclassified,by-class,show}")

    build = argparse.ArgumentParser(add_help=False)
    add_data_args(build)
    add_device_args(build)
    add_common_args(build, seed=0)
    build.add_argument("--max-size", type=int, default=None, help="edit-set size (default: every candidate)")
    build.add_argument("--sizing", choices=SIZINGS, default="flexible",
                       help="strict: error if fewer than --max-size candidates exist; flexible: take what exists")
    build.add_argument("--split", choices=("test", "train"), default="test", help="split to draw from (default test)")
    build.add_argument("--holdout-fraction", type=float, default=0.5,
                       help="share of the candidates held out for generalization (default 0.5; 0 = none)")
    build.add_argument("--weights", default=str(path_for("base_model")), help="base model checkpoint")
    build.add_argument("--output", default=None, help="edit set .pt path (default: data/edit_sets/<prefix>_...)")
    build.add_argument("--force", action="store_true", help="overwrite an existing edit set")
    build.add_argument("--quiet", action="store_true", help="no progress bar")

    modes.add_parser("misclassified", parents=[build], help="images the base model misclassifies")
    by_class = modes.add_parser("by-class", parents=[build], help="images of one class")
    by_class.add_argument("--target-class", default=None, help=f"class 0-9 or its name ({CLASS_LIST})")
    by_class.add_argument("--focus", choices=FOCUSES, default="incorrect",
                          help="incorrect (default): the class's misclassified images; correct; or all")

    show = modes.add_parser("show", help="write a PNG contact sheet of an edit set")
    show.add_argument("path", help="edit set .pt file")
    show.add_argument("--output", default=None, help="PNG path (default: beside the set, <name>_contact.png)")
    show.add_argument("--max-images", type=int, default=64, help="draw at most this many (default 64)")
    show.add_argument("--weights", default=None, help="also show this model's current predictions")
    add_device_args(show)
    add_common_args(show, seed=None)
    return parser


@script_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level)
    return show(args) if args.mode == "show" else generate(args)


def generate(args) -> int:
    focus = getattr(args, "focus", None)
    target = None
    if args.mode == "by-class":
        if args.target_class is None:
            raise UsageError(f"by-class needs --target-class 0-9 ({CLASS_LIST})")
        target = parse_class(args.target_class)
    if args.max_size is not None and args.max_size < 1:
        raise UsageError(f"--max-size must be at least 1 (got {args.max_size})")
    if not 0 <= args.holdout_fraction < 1:
        raise UsageError(f"--holdout-fraction must be in [0, 1) (got {args.holdout_fraction})")
    weights = Path(args.weights)
    if not weights.exists():
        raise UsageError(f"base model not found: {weights}: run `uv run python train.py` first, or pass --weights")
    output = Path(args.output) if args.output else default_editset_path(args.mode, target, focus, args.dataset)
    if output.suffix != ".pt":
        raise UsageError(f"--output must end in .pt (got {output})")
    for path in (output, manifest_path(output)):
        if path.is_dir():
            raise UsageError(f"{path} is a folder: give an edit set file path with --output")
        if path.exists() and not args.force:
            raise UsageError(f"{path} exists: pass --force to overwrite it, or choose another --output")
    device = device_from(args)
    model = load_checkpoint(weights)
    split = load_split(args.dataset, args.split, args.data_dir, download=not args.no_download)
    editset = build_editset(model, split, args.mode, target_class=target, focus=focus, max_size=args.max_size,
                            sizing=args.sizing, holdout_fraction=args.holdout_fraction, seed=args.seed,
                            device=device, checkpoint_sha256=file_sha256(weights), checkpoint_path=weights,
                            progress=not args.quiet)
    pt, manifest = save_editset(editset, output, force=args.force)
    print_summary(editset, pt, manifest)
    return 0


def print_summary(editset: EditSet, pt: Path, manifest: Path) -> None:
    meta = editset.meta
    what = describe_kind(meta["kind"], meta["target_class"], meta["focus"])
    kind = meta["kind"] if meta["target_class"] is None else \
        f"by-class, class {meta['target_class']} {meta['target_class_name']}, focus {meta['focus']}"
    requested = "all" if meta["requested_size"] is None else meta["requested_size"]
    histogram = ", ".join(f"{c} {name}: {n}" for c, (name, n) in enumerate(meta["class_histogram"].items()) if n)
    print(f"dataset          {meta['dataset']}/{meta['split']} ({meta['split_size']} images)")
    print(f"kind             {kind}")
    print(f"base accuracy    {meta['base_accuracy']:.2f}%")
    print(f"candidates       {meta['candidates']} {what}")
    print(f"edit set         {meta['actual_size']} (requested {requested}, {meta['sizing']})")
    if meta["requested_size"] is not None and meta["actual_size"] < meta["requested_size"]:
        print(f"note             only {meta['actual_size']} of the {meta['requested_size']} requested: "
              f"{meta['candidates']} candidates exist and {meta['holdout_size']} are held out")
    print(f"class histogram  {histogram}")
    print(f"held out         {meta['holdout_size']} (holdout fraction {meta['holdout_fraction']})")
    print(f"drawdown set     {meta['drawdown_size']} (the rest of the split)")
    print(f"wrote            {pt}")
    print(f"wrote            {manifest}")


def show(args) -> int:
    if args.max_images < 1:
        raise UsageError(f"--max-images must be at least 1 (got {args.max_images})")
    editset = load_editset(args.path)
    if not len(editset):
        raise UsageError(f"{args.path}: the edit set holds no images, nothing to show")
    n = min(len(editset), args.max_images)
    images, labels = editset.images[:n], editset.labels[:n].tolist()
    base = editset.predictions[:n].tolist() if editset.predictions is not None else [None] * n
    titles = [f"true: {CLASS_NAMES[t]}\nbase: {CLASS_NAMES[p] if p is not None and p >= 0 else '?'}"
              for t, p in zip(labels, base)]
    final = base
    if args.weights:
        from alexnet_repair.evaluate import logits_of

        now = logits_of(load_checkpoint(args.weights), images, device_from(args)).argmax(1).tolist()
        titles = [f"{title}\nnow: {CLASS_NAMES[p]}" for title, p in zip(titles, now)]
        final = now
    colors = ["tab:green" if p == t else "tab:red" for t, p in zip(labels, final)]
    path = Path(args.path)
    output = Path(args.output) if args.output else path.with_name(f"{path.stem}_contact.png")
    if output.is_dir():
        raise UsageError(f"{output} is a folder: give a PNG file path with --output")
    contact_sheet(images, titles, output, colors=colors)
    source = "legacy file, no manifest" if editset.legacy else f"{editset.dataset}/{editset.split}"
    print(f"edit set         {path} ({len(editset)} images, {source})")
    print(f"wrote            {output} ({n} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
