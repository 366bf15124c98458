"""The numbers of an evaluation: CLIP similarity scores, oracle accuracies, PSNR, and bootstrap intervals.

Scores are per generated sample, so that every statistic can carry an interval: :func:`summary` (mean and
95% percentile bootstrap interval) and :func:`difference` (paired when two methods share seeds). Samples
nest (samples within prompts within concepts): each level weighs its children equally.
"""

from __future__ import annotations

import math

import numpy as np
import torch


# ---------------------------------------------------------------------------------------------- bootstrap
def _nested(x) -> bool:
    return isinstance(x, (list, tuple)) and len(x) > 0 and not np.isscalar(x[0])


def _leaves(x) -> list:
    """Arrays of a (nested) structure of sample lists, depth first."""
    if _nested(x):
        return [leaf for child in x for leaf in _leaves(child)]
    return [np.asarray(x, dtype=np.float64).ravel()]


def _point(x) -> float:
    """The statistic: the mean of a sample list; of a list of lists, the mean of the children's statistics
    (so prompts weigh equally within a concept and concepts equally within a set)."""
    if _nested(x):
        return float(np.mean([_point(c) for c in x]))
    return float(np.mean(np.asarray(x, dtype=np.float64)))


def _boot(x, draws: list, n_boot: int, clusters: bool = False) -> np.ndarray:
    """Bootstrap replicates of `_point(x)`: each sample list resampled within itself with the next index
    matrix of `draws` (shared between two structures of the same shape: a paired bootstrap). clusters: the
    top-level groups (e.g. concepts) are resampled too, so their spread enters the interval."""
    if _nested(x):
        children = np.stack([_boot(c, draws, n_boot) for c in x])  # [groups, n_boot]
        if clusters:
            idx = draws.pop(0)  # [n_boot, groups]
            return children[idx, np.arange(n_boot)[:, None]].mean(1)
        return children.mean(0)
    a = np.asarray(x, dtype=np.float64).ravel()
    return a[draws.pop(0)].mean(1)


def _draws(x, n_boot: int, rng, clusters: bool = False) -> list:
    d = [rng.integers(0, len(a), (n_boot, len(a))) for a in _leaves(x)]
    if clusters and _nested(x):
        d.append(rng.integers(0, len(x), (n_boot, len(x))))
    return d


def bootstrap_ci(
    values, n_boot: int = 2000, seed: int = 0, level: float = 0.95, clusters: bool = False
) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of `values` (resampled with replacement).

    `values` may be nested (a list of sample lists, or of lists of them): each sample list is resampled
    within itself and the statistic is the mean of the group statistics (a stratified bootstrap: samples
    within prompts, prompts within concepts). clusters=True also resamples the top-level groups."""
    leaves = _leaves(values)
    if not leaves or any(len(a) == 0 for a in leaves):
        raise ValueError("bootstrap of an empty sample")
    rng = np.random.default_rng(seed)
    stats = _boot(values, _draws(values, n_boot, rng, clusters), n_boot, clusters)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(stats, [alpha, 1 - alpha])
    return float(lo), float(hi)


def summary(values, n_boot: int = 2000, seed: int = 0, clusters: bool = False) -> dict:
    """{"mean", "ci": [lo, hi] (95% bootstrap), "n": samples} of per-sample values (nested allowed)."""
    lo, hi = bootstrap_ci(values, n_boot, seed, clusters=clusters)
    return {"mean": _point(values), "ci": [lo, hi], "n": int(sum(len(a) for a in _leaves(values)))}


def difference(a, b, n_boot: int = 2000, seed: int = 0, paired: bool | None = None, clusters: bool = False) -> dict:
    """statistic(a) - statistic(b) with a 95% bootstrap interval and the bootstrap share of replicates <= 0.

    paired (default: when a and b have the same shape): the same resampling indices for both, which is
    right when sample i of a and of b share a seed (as every evaluation here does). clusters: resample the
    top-level groups (concepts) too, the same ones for a and b when paired."""
    rng = np.random.default_rng(seed)
    la, lb = _leaves(a), _leaves(b)
    if paired is None:
        paired = [len(x) for x in la] == [len(x) for x in lb] and (not clusters or len(a) == len(b))
    da = _draws(a, n_boot, rng, clusters)
    db = list(da) if paired else _draws(b, n_boot, rng, clusters)
    d = _boot(a, da, n_boot, clusters) - _boot(b, db, n_boot, clusters)
    lo, hi = np.quantile(d, [0.025, 0.975])
    return {
        "mean": _point(a) - _point(b),
        "ci": [float(lo), float(hi)],
        "p_le_0": float((d <= 0).mean()),
        "paired": bool(paired),
    }


# ---------------------------------------------------------------------------------------------- scores
def reconstruction_scores(gen_features: torch.Tensor, photo_features: torch.Tensor) -> np.ndarray:
    """Per generated sample: mean cosine to the training photos (features L2-normalised)."""
    g, p = normalise(gen_features), normalise(photo_features)
    return (g @ p.T).mean(1).cpu().numpy().astype(np.float64)


def self_similarity(photo_features: torch.Tensor) -> float:
    """Mean cosine between distinct training photos: what a perfect fresh sample of the concept scores."""
    p = normalise(photo_features)
    n = len(p)
    if n < 2:
        return 1.0
    s = p @ p.T
    return float((s.sum() - s.diagonal().sum()) / (n * (n - 1)))


def text_scores(gen_features: torch.Tensor, text_feature: torch.Tensor) -> np.ndarray:
    g, t = normalise(gen_features), normalise(text_feature.reshape(1, -1))
    return (g @ t.T).squeeze(1).cpu().numpy().astype(np.float64)


def normalise(x: torch.Tensor) -> torch.Tensor:
    """Features L2-normalised along the last dimension, in float32."""
    return torch.nn.functional.normalize(x.float(), dim=-1)


def entropy_bits(labels: list[str]) -> float:
    """Shannon entropy (bits) of a list of labels."""
    if not labels:
        return 0.0
    _, counts = np.unique(labels, return_counts=True)
    p = counts / counts.sum()
    return float(max(0.0, -(p * np.log2(p)).sum()))


# ---------------------------------------------------------------------------------------------- oracle accuracies
def target_attributes(oracle_labels: dict[str, list[str]], kind: str) -> dict[str, str]:
    """The concept's attributes by majority vote of the oracle over the training photos."""
    keys = ("style",) if kind == "style" else ("shape", "colour", "pattern")
    out = {}
    for k in keys:
        values, counts = np.unique(oracle_labels[k], return_counts=True)
        out[k] = str(values[counts.argmax()])
    return out


def concept_present(labels: dict[str, list[str]], target: dict[str, str], kind: str) -> np.ndarray:
    """Per image: is the concept there? Objects: shape, colour and pattern of the (left) object match, or
    shape and colour of the right object of a two-object scene. Styles: the rendering style matches."""
    n = len(next(iter(labels.values())))
    if kind == "style":
        return np.array([labels["style"][i] == target["style"] for i in range(n)], dtype=np.float64)
    out = np.zeros(n)
    for i in range(n):
        left = all(labels[k][i] == target[k] for k in ("shape", "colour", "pattern") if k in target)
        right = (
            labels["count"][i] == "2"
            and labels["shape2"][i] == target.get("shape")
            and labels["colour2"][i] == target.get("colour")
        )
        out[i] = float(left or right)
    return out


def edit_applied(labels: dict[str, list[str]], expect: dict) -> np.ndarray | None:
    """Per image: did the edit happen (background, style, second object, content)? None: nothing to check."""
    if not expect:
        return None
    n = len(next(iter(labels.values())))
    out = np.ones(n)
    for k, v in expect.items():
        if k == "second":
            s, c = v
            ok = [
                labels["count"][i] == "2"
                and (
                    (labels["shape"][i], labels["colour"][i]) == (s, c)
                    or (labels["shape2"][i], labels["colour2"][i]) == (s, c)
                )
                for i in range(n)
            ]
        elif k in ("shape", "colour"):  # content of a style prompt: either object slot
            other = k + "2"
            ok = [labels[k][i] == v or labels[other][i] == v for i in range(n)]
        else:
            ok = [labels[k][i] == v for i in range(n)]
        out *= np.array(ok, dtype=np.float64)
    return out


# ---------------------------------------------------------------------------------------------- pixels
def psnr(a, b, mask=None) -> float:
    """PSNR in dB between two images (PIL or uint8 arrays), over the pixels where `mask` is True (all if None).
    Identical pixels give inf."""
    x = np.asarray(a, np.float64)
    y = np.asarray(b, np.float64)
    if x.shape != y.shape:
        raise ValueError(f"images differ in size: {x.shape} vs {y.shape}")
    d = (x - y) ** 2
    if mask is not None:
        d = d[np.asarray(mask, bool)]
    mse = float(d.mean()) if d.size else 0.0
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
