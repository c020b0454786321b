"""Picking which tracked RoI tokens go to the LLM: k-means (the published model), uniform, random, none.

k-means follows the `torch_kmeans.KMeans` the reference calls (``n_clusters=4, max_iter=3``):
`num_init` random initialisations of K distinct points drawn from a generator seeded with a fixed
seed (123) on every call, Lloyd iterations on the squared Euclidean distance (an empty cluster's
centre becomes zero), a final assignment, and the initialisation with the lowest inertia wins.
Unlike the library it always runs `max_iter` iterations (no early stop on a shift tolerance, which
would couple the samples of a batch). The same initial indices serve every sample, so a sample's
result does not depend on the rest of its batch. Then one random member per non-empty cluster,
padded by repeating the last cluster's pick, sorted by frame order (REFERENCE §4).
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


def kmeans_labels(points: torch.Tensor, k: int, max_iter: int = 3, num_init: int = 8, seed: int = 123) -> torch.Tensor:
    """Cluster each sample's points: [B, N, D] -> labels [B, N] (best of `num_init` runs), batched."""
    x = points.float()
    b, n, d = x.shape
    start = initial_indices(n, k, num_init, seed).to(x.device)  # [I, K]
    centers = x[:, start.reshape(-1)].reshape(b, num_init, k, d)  # [B, I, K, D]
    cluster_ids = torch.arange(k, device=x.device)

    def assign(centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dist = ((x[:, None, :, None, :] - centers[:, :, None, :, :]) ** 2).sum(-1)  # [B, I, N, K]
        return dist.argmin(-1), dist  # labels [B, I, N]

    for _ in range(max_iter):
        labels, _ = assign(centers)
        onehot = (labels[:, :, None, :] == cluster_ids[None, None, :, None]).to(x.dtype)  # [B, I, K, N]
        counts = onehot.sum(-1, keepdim=True).clamp(min=1.0)
        centers = onehot @ x[:, None] / counts  # [B, I, K, D]; empty cluster -> 0
    labels, dist = assign(centers)
    inertia = dist.gather(-1, labels[..., None]).squeeze(-1).sum(-1)  # [B, I]
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
