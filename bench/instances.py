"""Synthetic repair instances that look like the real AlexNet classifier head.

Used by the tests and by ``bench/bench_repair.py``; nothing here touches CIFAR or torch.
Features are non-negative post-ReLU vectors with ~55% zeros and O(1) non-zeros; hidden
layers are He-initialised; the last layer is a nearest-centroid classifier fitted on the
features it sees ("trained-ish": realistic logit scale and error rate). The edit points are
pool points the synthetic network really misclassifies, with their true labels as targets.
"""

from __future__ import annotations

import numpy as np

from alexnet_repair.repair.lp.spec import LPSpec, margins

_Z55 = 0.12566  # Phi^-1(0.55): shift that makes 55% of N(0, 1) negative


def _features(rng, n, protos, separation):
    """(n, dim) non-negative features of random classes; returns (features, labels).

    Pre-ReLU z = class signal + N(0, 1) noise, the signal scaled so that class means are
    ``separation`` noise standard deviations apart whatever the width."""
    labels = rng.integers(0, protos.shape[0], size=n)
    sig = separation / np.sqrt(2.0 * protos.shape[1])
    z = sig * protos[labels] + rng.standard_normal((n, protos.shape[1]))
    z = z / np.sqrt(1.0 + sig**2) - _Z55
    return np.maximum(z, 0.0) * 1.5, labels


# Over 60 lines: one generator (network, fitted last layer, misclassified points, preserve points) in order.
def make_instance(
    n_points: int,
    dims: tuple[int, ...] = (4096, 10),
    n_rows: int | None = None,
    seed: int = 0,
    logit_std: float = 4.0,
    separation: float = 4.0,
    n_preserve: int = 0,
    **spec_kwargs,
) -> LPSpec:
    """A repair problem for the layers k..m with widths ``dims = (in_k, out_k, ..., out_m)``.

    ``n_rows`` editable rows of layer k are picked at random (None = all rows).
    ``n_preserve`` points the network classifies correctly with ``preserve_margin`` (a keyword for LPSpec,
    default 0) become the preserve set.
    Extra keyword arguments go to :class:`LPSpec` (margin, param_bound, objective, ...).
    """
    rng = np.random.default_rng(seed)
    n_classes = dims[-1]
    protos = rng.standard_normal((n_classes, dims[0]))
    hidden_w, hidden_b = [], []
    for fan_in, fan_out in zip(dims[:-2], dims[1:-1]):
        hidden_w.append(rng.standard_normal((fan_out, fan_in)) * np.sqrt(2.0 / fan_in))
        hidden_b.append(0.01 * rng.standard_normal(fan_out))

    def penultimate(a):
        for w, b in zip(hidden_w, hidden_b):
            a = np.maximum(a @ w.T + b, 0.0)
        return a

    # fit the last layer: class centroids of the penultimate features, scaled to logit_std
    fit_x, fit_y = _features(rng, max(20 * n_classes, 400), protos, separation)
    h = penultimate(fit_x)
    centroids = np.stack([h[fit_y == c].mean(0) for c in range(n_classes)])
    w_last = centroids - centroids.mean(0)
    w_last += 0.3 * np.abs(w_last).mean() * rng.standard_normal(w_last.shape)
    logits = h @ w_last.T
    scale = logit_std / logits.std()
    w_last *= scale
    b_last = -(logits * scale).mean(0)

    inputs, targets = [], []
    found = 0
    for _ in range(1000):
        if found >= n_points:
            break
        x, y = _features(rng, max(4 * (n_points - found), 64), protos, separation)
        pred = (penultimate(x) @ w_last.T + b_last).argmax(1)
        wrong = np.flatnonzero(pred != y)[: n_points - found]
        inputs.append(x[wrong])
        targets.append(y[wrong])
        found += wrong.size
    if found < n_points:
        raise ValueError(f"synthetic network misclassifies too few points (separation={separation})")
    rows = None if n_rows is None else np.sort(rng.choice(dims[1], size=n_rows, replace=False))
    if n_preserve:
        x, y = _features(rng, 4 * n_preserve + 64, protos, separation)
        logits = penultimate(x) @ w_last.T + b_last
        keep = np.flatnonzero(margins(logits, y) >= spec_kwargs.get("preserve_margin", 0.0) + 1e-3)[:n_preserve]
        spec_kwargs.update(preserve_inputs=x[keep], preserve_labels=y[keep].astype(np.int64))
    return LPSpec(
        inputs=np.concatenate(inputs),
        targets=np.concatenate(targets).astype(np.int64),
        weights=hidden_w + [w_last],
        biases=hidden_b + [b_last],
        rows=rows,
        **spec_kwargs,
    )
