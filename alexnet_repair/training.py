"""Training the base AlexNet (plain cross-entropy, Adam, seeded)."""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from .data import Split
from .evaluate import bar_disabled, predict
from .fileio import write_json
from .model import save_checkpoint, small_alexnet
from .provenance import versions

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    epochs: int = 2             # passes over the training split
    batch_size: int = 32        # images per step
    lr: float = 3e-4            # Adam learning rate
    seed: int = 0               # seeds weight init and batch order


@dataclass
class TrainResult:
    train_accuracy: float       # % on the training split after the last epoch (eval mode)
    test_accuracy: float        # % on the test split
    epoch_losses: list[float]   # mean training loss per epoch
    seconds: float


def init_for_training(model: torch.nn.Module, seed: int) -> None:
    """He (Kaiming-normal) weights and zero biases for every conv/linear layer.

    PyTorch's default init leaves this BN-free AlexNet stuck near chance for hundreds of steps; with He init the
    synthetic set reaches ~75% test accuracy within ~200 steps of Adam.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (torch.nn.Conv2d, torch.nn.Linear)):
                fan_in = module.weight[0].numel()
                module.weight.copy_(torch.randn(module.weight.shape, generator=generator) * (2.0 / fan_in) ** 0.5)
                module.bias.zero_()


def train(model: torch.nn.Module, train_split: Split, test_split: Split, config: TrainConfig,
          device="cpu", progress: bool = True) -> TrainResult:
    """Train ``model`` in place on ``train_split`` and score it on both splits (call init_for_training first
    when training from scratch)."""
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(config.seed)
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    losses = []
    for epoch in range(config.epochs):
        model.train()
        order = torch.randperm(len(train_split), generator=generator)
        total, count = 0.0, 0
        bar = tqdm(train_split.batches(config.batch_size, order), total=-(-len(order) // config.batch_size),
                   desc=f"epoch {epoch + 1}/{config.epochs}", unit="batch", disable=bar_disabled(progress),
                   leave=False)  # batches are preprocessed one at a time, not all up front
        for x, y, _ in bar:
            loss = torch.nn.functional.cross_entropy(model(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(y)
            count += len(y)
            bar.set_postfix(loss=f"{total / count:.3f}")
        losses.append(total / max(count, 1))
        log.info("epoch %d: loss %.4f", epoch + 1, losses[-1])
    model.eval()
    train_acc = predict(model, train_split, device, progress=progress, desc="train acc").accuracy()
    test_acc = predict(model, test_split, device, progress=progress, desc="test acc").accuracy()
    return TrainResult(train_acc, test_acc, losses, time.perf_counter() - start)


def train_base_model(path, train_split: Split, test_split: Split, config: TrainConfig, width_scale: int = 1,
                     device="cpu", progress: bool = True, **extra) -> dict:
    """Train a fresh AlexNet (He init, seeded by ``config.seed``), save it at ``path`` and its sidecar JSON beside it.

    Returns the sidecar record (``extra`` keys are added to it, e.g. who trained it).
    """
    model = small_alexnet(width_scale)
    init_for_training(model, config.seed)
    result = train(model, train_split, test_split, config, device, progress=progress)
    save_checkpoint(model.cpu(), path)
    record = {"checkpoint": str(path), "dataset": train_split.dataset, "data_source": train_split.source,
              "arch": model.arch(), "config": asdict(config), "train_accuracy": result.train_accuracy,
              "test_accuracy": result.test_accuracy, "epoch_losses": result.epoch_losses,
              "seconds": result.seconds, "device": str(device), **extra, "versions": versions()}
    write_json(Path(path).with_suffix(".json"), record)
    return record
