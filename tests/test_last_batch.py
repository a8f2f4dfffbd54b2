"""A training epoch never ends in a batch of one sample (BatchNorm cannot train on it)."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from zoo_core.train.data import make_loader


def _sizes(n: int, batch: int, train: bool) -> list[int]:
    data = TensorDataset(torch.arange(n).float())
    loader = make_loader(data, lambda s: torch.stack([x[0] for x in s]), batch_size=batch, train=train,
                         seed=0, num_workers=0)
    sizes = [len(b) for b in loader]
    assert len(loader) == len(sizes)
    return sizes


def test_a_final_training_batch_of_one_is_dropped():
    assert _sizes(9, 4, train=True) == [4, 4]          # 9 % 4 == 1: the lone sample waits for next epoch


def test_other_remainders_and_evaluation_keep_every_sample():
    assert _sizes(10, 4, train=True) == [4, 4, 2]
    assert _sizes(9, 4, train=False) == [4, 4, 1]      # evaluation sees every sample


def test_batchnorm_model_trains_through_an_epoch_of_n_mod_batch_equal_one():
    net = torch.nn.Sequential(torch.nn.Linear(1, 4), torch.nn.BatchNorm1d(4)).train()
    for batch in make_loader(TensorDataset(torch.randn(9, 1)), lambda s: torch.stack([x[0] for x in s]),
                             batch_size=4, train=True, seed=0, num_workers=0):
        out = net(batch)                                 # a batch of 1 would raise ValueError here
        assert out.shape[0] > 1
