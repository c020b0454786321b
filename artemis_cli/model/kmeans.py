"""Picking which tracked RoI tokens go to the LLM: k-means (the published model), uniform, random, none.

k-means is the `torch_kmeans.KMeans(n_clusters=4, max_iter=3)` (PyPI `torch-kmeans` 0.2.0) the published
model calls on each sample's 8 tracked RoI tokens, with its arithmetic: `num_init` (8) initialisations of
K distinct points drawn by `torch.multinomial` from a generator seeded with 123 on every call, Lloyd
iterations with `F.pairwise_distance` (p=2, its eps 1e-6), centres as the L1-normalised one-hot matrix
times the points (an empty cluster's centre becomes zero), a final assignment, and the initialisation
with the lowest inertia (``norm(x - centre) ** 2`` summed) wins. On CPU in fp32, one sample at a time,
the labels are the library's bit for bit (`tests/test_model_kmeans_reference.py`). Where they can differ:

- we always run `max_iter` iterations; the library stops once every centre moved less than `tol`
  (1e-4) for the whole batch. Stopping there only matters if a centre keeps moving by < 1e-4, which
  Lloyd's algorithm does not do (unchanged assignments give identical centres), and an early stop
  that depends on the other samples would couple the results of a batch;
- the library draws its initial indices with a generator on the points' device, so on CUDA its draws
  differ from our CPU generator's (the published eval ran on CUDA: same recipe, other random starts);
- the published model ran k-means on fp16 tokens (fp16 distances); we cluster in fp32;
- the library draws one set of initial indices per sample of a batch (bs x num_init rows); the
  published model calls it one sample at a time, which is what we reproduce for every sample.

Then one random member per non-empty cluster, padded by repeating the last cluster's pick, sorted by
frame order, as the published RoI selection does: the published code picks with Python's `random.choice`, we with a
per-sample torch generator (the same uniform choice, from another random stream).
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

from artemis_cli.model.config import RoiSelectMode


def initial_indices(num_points: int, k: int, num_init: int, seed: int) -> torch.Tensor:
    """[num_init, k] distinct point indices per initialisation, from a CPU generator seeded with `seed`."""
    generator = torch.Generator().manual_seed(seed)
    weights = torch.full((num_init, num_points), 1.0 / num_points)
    return torch.multinomial(weights, k, replacement=False, generator=generator)


def kmeans_labels(points: torch.Tensor, k: int, max_iter: int = 3, num_init: int = 8, seed: int = 123,
                  centers: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cluster each sample's points: [B, N, D] -> labels [B, N] (best of `num_init` runs), batched.

    `centers` [B, num_init, K, D] replaces the random initial centres (to compare with another
    implementation from the same start)."""
    import torch.nn.functional as F

    x = points.float()
    b, n, d = x.shape
    if centers is None:
        start = initial_indices(n, k, num_init, seed).to(x.device)  # [I, K]
        centers = x[:, start.reshape(-1)].reshape(b, num_init, k, d)  # [B, I, K, D]
    else:
        centers = centers.to(device=x.device, dtype=x.dtype)
        num_init = centers.shape[1]
    cluster_ids = torch.arange(k, device=x.device)
    grid = (b, num_init, n, k, d)

    def assign(centers: torch.Tensor) -> torch.Tensor:
        # torch_kmeans' LpDistance: F.pairwise_distance (|x - c + 1e-6|_2) on the expanded pairs
        dist = F.pairwise_distance(x[:, None, :, None, :].expand(grid).reshape(-1, d),
                                   centers[:, :, None, :, :].expand(grid).reshape(-1, d), p=2)
        return dist.view(b, num_init, n, k).argmin(-1)  # labels [B, I, N]

    for _ in range(max_iter):
        labels = assign(centers)
        onehot = (labels[:, :, None, :] == cluster_ids[None, None, :, None]).to(x.dtype)  # [B, I, K, N]
        centers = F.normalize(onehot, p=1.0, dim=-1) @ x[:, None]  # [B, I, K, D]; empty cluster -> 0
    labels = assign(centers)
    assigned = centers.gather(2, labels[..., None].expand(-1, -1, -1, d))  # [B, I, N, D]
    inertia = (torch.norm(x[:, None] - assigned, p=2, dim=-1) ** 2).sum(-1)  # [B, I]
    best = inertia.argmin(-1)  # [B]
    return labels[torch.arange(b, device=x.device), best]  # [B, N]


def one_member_per_cluster(labels: torch.Tensor, k: int, scores: torch.Tensor) -> torch.Tensor:
    """labels [B, N], scores [B, N] uniform random -> [B, K] sorted point indices.

    The member of each non-empty cluster with the highest score is a uniform random member; missing
    clusters repeat the pick of the last non-empty one (the reference pads with its last pick).
    """
    cluster_ids = torch.arange(k, device=labels.device)
    members = labels[:, None, :] == cluster_ids[None, :, None]  # [B, K, N]
    picks = torch.where(members, scores[:, None, :], torch.full_like(scores[:, None, :], -1.0)).argmax(-1)  # [B, K]
    present = members.any(-1)  # [B, K]
    last = (present * (cluster_ids + 1)).argmax(-1, keepdim=True)  # [B, 1] highest non-empty cluster
    picks = torch.where(present, picks, picks.gather(1, last))
    return picks.sort(dim=1).values


def random_scores(batch: int, num_points: int, generators: Optional[Sequence[Optional[torch.Generator]]] = None,
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """[B, N] uniform numbers: from each sample's own generator when given (batch-independent), else torch's RNG."""
    if generators is None:
        return torch.rand(batch, num_points, device=device)
    rows = [torch.rand(num_points, generator=g) if g is not None else torch.rand(num_points) for g in generators]
    return torch.stack(rows).to(device)


def select_rois(tokens: torch.Tensor, mode: RoiSelectMode, k: int, *, max_iter: int = 3, num_init: int = 8,
                seed: int = 123, generators: Optional[Sequence[Optional[torch.Generator]]] = None) -> torch.Tensor:
    """Which of each sample's N tracked RoI tokens [B, N, D] to keep -> sorted indices [B, K] (or [B, N]).

    ``kmeans``: one random member of each of K clusters; ``uniform``: every (N/K)-th; ``random``: K
    distinct at random; ``none``: all N. With N <= K every mode keeps all N (k-means needs K < N).
    """
    b, n, _ = tokens.shape
    device = tokens.device
    if mode == "none" or n <= k:
        return torch.arange(n, device=device).expand(b, n)
    if mode == "uniform":
        return (torch.arange(k, device=device) * n // k).expand(b, k)
    scores = random_scores(b, n, generators, device)
    if mode == "random":
        return scores.argsort(dim=1)[:, :k].sort(dim=1).values
    if mode == "kmeans":
        labels = kmeans_labels(tokens.detach(), k, max_iter=max_iter, num_init=num_init, seed=seed)
        return one_member_per_cluster(labels, k, scores)
    raise ValueError(f"unknown RoI selection mode {mode!r}")
