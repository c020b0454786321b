"""Our k-means RoI selection against the library the published model calls: `torch_kmeans.KMeans`
(PyPI `torch-kmeans` 0.2.0, ``KMeans(n_clusters=4, max_iter=3, verbose=False)``), one sample at a time
on the 8 tracked RoI tokens, as `prepare_inputs_labels_for_multimodal` does. The published member pick
(`random.choice` per cluster in label order, padded with the last pick, sorted) is written out here."""

from __future__ import annotations

import random

import pytest
import torch

from artemis_cli.model.kmeans import kmeans_labels, one_member_per_cluster, random_scores, select_rois

torch_kmeans = pytest.importorskip("torch_kmeans")

K, N = 4, 8


def published_kmeans():
    return torch_kmeans.KMeans(n_clusters=K, max_iter=3, verbose=False)


def token_cases(count: int, dim: int = 64):
    """RoI-token-like samples: noise, loose and tight groups, a repeated frame (duplicate tokens)."""
    generator = torch.Generator().manual_seed(7)
    for index in range(count):
        kind = index % 4
        if kind == 0:
            x = torch.randn(N, dim, generator=generator)
        elif kind in (1, 2):
            centres = torch.randn(3 + kind, dim, generator=generator) * 3
            members = torch.randint(0, centres.shape[0], (N,), generator=generator)
            x = centres[members] + (0.5 if kind == 1 else 0.05) * torch.randn(N, dim, generator=generator)
        else:  # fewer than 8 tracked frames: the last one repeated, as the frame sampler pads
            x = torch.randn(N, dim, generator=generator)
            x[5:] = x[4]
        yield x[None]  # [1, N, D]


def test_labels_equal_the_library_from_its_own_random_start():
    """Default settings, CPU fp32: the same initial indices (seed 123), distances, means and inertia."""
    for x in token_cases(60):
        ours = kmeans_labels(x, K, max_iter=3, num_init=8, seed=123)
        theirs = published_kmeans()(x).labels
        assert torch.equal(ours, theirs), (ours, theirs)


def test_labels_equal_the_library_from_the_same_initial_centroids():
    generator = torch.Generator().manual_seed(3)
    for x in token_cases(30, dim=32):
        picks = torch.stack([torch.randperm(N, generator=generator)[:K] for _ in range(8)])  # [I, K]
        centers = x[0, picks][None]  # [1, I, K, D]
        ours = kmeans_labels(x, K, centers=centers)
        theirs = published_kmeans()(x, centers=centers.clone()).labels
        assert torch.equal(ours, theirs)


def test_empty_cluster_and_ties_behave_as_the_library():
    """Duplicate tokens chosen as two initial centres: the second centre gets no member (the library
    zeroes it, as we do) and exact ties go the same way (the library's pairwise eps included)."""
    x = torch.zeros(1, N, 4)
    x[0, :4, 0] = 1.0  # four identical tokens, four others at the origin
    x[0, 4:, 1] = torch.tensor([0.5, -0.5, 2.0, 3.0])
    centers = torch.stack([x[0, 0], x[0, 1], x[0, 4], x[0, 7]])[None, None].expand(1, 8, K, 4)  # 0 and 1 equal
    ours = kmeans_labels(x, K, centers=centers)
    theirs = published_kmeans()(x, centers=centers.clone()).labels
    assert torch.equal(ours, theirs)
    assert 1 not in ours.tolist()  # the duplicate centre's cluster is empty in both
    # a token exactly between two centres: F.pairwise_distance's +1e-6 decides, for both of us
    tie = torch.tensor([[[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [5.0, 5.0], [6.0, 5.0], [9.0, 0.0], [9.0, 1.0], [0.0, 9.0]]])
    centers = tie[0, [1, 2, 3, 5]][None, None].expand(1, 8, K, 2)
    assert kmeans_labels(tie, K, centers=centers).tolist() == published_kmeans()(tie, centers=centers.clone()).labels.tolist()


def test_convergence_before_max_iter_changes_nothing():
    """The library stops early once centres move < tol; we always run max_iter: same labels."""
    for x in token_cases(20):
        for max_iter in (3, 50):
            theirs = torch_kmeans.KMeans(n_clusters=K, max_iter=max_iter, verbose=False)(x).labels
            assert torch.equal(kmeans_labels(x, K, max_iter=max_iter), theirs)


def published_pick(labels: list[int], rng: random.Random) -> list[int]:
    """The published pick: per unique label (ascending) a random member, pad with the last, sort."""
    picks = [rng.choice([i for i, label in enumerate(labels) if label == cluster]) for cluster in sorted(set(labels))]
    while len(picks) < K:
        picks.append(picks[-1])
    return sorted(picks)


def test_chosen_rois_are_one_member_of_each_published_cluster_padded_the_same_way():
    """Same clusters as the library; the member is a uniform draw in both, from different random
    streams (the published `random.choice`, our per-sample torch generator). So: with single-member
    clusters the chosen RoIs are identical, otherwise they are one member of each published cluster."""
    for seed, x in enumerate(token_cases(40)):
        theirs = published_kmeans()(x).labels[0].tolist()
        generator = torch.Generator().manual_seed(seed)
        ours = select_rois(x, "kmeans", K, generators=[generator])[0].tolist()
        reference = published_pick(theirs, random.Random(seed))
        assert len(ours) == K and ours == sorted(ours)
        assert sorted({theirs[i] for i in ours}) == sorted(set(theirs))  # one pick per published cluster
        assert len(set(ours)) == len(set(theirs))  # padding repeats a pick, as published
        if all(theirs.count(label) == 1 for label in set(theirs)):
            assert ours == reference
    # padding: two non-empty clusters -> the pick of the highest cluster id repeats, as published
    labels = torch.tensor([[0, 0, 0, 0, 2, 2, 2, 2]])
    scores = random_scores(1, N, [torch.Generator().manual_seed(0)])
    picks = one_member_per_cluster(labels, K, scores)[0].tolist()
    assert picks[0] < 4 and picks[1:] == [picks[1]] * 3 and picks[1] >= 4
