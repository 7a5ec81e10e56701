r"""DCN-V2's cross network: a polynomial of degree :math:`L + 1`, low rank is
:math:`W = U V^\top`, and the batched layer is its explicit loop.

* The cross layer :math:`x_{l+1} = x_0 \odot (W_l x_l + b_l) + x_l`, written as an explicit
  loop over coordinates, :math:`x_{l+1,i} = x_{0,i} (\sum_j W_{l,ij} x_{l,j} + b_{l,i}) +
  x_{l,i}`, run with symbolic :math:`x_0`, :math:`W` and :math:`b` (sympy): each coordinate
  of :math:`x_L` is a polynomial of total degree exactly :math:`L + 1` in :math:`x_0`, and
  that polynomial evaluated at numbers equals :class:`~jaxembed.models.dcnv2.CrossNetwork`.
* The fast (batched) cross network equals the explicit loop, full rank, and low rank with a
  mixture of experts :math:`\sum_i G_i(x_l)\, x_0 \odot (U_i g(C_i g(V_i^\top x_l)) + b_l)`
  (gates :math:`G = \mathrm{softmax}(\Gamma x_l)`).
* One linear low-rank expert is the full layer with :math:`W_l = U_l V_l^\top`.
"""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import sympy as sp
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxembed.models.dcnv2 import CrossNetwork
from proofs.strategies import ANY_BATCH


def cross_loop(x0, w, b, x=None):
    """The explicit cross network over python lists (numbers or sympy symbols): ``w[l][i][j]``,
    ``b[l][i]``."""
    d = len(x0)
    x = list(x0) if x is None else list(x)
    for wl, bl in zip(w, b, strict=True):
        x = [x0[i] * (sum(wl[i][j] * x[j] for j in range(d)) + bl[i]) + x[i] for i in range(d)]
    return x


def moe_loop(x0, u, v, c, gate, b, act):
    """The low-rank mixture of experts, explicitly: per layer, expert, coordinate (numpy)."""
    x = np.array(x0, np.float64)
    layers, experts, d, r = u.shape
    for l in range(layers):
        outputs, logits = [], []
        for e in range(experts):
            h = [sum(v[l, e, j, k] * x[j] for j in range(d)) for k in range(r)]
            if act is not None:
                h = [act(sum(c[l, e, s, k] * act(h[k]) for k in range(r))) for s in range(r)]
            outputs.append([x0[i] * (sum(u[l, e, i, k] * h[k] for k in range(r)) + b[l, i])
                            for i in range(d)])
            logits.append(sum(gate[l, e, j] * x[j] for j in range(d)) if experts > 1 else 0.0)
        top = max(logits)
        gates = [math.exp(z - top) for z in logits]
        gates = [g / sum(gates) for g in gates]
        x = np.array([sum(gates[e] * outputs[e][i] for e in range(experts)) + x[i]
                      for i in range(d)])
    return x


def network(state_values: dict, width: int, layers: int, **hyper) -> CrossNetwork:
    net = CrossNetwork(width, layers, rngs=nnx.Rngs(0), **hyper)
    for name, value in state_values.items():
        getattr(net, name).value = jnp.asarray(value, jnp.float32)
    return net


def test_cross_network_is_a_polynomial_of_degree_layers_plus_one():
    d = 2
    x0 = sp.symbols(f"x0:{d}")
    rng = np.random.default_rng(0)
    for layers in (1, 2, 3):
        w = [[[sp.Symbol(f"w{l}_{i}{j}") for j in range(d)] for i in range(d)]
             for l in range(layers)]
        b = [[sp.Symbol(f"b{l}_{i}") for i in range(d)] for l in range(layers)]
        out = cross_loop(x0, w, b)
        for coordinate in out:
            assert sp.Poly(sp.expand(coordinate), *x0).total_degree() == layers + 1
        # the polynomial at numbers is the fast network
        w_num = rng.integers(-3, 4, size=(layers, d, d)) / 2
        b_num = rng.integers(-3, 4, size=(layers, d)) / 2
        x_num = rng.integers(-3, 4, size=(3, d)) / 2
        subs = {s: sp.Rational(float(val)) for s, val in zip(
            [*np.ravel(w), *np.ravel(b)], [*w_num.ravel(), *b_num.ravel()], strict=True)}
        net = network({"w": w_num, "b": b_num}, d, layers)
        fast = np.asarray(net(jnp.asarray(x_num, jnp.float32)), np.float64)
        for row, got in zip(x_num, fast, strict=True):
            point = {**subs, **{s: sp.Rational(float(val)) for s, val in zip(x0, row,
                                                                             strict=True)}}
            exact = [float(c.subs(point)) for c in out]
            np.testing.assert_allclose(got, exact, rtol=1e-5, atol=1e-5)


@settings(max_examples=8)
@given(ANY_BATCH, st.sampled_from([1, 3, 8]), st.integers(0, 3), st.integers(0, 2**31))
def test_fast_cross_is_the_explicit_loop(batch, width, layers, seed):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(layers, width, width)) / np.sqrt(width)
    b = rng.normal(size=(layers, width))
    x0 = rng.normal(size=(batch, width))
    fast = network({"w": w, "b": b}, width, layers)(jnp.asarray(x0, jnp.float32))
    for row, got in zip(x0, np.asarray(fast), strict=True):
        np.testing.assert_allclose(got, cross_loop(row, w, b), rtol=1e-4, atol=1e-4)


@settings(max_examples=8)
@given(ANY_BATCH, st.sampled_from([3, 8]), st.integers(1, 3), st.sampled_from([1, 2]),
       st.sampled_from([1, 3]), st.sampled_from([None, "tanh"]), st.integers(0, 2**31))
def test_low_rank_mixture_is_its_explicit_loop(batch, width, layers, rank, experts, act, seed):
    rng = np.random.default_rng(seed)
    p = {"u": rng.normal(size=(layers, experts, width, rank)) / np.sqrt(rank),
         "v": rng.normal(size=(layers, experts, width, rank)) / np.sqrt(width),
         "c": (rng.normal(size=(layers, experts, rank, rank)) if act
               else np.zeros((layers, experts, 0, 0))),
         "gate": (rng.normal(size=(layers, experts, width)) if experts > 1
                  else np.zeros((layers, experts, 0))),
         "b": rng.normal(size=(layers, width))}
    net = network(p, width, layers, low_rank=rank, num_experts=experts, expert_activation=act)
    x0 = rng.normal(size=(batch, width))
    fast = np.asarray(net(jnp.asarray(x0, jnp.float32)))
    for row, got in zip(x0, fast, strict=True):
        expected = moe_loop(row, p["u"], p["v"], p["c"], p["gate"], p["b"],
                            math.tanh if act else None)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    if experts == 1 and act is None:  # one linear expert is the full layer with W = U Vᵀ
        w = np.einsum("ledr,lefr->ldf", p["u"], p["v"])
        full = network({"w": w, "b": p["b"]}, width, layers)(jnp.asarray(x0, jnp.float32))
        np.testing.assert_allclose(fast, full, rtol=1e-4, atol=1e-4)
