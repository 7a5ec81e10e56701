r"""Tweet2Vec: a character-level CNN-LSTM encoder-decoder that embeds short noisy texts.

A text becomes codes :math:`c_0 \dots c_{T-1}` (:class:`CharCodec`: ``0`` = padding after the
text, ``1`` = a character outside the alphabet, ``2..`` = the alphabet, lower-cased, cut at
``max_length``). The encoder is

.. math::

    x = \mathrm{onehot}(c) \in \{0,1\}^{T \times V} \;\to\;
    \mathrm{conv}_{w_1} \to \mathrm{relu} \to \mathrm{maxpool}_{p_1} \to \dots \to
    \mathrm{conv}_{w_4} \to \mathrm{relu} \to \mathrm{pool}_{p_4}
    \;\to\; \mathrm{LSTM}_{H} \;\to\; h_{\mathrm{last}} \in \mathbb{R}^H,

and :math:`h_{\mathrm{last}}` is the text's embedding. The decoder repeats it over the ``T``
output positions, runs two LSTMs and a per-position softmax over the ``V`` symbols, and is
trained to reconstruct the input (cross-entropy over the text's characters and the first
padding position, which marks the end), with Adam.

**The first convolution is a gather.** A convolution of a one-hot input with kernel
:math:`K \in \mathbb{R}^{w \times V \times F}` is, at output position :math:`t`,

.. math::

    \mathrm{conv}(x, K)[t] = \sum_{d=0}^{w-1} x_{t+d} K[d]
                          = \sum_{d=0}^{w-1} K[d, c_{t+d}, :] \;(+\,b),

the sum of :math:`w` kernel rows picked by the characters — one bag of :math:`w` ids
:math:`d \cdot V + c_{t+d}` into the table ``K.reshape(w·V, F)``, i.e.
:func:`jaxembed.bag_lookup` with ``combiner="sum"``. A zero one-hot row (the zero padding of
``"SAME"``) is an empty slot, id ``-1``. :func:`char_conv` is that gather (the model's first
layer); :func:`char_conv_literal` is ``nnx.Conv`` applied to the one-hot matrix;
``proofs/proof_tweet2vec.py`` proves them equal in value and in gradient w.r.t. the kernel.
The gather reads :math:`w F` numbers per position instead of multiplying :math:`w V F`.

**Augmentation** (:func:`synonym_swap`): with a user-supplied synonym dictionary, each word
found in it is replaced, with probability ``rate``, by one of its synonyms; the coin and the
choice come from a stable hash of (seed, variant, text, word position), so the same call gives
the same texts on every run. :meth:`Tweet2Vec.fit` with ``augment=n`` adds ``n`` swapped
copies of each text as inputs whose target is the original text (a denoising variant that
pulls synonymous texts towards one code).

References:
    Vosoughi, Vijayaraghavan, Roy. "Tweet2Vec: Learning Tweet Embeddings Using Character-level
    CNN-LSTM Encoder-Decoder." SIGIR 2016.
    Zhang, Zhao, LeCun. "Character-level Convolutional Networks for Text Classification."
    NeurIPS 2015 (the one-hot character input and alphabet).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from jaxembed._validate import text_list
from jaxembed.bags import Bags
from jaxembed.encoding.hashing import hash_strings
from jaxembed.lookup import bag_lookup
from jaxembed.text._params_io import load_params, read_config, save_module
from jaxembed.text._progress import training_bar

__all__ = [
    "DEFAULT_ALPHABET",
    "PAD",
    "UNK",
    "CharCodec",
    "Tweet2Vec",
    "char_conv",
    "char_conv_literal",
    "synonym_swap",
]

DEFAULT_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789 -,;.!?:'\"/\\|_@#$%^&*~`+=<>()[]{}"
"""69 symbols: lower-case letters, digits, space and punctuation (Zhang et al.'s alphabet)."""
PAD = 0
"""The code of a position after the end of the text."""
UNK = 1
"""The code of a character outside the alphabet."""
PADDINGS = ("VALID", "SAME")


@dataclasses.dataclass(frozen=True)
class CharCodec:
    """Texts to character codes and back.

    Args:
        alphabet: the known characters (distinct); code ``2 + i`` is ``alphabet[i]``.
        max_length: ``T``, the fixed number of positions (longer texts are cut).
        lowercase: lower-case texts first.
    """

    alphabet: str = DEFAULT_ALPHABET
    max_length: int = 150
    lowercase: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.alphabet, str) or not self.alphabet:
            raise ValueError(f"alphabet must be a non-empty str, got {self.alphabet!r}")
        seen = {ch for ch in self.alphabet}
        if len(seen) != len(self.alphabet):
            dup = next(ch for i, ch in enumerate(self.alphabet) if ch in self.alphabet[:i])
            raise ValueError(f"alphabet repeats the character {dup!r}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int) \
                or self.max_length < 1:
            raise ValueError(f"max_length must be a positive int, got {self.max_length!r}")

    @property
    def num_symbols(self) -> int:
        """``V = len(alphabet) + 2`` (padding and unknown)."""
        return len(self.alphabet) + 2

    def _table(self) -> np.ndarray:
        points = np.frombuffer(self.alphabet.encode("utf-32-le"), dtype="<u4")
        table = np.full(int(points.max()) + 1, UNK, dtype=np.int32)
        table[points] = np.arange(2, 2 + len(points), dtype=np.int32)
        return table

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(codes int32[N, T], lengths int32[N])`` (``lengths`` after cutting at ``T``)."""
        texts = text_list(texts, "texts")
        table = self._table()
        codes = np.zeros((len(texts), self.max_length), dtype=np.int32)
        lengths = np.zeros(len(texts), dtype=np.int32)
        for i, text in enumerate(texts):
            text = (text.lower() if self.lowercase else text)[: self.max_length]
            points = np.frombuffer(text.encode("utf-32-le"), dtype="<u4")
            known = points < len(table)
            codes[i, : len(points)] = np.where(known, table[np.where(known, points, 0)], UNK)
            lengths[i] = len(points)
        return codes, lengths

    def decode(self, codes: Any, unknown: str = "\ufffd") -> list[str]:
        """Texts from codes ``int[N, T]``: each stops at its first padding code."""
        codes = np.asarray(codes)
        if codes.ndim != 2:
            raise ValueError(f"codes must be 2-D [N, T], got shape {codes.shape}")
        symbols = np.array(["", unknown, *self.alphabet], dtype=object)
        out = []
        for row in codes:
            if row.min(initial=0) < 0 or row.max(initial=0) >= self.num_symbols:
                raise IndexError(f"code outside [0, {self.num_symbols}) in {row.tolist()}")
            end = np.flatnonzero(row == PAD)
            out.append("".join(symbols[row[: end[0] if end.size else len(row)]]))
        return out


# --- the first layer: a convolution of one-hot characters ---------------------------------------
def _check_padding(padding: str) -> None:
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")


def char_conv(codes: jax.Array, kernel: jax.Array, bias: jax.Array | None = None,
              padding: str = "VALID") -> jax.Array:
    """``conv(onehot(codes), kernel)[b, t] = Σ_d kernel[d, codes[b, t+d]] (+ bias)``, a gather.

    ``codes int[B, T]`` in ``[-1, V)`` (``-1``: a zero one-hot row), ``kernel f[w, V, F]`` as
    ``nnx.Conv`` stores it. ``"VALID"`` gives ``T - w + 1`` positions; ``"SAME"`` pads
    ``(w-1)//2`` zero rows in front and the rest behind (as ``lax.conv``) and gives ``T``.
    """
    _check_padding(padding)
    w, v, f = kernel.shape
    if padding == "SAME":
        left = (w - 1) // 2
        codes = jnp.pad(codes, ((0, 0), (left, w - 1 - left)), constant_values=-1)
    batch, length = codes.shape
    out_len = length - w + 1
    if out_len < 1:
        raise ValueError(f"{length} positions are fewer than the kernel width {w}")
    windows = jnp.stack([codes[:, d: d + out_len] for d in range(w)], axis=-1)
    ids = jnp.where(windows >= 0, windows + v * jnp.arange(w, dtype=windows.dtype), -1)
    rows = bag_lookup(kernel.reshape(w * v, f), Bags(ids.reshape(batch * out_len, w)),
                      combiner="sum")
    out = rows.reshape(batch, out_len, f)
    return out if bias is None else out + bias


def char_conv_literal(codes: jax.Array, conv: nnx.Conv) -> jax.Array:
    """The reference: ``conv(one_hot(codes))`` with the ``nnx.Conv`` layer itself."""
    return conv(jax.nn.one_hot(codes, conv.in_features, dtype=conv.kernel[...].dtype))


# --- augmentation --------------------------------------------------------------------------------
_WORD = re.compile(r"\w+(?:'\w+)?")


def _check_synonyms(synonyms: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    if not isinstance(synonyms, Mapping):
        raise TypeError(f"synonyms must be a mapping word -> synonyms, got "
                        f"{type(synonyms).__name__}")
    out = {}
    for word, alternatives in synonyms.items():
        if not isinstance(word, str) or isinstance(alternatives, str):
            raise TypeError(f"synonyms[{word!r}] must map a str to a list of str")
        alternatives = list(alternatives)
        if not alternatives or not all(isinstance(a, str) for a in alternatives):
            raise ValueError(f"synonyms[{word!r}] must be a non-empty list of str, got "
                             f"{alternatives!r}")
        out[word.lower()] = alternatives
    return out


def synonym_swap(texts: Sequence[str], synonyms: Mapping[str, Sequence[str]], *,
                 rate: float = 1.0, variant: int = 0, seed: int = 0) -> list[str]:
    """Each word of ``synonyms`` (matched case-insensitively) replaced, with probability
    ``rate``, by one of its synonyms; deterministic in (seed, variant, text, word position).

    With ``h = hash_strings(f"{variant}|{position}|{text}", seed)``, the word is swapped when
    ``(h >> 32) / 2**32 < rate`` and its replacement is ``synonyms[word][h % len]``.
    """
    texts = text_list(texts, "texts")
    table = _check_synonyms(synonyms)
    if not 0.0 <= rate <= 1.0:
        raise ValueError(f"rate must be in [0, 1], got {rate!r}")
    found = [[m for m in _WORD.finditer(t) if m.group().lower() in table] for t in texts]
    keys = [f"{variant}|{m.start()}|{t}" for t, ms in zip(texts, found, strict=True) for m in ms]
    hashes = iter(hash_strings(keys, seed).tolist() if keys else [])
    out = []
    for text, matches in zip(texts, found, strict=True):
        pieces, last = [], 0
        for m in matches:
            h = next(hashes)
            if (h >> 32) / 2.0**32 < rate:
                options = table[m.group().lower()]
                pieces += [text[last: m.start()], options[h % len(options)]]
                last = m.end()
        out.append("".join([*pieces, text[last:]]))
    return out


# --- the model -----------------------------------------------------------------------------------
def _int_at_least(value: Any, what: str, lowest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < lowest:
        raise ValueError(f"{what} must be an int >= {lowest}, got {value!r}")
    return int(value)


def _positive_ints(values: Any, what: str, count: int | None = None) -> tuple[int, ...]:
    values = tuple(values)
    if not values or any(isinstance(v, bool) or not isinstance(v, int) or v < 1
                         for v in values):
        raise ValueError(f"{what} must be positive integers, got {values!r}")
    if count is not None and len(values) != count:
        raise ValueError(f"{what} must have {count} entries (one per conv layer), got {values!r}")
    return values


def _zero_carry(batch: int, size: int) -> tuple[jax.Array, jax.Array]:
    """The LSTM's initial (cell, hidden) state: zeros."""
    zeros = jnp.zeros((batch, size), jnp.float32)
    return zeros, zeros


@functools.lru_cache(maxsize=8)
def _optimizer(learning_rate: float) -> optax.GradientTransformation:
    """Adam after clipping the gradient's global norm to 1 (one object per rate, so that the
    jitted step is reused across models of one shape)."""
    return optax.chain(optax.clip_by_global_norm(1.0), optax.adam(learning_rate))


@functools.partial(jax.jit, static_argnums=(0, 1))
def _train_step(graphdef: Any, tx: optax.GradientTransformation, params: Any, opt_state: Any,
                inputs: jax.Array, targets: jax.Array, mask: jax.Array):
    """One Adam step on the masked mean cross-entropy of the reconstruction."""
    def loss_fn(p: Any) -> jax.Array:
        logits = nnx.merge(graphdef, p)(inputs)
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, targets)
        return jnp.sum(ce * mask) / jnp.maximum(jnp.sum(mask), 1.0)

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


@functools.partial(jax.jit, static_argnums=(0, 3))
def _apply(graphdef: Any, params: Any, codes: jax.Array, output: str) -> jax.Array:
    """``"embed"``: the embeddings; ``"argmax"``: the reconstructed codes."""
    model = nnx.merge(graphdef, params)
    return model.embed(codes) if output == "embed" else jnp.argmax(model(codes), axis=-1)


class Tweet2Vec(nnx.Module):
    """The CNN-LSTM encoder-decoder (defaults: the paper's sizes).

    Args:
        alphabet: the characters of the :class:`CharCodec` (others map to its unknown code).
        max_length: characters kept per text (the codec's length).
        lowercase: whether the codec lowercases texts first.
        filters: output channels of each convolution.
        kernel_sizes: width of each convolution (one per entry of ``filters``).
        pool_sizes: max-pool window and stride after each convolution (1: none).
        padding: ``"VALID"`` (the paper's) or ``"SAME"`` for every convolution.
        encoder_size: ``H``, the LSTM encoder's state and the embedding size.
        decoder_sizes: the decoder LSTMs' sizes.
        rngs: parameter initialisation.
    """

    def __init__(self, *, alphabet: str = DEFAULT_ALPHABET, max_length: int = 150,
                 lowercase: bool = True, filters: Sequence[int] = (256, 256, 256, 256),
                 kernel_sizes: Sequence[int] = (7, 7, 3, 3),
                 pool_sizes: Sequence[int] = (3, 3, 1, 1), padding: str = "VALID",
                 encoder_size: int = 256, decoder_sizes: Sequence[int] = (128, 128),
                 rngs: nnx.Rngs) -> None:
        self.codec = CharCodec(alphabet, max_length, lowercase)
        filters = _positive_ints(filters, "filters")
        kernel_sizes = _positive_ints(kernel_sizes, "kernel_sizes", len(filters))
        pool_sizes = _positive_ints(pool_sizes, "pool_sizes", len(filters))
        (encoder_size,) = _positive_ints([encoder_size], "encoder_size")
        decoder_sizes = _positive_ints(decoder_sizes, "decoder_sizes")
        _check_padding(padding)
        length = max_length
        for i, (w, p) in enumerate(zip(kernel_sizes, pool_sizes, strict=True)):
            length = (length - w + 1 if padding == "VALID" else length) // p
            if length < 1:
                raise ValueError(f"max_length={max_length} leaves no position after conv layer "
                                 f"{i} (kernel_sizes={kernel_sizes}, pool_sizes={pool_sizes}, "
                                 f"padding={padding!r}); use a longer max_length or 'SAME'")
        self.config = (("alphabet", alphabet), ("max_length", max_length),
                       ("lowercase", lowercase), ("filters", filters),
                       ("kernel_sizes", kernel_sizes), ("pool_sizes", pool_sizes),
                       ("padding", padding), ("encoder_size", encoder_size),
                       ("decoder_sizes", decoder_sizes))
        """The constructor's arguments, as hashable ``(name, value)`` pairs."""
        self.pool_sizes = pool_sizes
        self.padding = padding
        sizes = (self.codec.num_symbols, *filters)
        self.convs = nnx.List([nnx.Conv(sizes[i], sizes[i + 1], kernel_sizes[i], padding=padding,
                                        rngs=rngs) for i in range(len(filters))])
        self.encoder = nnx.RNN(nnx.OptimizedLSTMCell(filters[-1], encoder_size, rngs=rngs),
                               return_carry=True, rngs=False)
        dec = (encoder_size, *decoder_sizes)
        self.decoders = nnx.List([nnx.RNN(nnx.OptimizedLSTMCell(dec[i], dec[i + 1], rngs=rngs),
                                          rngs=False) for i in range(len(decoder_sizes))])
        self.readout = nnx.Linear(dec[-1], self.codec.num_symbols, rngs=rngs)

    @property
    def embedding_size(self) -> int:
        """``H``, the size of :meth:`encode`'s vectors."""
        return int(dict(self.config)["encoder_size"])

    def features(self, codes: jax.Array, *, literal: bool = False) -> jax.Array:
        """The convolution stack's output ``f[B, T', filters[-1]]``. The first layer is the
        gather :func:`char_conv`; ``literal=True`` runs ``nnx.Conv`` on the one-hot matrix
        instead (:func:`char_conv_literal`, the reference the proof compares with)."""
        first = self.convs[0]
        if literal:
            x = char_conv_literal(codes, first)
        else:
            x = char_conv(codes, first.kernel[...], first.bias[...], self.padding)
        for i, conv in enumerate(self.convs):
            if i:
                x = conv(x)
            x = jax.nn.relu(x)
            p = self.pool_sizes[i]
            if p > 1:
                x = nnx.max_pool(x, (p,), strides=(p,), padding="VALID")
        return x

    def embed(self, codes: jax.Array, *, literal: bool = False) -> jax.Array:
        """``h_last f[B, H]``: the encoder LSTM's last hidden state (the text embedding)."""
        x = self.features(codes, literal=literal)
        (_, hidden), _ = self.encoder(x, initial_carry=_zero_carry(x.shape[0], self.embedding_size))
        return hidden

    def __call__(self, codes: jax.Array) -> jax.Array:
        """Reconstruction logits ``f[B, T, V]``."""
        h = self.embed(codes)
        x = jnp.broadcast_to(h[:, None, :], (h.shape[0], codes.shape[1], h.shape[1]))
        for decoder in self.decoders:
            x = decoder(x, initial_carry=_zero_carry(x.shape[0], decoder.cell.hidden_features))
        return self.readout(x)

    # --- training and use ------------------------------------------------------------------------
    def fit(self, texts: Sequence[str], key: jax.Array, epochs: int = 10, batch_size: int = 64,
            *, learning_rate: float = 1e-3, synonyms: Mapping[str, Sequence[str]] | None = None,
            augment: int = 0, progress: bool = False) -> list[float]:
        """Train to reconstruct ``texts`` (Adam, gradients clipped to global norm 1); return
        the mean loss of each epoch. ``key`` shuffles the batches. With ``synonyms`` and
        ``augment=n``, ``n`` :func:`synonym_swap` variants of each text join as inputs whose
        target is the original."""
        texts = text_list(texts, "texts")
        _int_at_least(epochs, "epochs", 0)
        _int_at_least(batch_size, "batch_size", 1)
        _int_at_least(augment, "augment", 0)
        if not texts:
            raise ValueError("fit needs at least one text")
        if augment and synonyms is None:
            raise ValueError("augment > 0 needs a synonyms dictionary")
        targets, lengths = self.codec.encode(texts)
        inputs = [targets]
        for v in range(augment):
            inputs.append(self.codec.encode(synonym_swap(texts, synonyms, variant=v))[0])
        inputs_np = np.concatenate(inputs)
        n = len(inputs_np)
        source = np.tile(np.arange(len(texts)), augment + 1)
        positions = np.arange(self.codec.max_length)
        mask_np = (positions[None, :] <= lengths[:, None]).astype(np.float32)
        batch = min(batch_size, n)
        steps = -(-n // batch)
        graphdef, params = nnx.split(self, nnx.Param)
        tx = _optimizer(float(learning_rate))
        opt_state = tx.init(params)
        history = []
        with training_bar("tweet2vec", epochs * steps, progress) as update:
            for epoch in range(epochs):
                order = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), n))
                order = np.concatenate([order, np.full(steps * batch - n, -1)])
                total = 0.0
                for s in range(steps):
                    rows = order[s * batch: (s + 1) * batch]
                    keep = rows >= 0
                    rows = np.where(keep, rows, 0)
                    m = mask_np[source[rows]] * keep[:, None]
                    params, opt_state, loss = _train_step(graphdef, tx, params, opt_state,
                                                          inputs_np[rows],
                                                          targets[source[rows]], m)
                    value = float(loss)
                    total += value
                    update(epoch * steps + s + 1, value)
                history.append(total / steps)
        nnx.update(self, params)
        return history

    def _batched(self, texts: Sequence[str], output: str, batch_size: int) -> np.ndarray:
        codes, _ = self.codec.encode(texts)
        n = len(codes)
        codes = np.concatenate([codes, np.zeros(((-n) % batch_size, codes.shape[1]), np.int32)])
        graphdef, params = nnx.split(self, nnx.Param)
        parts = [np.asarray(_apply(graphdef, params, codes[i: i + batch_size], output))
                 for i in range(0, len(codes), batch_size)]
        return np.concatenate(parts)[:n]

    def encode(self, texts: Sequence[str], batch_size: int = 256) -> np.ndarray:
        """The embeddings ``f32[N, H]`` of ``texts``."""
        if not text_list(texts, "texts"):
            return np.zeros((0, self.embedding_size), np.float32)
        return self._batched(texts, "embed", batch_size).astype(np.float32)

    def reconstruct(self, texts: Sequence[str], batch_size: int = 256) -> list[str]:
        """The decoder's most likely text for each input."""
        if not text_list(texts, "texts"):
            return []
        return self.codec.decode(self._batched(texts, "argmax", batch_size))

    def accuracy(self, texts: Sequence[str], batch_size: int = 256) -> float:
        """Fraction of the characters of ``texts`` (after cutting at ``T``) reconstructed
        exactly at their position."""
        codes, lengths = self.codec.encode(texts)
        if not len(codes):
            raise ValueError("accuracy needs at least one text")
        guess = self._batched(texts, "argmax", batch_size)
        inside = np.arange(codes.shape[1])[None, :] < lengths[:, None]
        return float(np.sum((guess == codes) & inside) / max(int(inside.sum()), 1))

    def save(self, folder: str | os.PathLike) -> None:
        """Write ``folder/params/`` (an orbax checkpoint) and ``folder/config.json``; an
        interrupted save leaves the previous model whole."""
        save_module(folder, self, dict(self.config), "tweet2vec")

    @classmethod
    def load(cls, folder: str | os.PathLike) -> Tweet2Vec:
        """A model saved with :meth:`save`."""
        model = cls(**read_config(folder, "tweet2vec"), rngs=nnx.Rngs(0))
        load_params(folder, model)
        return model
