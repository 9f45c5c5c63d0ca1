"""How many preserve images keep their label when they reach the model through torchvision's classic PIL pipeline
(``Resize(70)``, ``CenterCrop(64)``, ``ToTensor()`` on PIL images) instead of the toolkit's tensor resize, which
differs from it by 1/255 in about 1% of the pixels. The guarantee of a repair holds for the toolkit's
preprocessing; this measures how much of it survives the other one, for the base model and the repaired one.

    uv run python bench/pil_survival.py --base artifacts/alexnet_base.pth --repaired artifacts/alexnet_repaired.pth \\
        --record results/repair_<edit set>.json --data-dir DIR

The record is run_repair.py's JSON (it lists the preserve images: ``preserve_indices`` of ``preserve_split``).
Prints, for each model: preserve images, how many the toolkit's inputs classify right, how many the PIL inputs do.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image
from torchvision import transforms

from alexnet_repair.data import DataSource, dataset_family
from alexnet_repair.evaluate import margins_of
from alexnet_repair.model import load_checkpoint

PIL_PIPELINE = transforms.Compose([transforms.Resize(70), transforms.CenterCrop(64), transforms.ToTensor()])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="the base model")
    parser.add_argument("--repaired", required=True, help="the repaired model")
    parser.add_argument("--record", required=True, help="run_repair.py's JSON record of the repair")
    parser.add_argument("--data-dir", default="data")
    parser.add_argument("--batch-size", type=int, default=500)
    return parser


def pil_inputs(raw: torch.Tensor) -> torch.Tensor:
    """uint8 (n, 32, 32, 3) -> (n, 3, 64, 64) through the PIL pipeline, image by image."""
    return torch.stack([PIL_PIPELINE(Image.fromarray(img.numpy())) for img in raw])


@torch.no_grad()
def margins(model, split, indices, batch: int, pil: bool) -> np.ndarray:
    out = []
    for lo in range(0, len(indices), batch):
        idx = torch.as_tensor(indices[lo:lo + batch], dtype=torch.long)
        x = pil_inputs(split.images[idx]) if pil else split.inputs(idx)
        out.append(margins_of(model(x), split.labels[idx]).numpy())
    return np.concatenate(out) if out else np.zeros(0)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    record = json.loads(open(args.record, encoding="utf-8").read())
    indices = np.asarray(record.get("preserve_indices") or [], dtype=np.int64)
    if not indices.size:
        raise SystemExit("the record lists no preserve images")
    split = DataSource(dataset_family(record.get("dataset")), args.data_dir, False).load(
        record["config"]["preserve_split"])
    print(f"{indices.size} preserve images of {split.dataset}/{split.split}")
    print(f"{'model':10} {'toolkit inputs right':>22} {'PIL inputs right':>18} {'lost by PIL':>12} {'s':>6}")
    for name, path in (("base", args.base), ("repaired", args.repaired)):
        model = load_checkpoint(path).eval()
        start = time.perf_counter()
        ours = margins(model, split, indices, args.batch_size, pil=False)
        theirs = margins(model, split, indices, args.batch_size, pil=True)
        print(f"{name:10} {int((ours > 0).sum()):>22} {int((theirs > 0).sum()):>18} "
              f"{int(((ours > 0) & (theirs <= 0)).sum()):>12} {time.perf_counter() - start:>6.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
