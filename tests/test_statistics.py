"""Streaming accumulators: any batching gives the whole-batch sums."""

import pytest
import torch
from factories import stats_of
from rankcollapse.statistics import EmbeddingStats, SecondMoment


def test_streaming_equals_direct_computation_for_any_batching():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(50, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (50,), generator=g)
    direct_means = torch.stack([z[y == c].mean(0) for c in range(3)])
    direct_tcv = float((z - direct_means[y]).norm(dim=1).sum())
    for batch in (1, 7, 50):
        assert stats_of(z, y, 3, batch)["tcv"] == pytest.approx(direct_tcv)


def test_a_class_without_samples_is_an_error():
    acc = EmbeddingStats(3, 2)
    acc.add_to_means(torch.zeros(2, 2), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"classes \[2\]"):
        acc.finish_means()


def test_second_moment_streams_to_xtx():
    x = torch.randn(100, 7, dtype=torch.float64)
    for batch in (1, 13, 100):
        moment = SecondMoment(x.shape[1])
        for rows in x.split(batch):
            moment.add(rows)
        assert moment.count == 100
        assert torch.allclose(moment.matrix, x.T @ x)
