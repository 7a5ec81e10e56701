"""``jaxembed bench train``: SearchCTR training examples/s against a PyTorch twin.

jaxembed's offline step (:mod:`jaxembed.train.offline`: row-sparse Adagrad tables,
row-sparse FTRL on the wide part, Adam on the dense layers, one jitted step) against the same
network in PyTorch — ``nn.EmbeddingBag(mode="sum", sparse=True)`` per domain with ``optim.Adagrad``
(which takes sparse gradients), a sparse one-column ``EmbeddingBag`` for the wide part, and
``optim.Adam`` on the dense layers — on the same encoded batches, in the same run. The wide
part of the PyTorch twin uses Adagrad (PyTorch has no FTRL), so the ratio compares steps of
the same size and structure, not identical arithmetic.
"""

from __future__ import annotations

import os
import time

import jax
import numpy as np
from flax import nnx

from jaxembed import data
from jaxembed.bench.timing import machine
from jaxembed.features import SearchFeaturizer
from jaxembed.models import SearchCTR
from jaxembed.train.offline import OfflineConfig, OfflineTrainer


def _torch_twin(torch, sizes: dict[str, int], num_stats: int, wide_size: int):
    nn = torch.nn

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.ModuleDict({d: nn.EmbeddingBag(v, 16, mode="sum", sparse=True)
                                        for d, v in sizes.items()})
            self.behavior = nn.ModuleDict({d: nn.Sequential(nn.Linear(16, 16), nn.ReLU(),
                                                            nn.Linear(16, 32), nn.ReLU())
                                           for d in sizes})
            self.prediction = nn.Sequential(nn.Linear(32 * len(sizes), 64), nn.ReLU(),
                                            nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
            self.wide = nn.EmbeddingBag(wide_size, 1, mode="sum", sparse=True)
            self.stats = nn.Sequential(nn.Linear(num_stats, 32), nn.Tanh(), nn.Linear(32, 16),
                                       nn.Sigmoid(), nn.Linear(16, 1))

        def forward(self, batch):
            parts = [self.behavior[d](self.embed[d](*batch[d])) for d in self.embed]
            logit = self.prediction(torch.cat(parts, dim=1))[:, 0]
            return logit + self.wide(*batch["wide"])[:, 0] + self.stats(batch["stats"])[:, 0]

    return Twin()


def _torch_bags(torch, bags):
    """(flat ids, offsets, per_sample_weights) of a padded Bags: padding dropped."""
    ids = np.asarray(bags.ids)
    mask = ids >= 0
    offsets = np.concatenate([[0], np.cumsum(mask.sum(1))[:-1]])
    weights = None if bags.weights is None else torch.from_numpy(
        np.asarray(bags.weights)[mask].astype(np.float32))
    return (torch.from_numpy(ids[mask].astype(np.int64)), torch.from_numpy(offsets), weights)


def run(batch: int = 512, steps: int = 60, train_size: int = 100_000, seed: int = 0) -> dict:
    """Print examples/s of both and their ratio; return the figures."""
    print(f"machine: {machine()}")
    from jaxembed.train.job import world

    log = data.search_log(train_size, seed=seed, config=world())
    featurizer = SearchFeaturizer.fit(log, seed=seed)
    features = featurizer.transform(log)
    rng = np.random.default_rng(seed)
    batches = [rng.choice(len(features), batch, replace=False) for _ in range(steps + 5)]
    whole = features.batch(0, len(features))
    jax_batches = [(jax.tree.map(lambda a, r=r: a[r], whole), features.labels[r])
                   for r in batches]

    model = SearchCTR(featurizer.sizes, featurizer.num_stats, featurizer.wide_size,
                      rngs=nnx.Rngs(seed))
    trainer = OfflineTrainer(model, OfflineConfig(batch_size=batch))
    for b, y in jax_batches[:5]:
        trainer.step(b, y)
    jax.block_until_ready(trainer.tables)
    start = time.perf_counter()
    for b, y in jax_batches[5:]:
        loss = trainer.step(b, y)
    jax.block_until_ready(loss)
    ours = steps * batch / (time.perf_counter() - start)
    print(f"jaxembed SearchCTR offline step: {ours:,.0f} examples/s (batch {batch})")

    peer = None
    try:
        import torch
    except ImportError:
        print("torch not installed: no peer (pip install -e '.[bench]')")
    else:
        torch.set_num_threads(os.cpu_count() or 1)
        twin = _torch_twin(torch, featurizer.sizes, featurizer.num_stats, featurizer.wide_size)
        sparse = [*twin.embed.parameters(), *twin.wide.parameters()]
        sparse_ids = {id(p) for p in sparse}
        dense = [p for p in twin.parameters() if id(p) not in sparse_ids]
        optimizers = [torch.optim.Adagrad(sparse, lr=0.1), torch.optim.Adam(dense, lr=2e-3)]
        loss_fn = torch.nn.BCEWithLogitsLoss()

        def torch_batch(b):
            out = {d: _torch_bags(torch, b[d]) for d in featurizer.sizes}
            out["wide"] = _torch_bags(torch, b["wide"])
            out["stats"] = torch.from_numpy(np.asarray(b["stats"]))
            return out

        torch_batches = [(torch_batch(b), torch.from_numpy(np.asarray(y))) for b, y in
                         jax_batches]

        def torch_step(b, y):
            for opt in optimizers:
                opt.zero_grad()
            loss = loss_fn(twin(b), y)
            loss.backward()
            for opt in optimizers:
                opt.step()

        for b, y in torch_batches[:5]:
            torch_step(b, y)
        start = time.perf_counter()
        for b, y in torch_batches[5:]:
            torch_step(b, y)
        peer = steps * batch / (time.perf_counter() - start)
        print(f"PyTorch twin (EmbeddingBag sparse=True, Adagrad + Adam): {peer:,.0f} examples/s")
        print(f"jaxembed / PyTorch examples/s: {ours / peer:.2f} (above 1: jaxembed is faster)")
    return {"jaxembed_examples_per_s": ours, "torch_examples_per_s": peer}
