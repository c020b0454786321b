"""Vectorised k-means and RoI selection against plain-loop implementations of the same semantics."""

from __future__ import annotations

import pytest
import torch

from artemis_cli.model.kmeans import (initial_indices, kmeans_labels, one_member_per_cluster, random_scores,
                                      select_rois)


def loop_kmeans(points: torch.Tensor, k: int, max_iter: int, num_init: int, seed: int) -> list[int]:
    """One sample, Python loops: torch_kmeans' Lloyd + best-of-inits, written out."""
    n, d = points.shape
    starts = initial_indices(n, k, num_init, seed).tolist()
    best_labels, best_inertia = None, None
    for start in starts:
        centers = [points[i].double() for i in start]
        for _ in range(max_iter):
            labels = []
            for p in points.double():
                dists = [float(((p - c) ** 2).sum()) for c in centers]
                labels.append(dists.index(min(dists)))
            new_centers = []
            for c in range(k):
                members = [points[i].double() for i in range(n) if labels[i] == c]
                new_centers.append(torch.stack(members).mean(0) if members else torch.zeros(d, dtype=torch.float64))
            centers = new_centers
        labels, inertia = [], 0.0
        for p in points.double():
            dists = [float(((p - c) ** 2).sum()) for c in centers]
            labels.append(dists.index(min(dists)))
            inertia += min(dists)
        if best_inertia is None or inertia < best_inertia:
            best_labels, best_inertia = labels, inertia
    return best_labels


def loop_select(labels: list[int], k: int, scores: list[float]) -> list[int]:
    """The reference: for each non-empty cluster (ascending id) one member; pad with the last; sort."""
    picks = []
    for cluster in sorted(set(labels)):
        members = [i for i, label in enumerate(labels) if label == cluster]
        picks.append(max(members, key=lambda i: scores[i]))
    while len(picks) < k:
        picks.append(picks[-1])
    return sorted(picks)


def test_kmeans_matches_plain_loop_on_a_batch():
    torch.manual_seed(0)
    # clustered points so the result is well defined, plus pure noise samples
    centres = torch.randn(4, 16) * 4
    clustered = torch.stack([centres[torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])] + 0.1 * torch.randn(8, 16) for _ in range(3)])
    noise = torch.randn(3, 8, 16)
    points = torch.cat([clustered, noise])  # [6, 8, 16]
    batched = kmeans_labels(points, 4, max_iter=3, num_init=8, seed=123)
    assert batched.shape == (6, 8)
    for b in range(6):
        assert batched[b].tolist() == loop_kmeans(points[b], 4, 3, 8, 123)
    # well separated clusters are found: pairs share a label, different pairs differ
    for b in range(3):
        labels = batched[b].tolist()
        assert [labels[i] == labels[i + 1] for i in range(0, 8, 2)] == [True] * 4
        assert len(set(labels)) == 4


def test_kmeans_is_batch_independent():
    torch.manual_seed(1)
    points = torch.randn(5, 8, 32)
    together = kmeans_labels(points, 4)
    alone = torch.cat([kmeans_labels(points[b:b + 1], 4) for b in range(5)])
    assert torch.equal(together, alone)


def test_one_member_per_cluster_matches_loop_with_padding():
    generator = torch.Generator().manual_seed(0)
    labels = torch.tensor([[0, 0, 1, 1, 2, 2, 3, 3],   # all clusters present
                           [2, 2, 2, 0, 0, 2, 2, 0],   # clusters 1 and 3 empty -> pad with cluster 2's pick
                           [3, 3, 3, 3, 3, 3, 3, 3]])  # one cluster
    scores = torch.rand(3, 8, generator=generator)
    picked = one_member_per_cluster(labels, 4, scores)
    for b in range(3):
        assert picked[b].tolist() == loop_select(labels[b].tolist(), 4, scores[b].tolist())
    assert picked.shape == (3, 4)
    assert picked[2].unique().numel() == 1


def test_select_modes():
    tokens = torch.randn(2, 8, 16)
    assert select_rois(tokens, "none", 4).tolist() == [list(range(8))] * 2
    assert select_rois(tokens, "uniform", 4).tolist() == [[0, 2, 4, 6]] * 2
    seeded = [torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)]
    picks = select_rois(tokens, "random", 4, generators=seeded)
    assert picks.shape == (2, 4)
    for row in picks.tolist():
        assert row == sorted(row) and len(set(row)) == 4
    again = select_rois(tokens, "random", 4, generators=[torch.Generator().manual_seed(7), torch.Generator().manual_seed(8)])
    assert torch.equal(picks, again)
    km = select_rois(tokens, "kmeans", 4, generators=[torch.Generator().manual_seed(0)] * 2)
    assert km.shape == (2, 4) and all(row == sorted(row) for row in km.tolist())
    # with no more points than clusters every mode keeps them all
    assert select_rois(torch.randn(1, 3, 4), "kmeans", 4).tolist() == [[0, 1, 2]]
    with pytest.raises(ValueError, match="unknown"):
        select_rois(tokens, "median", 4)


def test_random_scores_per_sample_generators_are_independent_of_batch():
    a = random_scores(2, 5, [torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)])
    b = random_scores(1, 5, [torch.Generator().manual_seed(4)])
    assert torch.equal(a[1], b[0])


def test_prompt_box_count_follows_the_selection_mode():
    from artemis_cli.model.config import MMSettings

    assert MMSettings.of({"k_means": True}).tracked_roi_tokens(8) == 4
    assert MMSettings.of({"k_means": False}).tracked_roi_tokens(8) == 8
    assert MMSettings.of({"k_means": True, "roi_select_mode": "uniform", "kmeans_n_clusters": 2}).tracked_roi_tokens() == 2
    assert MMSettings.of({"k_means": True}).tracked_roi_tokens(3) == 3
