"""Sanity check: each model of the zoo learns labels drawn from a planted factorization machine.

Not a trainer (``je.fit`` is): plain optax Adam on ``model(batch)``. Usage::

    PYTHONPATH=. python examples/zoo_sanity.py [MODEL ...]      # N=24576 rows, STEPS=600
    N=139264 STEPS=3000 PYTHONPATH=. python examples/zoo_sanity.py fm

The last 8192 rows are held out; the true logits give the Bayes AUC.
"""
import os
import sys
import time

import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from sklearn.metrics import roc_auc_score

import jaxembed as je
from jaxembed.models import registry
from jaxembed.models.inputs import FieldSpec, ModelInputs, TableSpec
from jaxembed.nn.ctr import sigmoid_cross_entropy

K = 8
inputs = ModelInputs(
    tables=(TableSpec("item", 200, K), TableSpec("user", 100, K), TableSpec("tag", 30, K)),
    fields=(FieldSpec("item", "item"), FieldSpec("user", "user"),
            FieldSpec("recent", "item", "mean", True, 4), FieldSpec("tags", "tag", "sum", True, 4)),
    num_dense=2)
rng = np.random.default_rng(0)
N = int(os.environ.get("N", 24576))
TRAIN = N - 8192
data = {"item": rng.integers(0, 200, (N, 1)), "user": rng.integers(0, 100, (N, 1)),
        "recent": np.where(rng.random((N, 4)) < 0.7, rng.integers(0, 200, (N, 4)), -1),
        "tags": np.where(rng.random((N, 4)) < 0.5, rng.integers(0, 30, (N, 4)), -1),
        "dense": rng.normal(size=(N, 2)).astype(np.float32)}
# the planted FM: K=4 true vectors per table, strong interactions
true = {t.name: rng.normal(0, 0.6, (t.rows, 4)) for t in inputs.tables}
lin = {t.name: rng.normal(0, 0.5, t.rows) for t in inputs.tables}


def pooled(f, table, combiner):
    """A field's true pooled vector and first-order term."""
    ids = data[f]
    m = ids >= 0
    safe = np.where(m, ids, 0)
    r = np.where(m[..., None], true[table][safe], 0)
    w = m.astype(float)
    if combiner == "mean":
        w = w / np.maximum(w.sum(1, keepdims=True), 1)
    return (w[..., None] * r).sum(1), (w * np.where(m, lin[table][safe], 0)).sum(1)


parts = [pooled(f.name, f.table, f.combiner) for f in inputs.fields]
vecs = [p[0] for p in parts]
z = sum(p[1] for p in parts) + 0.5 * data["dense"][:, 0]
for i in range(len(vecs)):
    for j in range(i + 1, len(vecs)):
        z += 1.5 * (vecs[i] * vecs[j]).sum(1)
z = z - z.mean()
y = (rng.random(N) < 1 / (1 + np.exp(-z))).astype(np.float32)
bayes = roc_auc_score(y[-8192:], z[-8192:])

def batch_of(idx):
    return {"item": je.Bags(data["item"][idx]), "user": je.Bags(data["user"][idx]),
            "recent": je.Bags(data["recent"][idx]), "tags": je.Bags(data["tags"][idx]),
            "dense": data["dense"][idx]}
test = batch_of(np.arange(N - 8192, N))
names = sys.argv[1:] or registry.available()
print(f"Bayes AUC (true logits) {bayes:.3f}; train {TRAIN} rows, test 8192; "
      f"{os.environ.get('STEPS', 600)} Adam steps of 256")
for name in names:
    t0 = time.time()
    model = registry.build(name, inputs, seed=0, **({"init_std": 0.1} if name != "lr" else {}))
    opt = nnx.Optimizer(model, optax.adam(3e-3), wrt=nnx.Param)
    @nnx.jit
    def step(model, opt, batch, labels):
        loss, g = nnx.value_and_grad(
            lambda m: jnp.mean(sigmoid_cross_entropy(m(batch), labels)))(model)
        opt.update(model, g)
        return loss
    order = np.random.default_rng(1).permutation(TRAIN)
    for s in range(int(os.environ.get("STEPS", 600))):
        idx = order[(s * 256) % TRAIN:(s * 256) % TRAIN + 256]
        loss = step(model, opt, batch_of(idx), jnp.asarray(y[idx]))
    p = nnx.jit(lambda m, b: m(b))(model, test)
    print(f"{name:10s} test AUC {roc_auc_score(y[-8192:], np.asarray(p)):.3f}  "
          f"last loss {float(loss):.3f}  ({time.time() - t0:.0f}s)", flush=True)
