r"""Proofs for LINE and SDNE (jaxembed.graph.line, jaxembed.graph.sdne).

Equations proven (each test names its own):

* LINE per-edge loss :math:`\ell = -\log\sigma(u^\top t_0) - \sum_{k\ge1}\log\sigma(-u^\top t_k)`
  and its analytic gradients :math:`\partial\ell/\partial u = \sum_k g_k t_k`,
  :math:`\partial\ell/\partial t_k = g_k u`, :math:`g_0 = \sigma(x_0) - 1`,
  :math:`g_k = \sigma(x_k)`;
* a batched LINE step equals a literal per-edge loop of SGD updates from the old rows,
  duplicates adding up;
* the noise distribution :math:`P_n(v) = d_v^{3/4} / \sum_u d_u^{3/4}`;
* an alias table's implied distribution :math:`\frac1n(\mathrm{prob}_v + \sum_{a_i = v}
  (1 - \mathrm{prob}_i)) = w_v / \sum w`;
* the SDNE loss :math:`\sum_i \lVert(\hat s_i - s_i)\odot b_i\rVert^2 + \alpha\sum_{ij}
  s_{ij}\lVert y_i - y_j\rVert^2 + \tfrac{\nu}{2}\sum_k(\lVert W^{(k)}\rVert_F^2 +
  \lVert\hat W^{(k)}\rVert_F^2)` equals a literal numpy transcription (value, and gradient
  against central differences of the float64 transcription);
* SDNE's device-built adjacency rows equal the dense adjacency matrix.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

from jaxembed.graph.csr import Graph
from jaxembed.graph.line import (
    alias_table,
    line_edge_gradients,
    line_loss,
    line_sgd_step,
    noise_distribution,
)
from jaxembed.graph.sdne import SDNE, adjacency_rows, sdne_loss, sdne_loss_terms

# fixed shape buckets (jit compiles once per bucket, not per example)
EDGE_BUCKETS = ((1, 0, 1), (3, 1, 3), (8, 5, 8))  # (edges B, negatives K, dim d)
STEP_BUCKETS = ((1, 1, 1, 0), (5, 3, 8, 5), (16, 8, 8, 1))  # (nodes N, d, B, K)
SDNE_BUCKETS = ((2, (3,), 2), (5, (4, 2), 7), (9, (3,), 9))  # (nodes N, dims, batch slots)


@st.composite
def edge_rows(draw):
    """``(u f[B, d], t f[B, 1+K, d])`` with entries large enough to saturate the sigmoid."""
    b, k, d = draw(st.sampled_from(EDGE_BUCKETS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([0.1, 1.0, 3.0]))
    u = rng.normal(0, scale, (b, d)).astype(np.float32)
    t = rng.normal(0, scale, (b, 1 + k, d)).astype(np.float32)
    return u, t


@st.composite
def line_batches(draw):
    """Tables, sources and targets of one LINE step, with duplicate ids."""
    n, d, b, k = draw(st.sampled_from(STEP_BUCKETS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    pool = draw(st.integers(1, n))  # a small pool forces duplicates
    vertex = rng.normal(0, 1, (n, d)).astype(np.float32)
    context = rng.normal(0, 1, (n, d)).astype(np.float32)
    src = rng.integers(0, pool, b).astype(np.int32)
    targets = rng.integers(0, pool, (b, 1 + k)).astype(np.int32)
    return vertex, context, src, targets, draw(st.sampled_from([0.025, 0.5]))


@st.composite
def sdne_cases(draw):
    """A small weighted (possibly directed) adjacency ``S``, a model with drawn weights, and a
    batch of nodes (all of them or a shuffled subset, ``-1``-padded to the bucket's slots)."""
    n, dims, slots = draw(st.sampled_from(SDNE_BUCKETS))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    s = rng.choice([0.0, 0.0, 0.5, 1.0, 2.0], size=(n, n)).astype(np.float32)
    if draw(st.booleans()):
        s = np.triu(s, 1) + np.triu(s, 1).T  # undirected, no self-loops
    size = n if draw(st.booleans()) else draw(st.integers(1, n))
    nodes = np.full(slots, -1, np.int32)
    nodes[:size] = rng.permutation(n)[:size]
    rng.shuffle(nodes)
    graphdef, state = _model_template(n, dims)
    scale = draw(st.sampled_from([0.3, 1.0]))
    model = nnx.merge(graphdef, jax.tree.map(
        lambda x: rng.normal(0.0, scale, x.shape).astype(np.float32), state))
    alpha = draw(st.sampled_from([0.0, 0.3, 2.0]))
    beta = draw(st.sampled_from([1.0, 5.0]))
    nu = draw(st.sampled_from([0.0, 0.1]))
    return s, nodes, model, alpha, beta, nu


_line_loss = jax.jit(line_loss)
_line_grads = jax.jit(line_edge_gradients)
_line_autodiff = jax.jit(jax.grad(lambda u, t: jnp.sum(line_loss(u, t)), argnums=(0, 1)))
_line_step = jax.jit(line_sgd_step)


@functools.cache
def _model_template(n: int, dims: tuple[int, ...]) -> tuple[nnx.GraphDef, nnx.State]:
    """One SDNE per bucket; examples draw their own weights into its state."""
    return nnx.split(nnx.eval_shape(lambda: SDNE(n, dims, rngs=nnx.Rngs(0))))


@functools.partial(jax.jit, static_argnums=(0, 8))
def _fast_all(graphdef, state, rows, adj, mask, alpha, beta, nu, num_nodes):
    """(terms, plain loss, loss scaled to ``num_nodes``) in one compile per bucket."""
    model = nnx.merge(graphdef, state)
    terms = sdne_loss_terms(model, rows, adj, mask, beta)
    plain = sdne_loss(model, rows, adj, mask, alpha=alpha, beta=beta, nu=nu)
    scaled = sdne_loss(model, rows, adj, mask, alpha=alpha, beta=beta, nu=nu,
                       num_nodes=num_nodes)
    return terms, plain, scaled


def _loss(graphdef, state, rows, adj, mask, alpha, beta, nu):
    return sdne_loss(nnx.merge(graphdef, state), rows, adj, mask, alpha=alpha, beta=beta, nu=nu)


_fast_grad = jax.jit(jax.grad(_loss, argnums=1), static_argnums=0)


_fast_rows = jax.jit(adjacency_rows, static_argnums=(4, 5))


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


@given(edge_rows())
def test_line_edge_gradients_are_the_derivative_of_the_loss(case):
    """∂ℓ/∂u = Σ_k g_k t_k and ∂ℓ/∂t_k = g_k u with g_0 = σ(x_0) − 1, g_k = σ(x_k); ℓ itself
    equals −log σ(x_0) − Σ_{k≥1} log σ(−x_k) (numpy float64 literal)."""
    u, t = case
    u64, t64 = u.astype(np.float64), t.astype(np.float64)
    x = np.einsum("bd,bkd->bk", u64, t64)
    literal_loss = -np.log(_sigmoid(x[:, 0])) - np.sum(np.log(_sigmoid(-x[:, 1:])), axis=1)
    np.testing.assert_allclose(_line_loss(u, t), literal_loss, rtol=1e-5, atol=1e-5)

    g = _sigmoid(x)
    g[:, 0] -= 1.0
    literal_gu = np.einsum("bk,bkd->bd", g, t64)
    literal_gt = g[:, :, None] * u64[:, None, :]
    grad_u, grad_t = _line_grads(u, t)
    np.testing.assert_allclose(grad_u, literal_gu, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_t, literal_gt, rtol=1e-5, atol=1e-6)

    auto_u, auto_t = _line_autodiff(u, t)
    np.testing.assert_allclose(grad_u, auto_u, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad_t, auto_t, rtol=1e-5, atol=1e-6)


@given(line_batches(), st.sampled_from(["first", "second"]))
def test_line_step_equals_literal_per_edge_loop(case, order):
    """A batched step equals Σ over edges of −lr·∂ℓ/∂(row), every gradient taken at the rows
    before the step (duplicate ids add up); first order updates one table, second order
    the vertex table at the sources and the context table at the targets."""
    vertex, context, src, targets, lr = case
    first = order == "first"
    new_v, new_c = _line_step(vertex, None if first else context, src, targets, lr)
    v0, c0 = vertex.astype(np.float64), context.astype(np.float64)
    dv, dc = np.zeros_like(v0), np.zeros_like(c0)
    for b in range(src.shape[0]):
        u = v0[src[b]]
        for k, j in enumerate(targets[b]):
            t = v0[j] if first else c0[j]
            g = _sigmoid(u @ t) - (1.0 if k == 0 else 0.0)
            dv[src[b]] -= lr * g * t
            if first:
                dv[j] -= lr * g * u
            else:
                dc[j] -= lr * g * u
    np.testing.assert_allclose(new_v, v0 + dv, rtol=1e-5, atol=1e-5)
    if first:
        assert new_c is None
    else:
        np.testing.assert_allclose(new_c, c0 + dc, rtol=1e-5, atol=1e-5)


@given(st.lists(st.sampled_from([0.0, 1.0, 2.0, 3.5, 1e-3, 1e4]), min_size=1, max_size=20)
       .filter(lambda d: sum(d) > 0), st.sampled_from([0.75, 1.0, 0.5]))
def test_noise_distribution_is_normalized_degree_power(degrees, power):
    """P_n(v) = d_v^p / Σ_u d_u^p (p = 3/4 in LINE), sums to 1, zero for isolated nodes."""
    p = noise_distribution(degrees, power)
    d = np.asarray(degrees, dtype=np.float64)
    literal = np.array([x**power if x > 0 else 0.0 for x in d])
    literal /= literal.sum()
    np.testing.assert_allclose(p, literal, rtol=1e-12, atol=0)
    assert abs(p.sum() - 1.0) < 1e-12
    assert np.all(p[d == 0] == 0)


@given(st.lists(st.sampled_from([0.0, 1.0, 1.0, 2.0, 0.25, 7.0, 1e-6, 300.0]), min_size=1,
                max_size=40).filter(lambda w: sum(w) > 0))
def test_alias_table_implied_distribution_equals_weights(weights):
    """(1/n)(prob_v + Σ_{i: alias_i = v} (1 − prob_i)) = w_v / Σ w, with prob ∈ [0, 1]."""
    prob, alias = alias_table(weights)
    w = np.asarray(weights, dtype=np.float64)
    n = w.shape[0]
    assert prob.shape == alias.shape == (n,)
    assert np.all((prob >= 0) & (prob <= 1)) and np.all((alias >= 0) & (alias < n))
    implied = prob.copy()
    np.add.at(implied, alias, 1.0 - prob)
    np.testing.assert_allclose(implied / n, w / w.sum(), rtol=1e-9, atol=1e-12)


def _literal_sdne(s, nodes, kernels, biases, alpha, beta, nu):
    """The paper's loss over the batch's nodes, transcribed literally in float64."""
    batch = [int(i) for i in nodes if i >= 0]
    y, s_hat = {}, {}
    n_enc = len(kernels) // 2
    for i in batch:
        h = s[i]
        for w, b in zip(kernels[:n_enc], biases[:n_enc], strict=True):
            h = _sigmoid(h @ w + b)
        y[i] = h
        for w, b in zip(kernels[n_enc:], biases[n_enc:], strict=True):
            h = _sigmoid(h @ w + b)
        s_hat[i] = h
    l2nd = 0.0
    for i in batch:
        b = np.array([beta if s[i, j] > 0 else 1.0 for j in range(s.shape[1])])
        l2nd += np.sum(((s_hat[i] - s[i]) * b) ** 2)
    l1st = 0.0
    for i in batch:
        for j in batch:
            l1st += s[i, j] * np.sum((y[i] - y[j]) ** 2)
    lreg = 0.5 * sum(np.sum(w**2) for w in kernels)
    return l2nd, l1st, lreg, l2nd + alpha * l1st + nu * lreg


def _batch_inputs(s, nodes):
    rows = np.where(nodes[:, None] >= 0, s[np.maximum(nodes, 0)], 0.0).astype(np.float32)
    adj = rows[:, np.maximum(nodes, 0)]
    mask = (nodes >= 0).astype(np.float32)
    return rows, adj, mask


def _params64(model):
    layers = [*model.encoder, *model.decoder]
    return ([np.asarray(layer.kernel[...], np.float64) for layer in layers],
            [np.asarray(layer.bias[...], np.float64) for layer in layers])


@given(sdne_cases())
def test_sdne_loss_equals_paper_formula(case):
    """L = Σ_i ‖(ŝ_i − s_i) ⊙ b_i‖² + α Σ_ij s_ij ‖y_i − y_j‖² + ν·½ Σ_k ‖W⁽ᵏ⁾‖² over the
    batch's nodes (b_ij = β if s_ij > 0 else 1; padding slots ignored), against a literal
    float64 loop; with ``num_nodes`` and the whole graph in the batch the scaled loss is the
    same number."""
    s, nodes, model, alpha, beta, nu = case
    rows, adj, mask = _batch_inputs(s, nodes)
    kernels, biases = _params64(model)
    l2nd, l1st, lreg, total = _literal_sdne(s.astype(np.float64), nodes, kernels, biases,
                                            alpha, beta, nu)
    graphdef, state = nnx.split(model)
    n, b = s.shape[0], int(mask.sum())
    terms, loss, scaled = _fast_all(graphdef, state, rows, adj, mask, alpha, beta, nu, n)
    for got, want in zip(terms, (l2nd, l1st, lreg), strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-5, atol=1e-5)
    np.testing.assert_allclose(loss, total, rtol=2e-5, atol=1e-5)
    want = (n / b) * l2nd + (alpha * n * (n - 1) / (b * (b - 1)) * l1st if b > 1 else 0.0) \
        + nu * lreg
    np.testing.assert_allclose(scaled, want, rtol=2e-5, atol=1e-5)


@given(sdne_cases(), st.integers(0, 2**32 - 1))
def test_sdne_gradient_matches_central_differences(case, seed):
    """⟨∇L, v⟩ from jax.grad of the fast loss equals (L(θ + hv) − L(θ − hv)) / 2h of the
    literal float64 transcription, for a random direction v over every kernel and bias."""
    s, nodes, model, alpha, beta, nu = case
    rows, adj, mask = _batch_inputs(s, nodes)
    graphdef, params = nnx.split(model)
    grads = _fast_grad(graphdef, params, rows, adj, mask, alpha, beta, nu)
    g_kernels, g_biases = _params64(nnx.merge(graphdef, grads))
    kernels, biases = _params64(model)
    rng = np.random.default_rng(seed)
    v_k = [rng.normal(size=w.shape) for w in kernels]
    v_b = [rng.normal(size=b.shape) for b in biases]
    h = 1e-6

    def at(sign):
        ks = [w + sign * h * v for w, v in zip(kernels, v_k, strict=True)]
        bs = [b + sign * h * v for b, v in zip(biases, v_b, strict=True)]
        return _literal_sdne(s.astype(np.float64), nodes, ks, bs, alpha, beta, nu)[3]

    numeric = (at(1.0) - at(-1.0)) / (2 * h)
    analytic = sum(np.sum(g * v) for g, v in zip(g_kernels + g_biases, v_k + v_b, strict=True))
    np.testing.assert_allclose(analytic, numeric, rtol=2e-3, atol=2e-3)


@given(sdne_cases())
def test_adjacency_rows_equal_dense_adjacency(case):
    """adjacency_rows(csr, nodes)[a] = S[nodes[a]] (a zero row for padding −1)."""
    s, nodes, *_ = case
    n = s.shape[0]
    src, dst = np.nonzero(s)
    graph = Graph.from_edges(src, dst, s[src, dst], num_nodes=n, directed=True)
    # arcs padded to n² and max_degree = n (a bound on every degree) keep one compile per
    # bucket; indptr never points into the padding
    pad = n * n - graph.num_arcs
    indices = np.pad(np.asarray(graph.indices), (0, pad))
    weights = np.pad(np.asarray(graph.weights), (0, pad), constant_values=np.nan)
    rows = _fast_rows(graph.indptr, indices, weights, nodes, n, n)
    np.testing.assert_array_equal(rows, _batch_inputs(s, nodes)[0])
