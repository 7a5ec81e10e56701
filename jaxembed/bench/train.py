"""``jaxembed bench train``: search CTR training examples/s against a PyTorch twin.

jaxembed's training step on the one data path (:class:`~jaxembed.train.field_trainer.
FieldTrainer` for ``search_ctr`` on the search schema: lazy Adam on the embedding tables,
row-sparse FTRL on the per-id linear weights and the wide crosses, Adam on the dense layers,
one jitted step) against the same network in PyTorch — one ``nn.EmbeddingBag(mode="sum",
sparse=True)`` per field summed per behaviour domain with ``optim.SparseAdam``, one-column
sparse ``EmbeddingBag``\\ s for the per-id linear weights and the crosses with
``optim.Adagrad`` (PyTorch has no FTRL), ``optim.Adam`` on the dense layers — on the same
encoded batches, in the same run, with a real loss (binary cross-entropy on the clicks).
"""

from __future__ import annotations

import time

import jax
import numpy as np

from jaxembed import data
from jaxembed.bench.timing import machine
from jaxembed.data.encode import Encoder
from jaxembed.data.readers import record_batches
from jaxembed.data.search_schema import search_schema, search_table
from jaxembed.data.search_stats import SearchStatistics
from jaxembed.data.vocabularies import Vocabularies
from jaxembed.models import registry
from jaxembed.models.search_ctr import resolve_domains
from jaxembed.train.field_trainer import FieldTrainer, FitConfig


def _torch_twin(torch, encoder: Encoder, domains: dict[str, tuple[str, ...]]):
    nn = torch.nn
    fields = [f.name for f in encoder.embedded]
    rows = {f.name: encoder.rows(f) for f in encoder.embedded}
    num_dense = len(encoder.dense_fields)

    class Twin(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.ModuleDict({f: nn.EmbeddingBag(rows[f], 16, mode="sum",
                                                           sparse=True) for f in fields})
            self.linear = nn.ModuleDict({f: nn.EmbeddingBag(rows[f], 1, mode="sum",
                                                            sparse=True) for f in fields})
            self.wide = nn.EmbeddingBag(max(encoder.wide_size, 1), 1, mode="sum", sparse=True)
            self.behavior = nn.ModuleDict({d: nn.Sequential(nn.Linear(16, 16), nn.ReLU(),
                                                            nn.Linear(16, 32), nn.ReLU())
                                           for d in domains})
            self.prediction = nn.Sequential(nn.Linear(32 * len(domains), 64), nn.ReLU(),
                                            nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))
            self.stats = nn.Sequential(nn.Linear(num_dense, 32), nn.Tanh(), nn.Linear(32, 16),
                                       nn.Sigmoid(), nn.Linear(16, 1))

        def forward(self, batch):
            parts = [self.behavior[d](sum(self.embed[f](*batch[f]) for f in members))
                     for d, members in domains.items()]
            logit = self.prediction(torch.cat(parts, dim=1))[:, 0]
            logit = logit + sum(self.linear[f](*batch[f])[:, 0] for f in fields)
            return logit + self.wide(*batch["wide"])[:, 0] + self.stats(batch["dense"])[:, 0]

    return Twin()


def _torch_bags(torch, ids: np.ndarray):
    """(flat ids, offsets) of padded ids ``int[B, L]`` (-1 = padding): padding dropped."""
    mask = ids >= 0
    offsets = np.concatenate([[0], np.cumsum(mask.sum(1))[:-1]])
    return torch.from_numpy(ids[mask].astype(np.int64)), torch.from_numpy(offsets)


def run(batch: int = 1024, steps: int = 60, train_size: int = 100_000, seed: int = 0) -> dict:
    """Print examples/s of both and their ratio; return the figures."""
    print(f"machine: {machine()}")
    from jaxembed.train.job import world

    log = data.search_log(train_size, seed=seed, config=world())
    table = search_table(log, SearchStatistics.fit(log))
    schema = search_schema()
    vocabularies = Vocabularies.build(record_batches(table, schema), schema, seed=seed)
    encoder = Encoder(schema, vocabularies, seed=seed)
    parts = [encoder.encode(b) for b in record_batches(table, schema)]
    chunk = {k: np.concatenate([p[k] for p in parts]) for k in parts[0] if k != "group"}
    chunk["mask"] = np.ones(table.num_rows, np.float32)
    rng = np.random.default_rng(seed)
    picks = [rng.choice(table.num_rows, batch, replace=False) for _ in range(steps + 5)]
    batches = [{k: v[r] for k, v in chunk.items()} for r in picks]

    model = registry.build("search_ctr", encoder.inputs, seed=seed)
    trainer = FieldTrainer(model, FitConfig(batch_size=batch, seed=seed))
    for b in batches[:5]:
        trainer.step(b)
    jax.block_until_ready(trainer.tables)
    start = time.perf_counter()
    for b in batches[5:]:
        loss = trainer.step(b)
    jax.block_until_ready(loss)
    ours = steps * batch / (time.perf_counter() - start)
    print(f"jaxembed search_ctr training step: {ours:,.0f} examples/s (batch {batch})")

    peer = None
    try:
        import torch
    except ImportError:
        print("torch not installed: no peer (pip install -e '.[bench]')")
    else:
        # one intra-op thread, as in ``bench models``: on a shared 2-core machine two
        # spinning threads run many times slower than one
        torch.set_num_threads(1)
        domains = resolve_domains(encoder.inputs, schema.options.domains)
        twin = _torch_twin(torch, encoder, domains)
        embed = list(twin.embed.parameters())
        linear = [*twin.linear.parameters(), *twin.wide.parameters()]
        sparse_ids = {id(p) for p in embed + linear}
        dense = [p for p in twin.parameters() if id(p) not in sparse_ids]
        optimizers = [torch.optim.SparseAdam(embed, lr=1e-3),
                      torch.optim.Adagrad(linear, lr=0.1), torch.optim.Adam(dense, lr=3e-3)]
        loss_fn = torch.nn.BCEWithLogitsLoss()

        def torch_batch(b):
            out = {f.name: _torch_bags(torch, b[f"ids/{f.name}"]) for f in encoder.embedded}
            out["wide"] = _torch_bags(torch, b["wide"])
            out["dense"] = torch.from_numpy(np.asarray(b["dense"], np.float32))
            return out, torch.from_numpy(np.asarray(b["label"], np.float32))

        torch_batches = [torch_batch(b) for b in batches]

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
        print(f"PyTorch twin (EmbeddingBag sparse=True, SparseAdam + Adagrad + Adam): "
              f"{peer:,.0f} examples/s")
        print(f"jaxembed / PyTorch examples/s: {ours / peer:.2f} (above 1: jaxembed is faster)")
    return {"jaxembed_examples_per_s": ours, "torch_examples_per_s": peer}
