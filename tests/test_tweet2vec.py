"""Tweet2Vec: the character codec, synonym augmentation, training, neighbours, save/load."""

from __future__ import annotations

from collections import Counter

import jax
import numpy as np
import pytest
from flax import nnx

from jaxembed.text.corpus import noisy_texts
from jaxembed.text.tweet2vec import PAD, UNK, CharCodec, Tweet2Vec, synonym_swap

# Tiny sizes (the paper's are 256 filters, LSTMs 256/128/128, length 150): seconds on a CPU.
TINY = {"max_length": 32, "filters": (32, 32, 32, 32), "kernel_sizes": (7, 7, 3, 3),
        "pool_sizes": (3, 3, 1, 1), "padding": "SAME", "encoder_size": 32,
        "decoder_sizes": (32, 32)}


def test_codec_round_trip_unknown_and_cut():
    codec = CharCodec(max_length=8)
    codes, lengths = codec.encode(["Hi there!", "é?", ""])
    assert codes.shape == (3, 8) and lengths.tolist() == [8, 2, 0]
    assert codes[1, 0] == UNK and (codes[1, 2:] == PAD).all() and (codes[2] == PAD).all()
    assert codec.decode(codes) == ["hi there", "\ufffd?", ""]
    assert codec.num_symbols == len(codec.alphabet) + 2 == 71
    cased = CharCodec("abAB", max_length=4, lowercase=False)
    assert cased.decode(cased.encode(["aBc"])[0]) == ["aB\ufffd"]


def test_codec_rejects_bad_input():
    with pytest.raises(ValueError, match="repeats the character 'a'"):
        CharCodec("abca")
    with pytest.raises(ValueError, match="max_length"):
        CharCodec(max_length=0)
    with pytest.raises(TypeError, match=r"texts\[1\] is 5"):
        CharCodec().encode(["ok", 5])
    with pytest.raises(TypeError, match="single str"):
        CharCodec().encode("text")
    with pytest.raises(IndexError, match="outside"):
        CharCodec().decode(np.array([[3, 99]]))


def test_synonym_swap_is_deterministic_and_documented():
    synonyms = {"good": ["great", "fine"], "movie": ["film"]}
    texts = ["A good movie, a GOOD plot.", "nothing to swap"]
    once = synonym_swap(texts, synonyms)
    assert once == synonym_swap(texts, synonyms)
    assert once[1] == "nothing to swap"
    assert "film," in once[0] and "good" not in once[0].lower()
    assert synonym_swap(texts, synonyms, rate=0.0) == texts
    variants = {synonym_swap(["good good good good"], synonyms, variant=v)[0] for v in range(8)}
    assert len(variants) > 1  # the variant changes the choices
    with pytest.raises(ValueError, match="non-empty list"):
        synonym_swap(texts, {"good": []})
    with pytest.raises(ValueError, match="rate"):
        synonym_swap(texts, synonyms, rate=2.0)


def test_model_rejects_sizes_that_leave_no_position():
    with pytest.raises(ValueError, match="no position after conv layer"):
        Tweet2Vec(max_length=20, rngs=nnx.Rngs(0))  # VALID 7,7 with pools 3,3 needs > 20
    with pytest.raises(ValueError, match="kernel_sizes"):
        Tweet2Vec(filters=(8, 8), kernel_sizes=(3,), pool_sizes=(1, 1), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="padding"):
        Tweet2Vec(padding="CAUSAL", rngs=nnx.Rngs(0))


def test_paper_defaults_shapes():
    model = nnx.eval_shape(lambda: Tweet2Vec(rngs=nnx.Rngs(0)))  # shapes only, no compute
    codes, _ = model.codec.encode(["a tweet #fun"])
    # 150 -> conv7 144 -> pool 48 -> conv7 42 -> pool 14 -> conv3 12 -> conv3 10 positions
    graphdef, state = nnx.split(model)

    def shape(method: str) -> tuple[int, ...]:
        def run(s, c):
            merged = nnx.merge(graphdef, s)
            return merged(c) if method == "__call__" else getattr(merged, method)(c)

        return jax.eval_shape(run, state, codes).shape

    assert shape("features") == (1, 10, 256)
    assert shape("embed") == (1, 256)
    assert shape("__call__") == (1, 150, 71)
    assert [d.cell.hidden_features for d in model.decoders] == [128, 128]


@pytest.fixture(scope="module")
def trained():
    texts, groups = noisy_texts(100, 4, seed=0)
    model = Tweet2Vec(**TINY, rngs=nnx.Rngs(0))
    losses = model.fit(texts, jax.random.key(0), epochs=30, batch_size=32)
    return model, texts, groups, losses


def test_reconstruction_beats_chance_on_held_out_text(trained):
    model, texts, _, losses = trained
    held_out, _ = noisy_texts(40, 1, seed=1)
    assert losses[-1] < losses[0]
    counts = Counter("".join(t.lower() for t in texts))
    chance = max(counts.values()) / sum(counts.values())  # always the commonest character
    accuracy = model.accuracy(held_out)
    assert accuracy > chance + 0.03, (accuracy, chance)
    assert len(model.reconstruct(held_out[:2])) == 2


def test_neighbours_are_spelling_variants(trained):
    model, texts, groups, _ = trained
    vectors = model.encode(texts)
    assert vectors.shape == (len(texts), 32) and vectors.dtype == np.float32
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    scores = unit @ unit.T
    np.fill_diagonal(scores, -np.inf)
    same = float(np.mean(groups[scores.argmax(1)] == groups))
    chance = 3 / (len(texts) - 1)  # 3 other variants of each message among the rest
    assert same > 10 * chance, (same, chance)


def test_save_load_and_augmented_fit(trained, tmp_path):
    model, texts, _, _ = trained
    model.save(tmp_path / "t2v")
    again = Tweet2Vec.load(tmp_path / "t2v")
    np.testing.assert_allclose(again.encode(texts[:5]), model.encode(texts[:5]), rtol=1e-6)
    losses = again.fit(texts[:64], jax.random.key(1), epochs=1, batch_size=32,
                       synonyms={"game": ["match"]}, augment=1)
    assert len(losses) == 1 and np.isfinite(losses[0])
    with pytest.raises(ValueError, match="synonyms"):
        again.fit(texts, jax.random.key(0), epochs=1, augment=1)
    with pytest.raises(ValueError, match="batch_size"):
        again.fit(texts, jax.random.key(0), batch_size=0)
    with pytest.raises(ValueError, match="saved tweet2vec"):
        (tmp_path / "other").mkdir()
        (tmp_path / "other" / "config.json").write_text('{"kind": "dual_encoder"}')
        Tweet2Vec.load(tmp_path / "other")


def test_save_is_an_orbax_checkpoint_that_overwrites_whole(trained, tmp_path):
    import json

    model = trained[0]
    folder = tmp_path / "t2v"
    model.save(folder)
    model.save(folder)  # over an existing model: swapped in only when complete
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "params"]
    assert (folder / "params" / "_CHECKPOINT_METADATA").exists()  # orbax's commit marker
    config = json.loads((folder / "config.json").read_text())
    config["encoder_size"] = config["encoder_size"] * 2  # parameters no longer fit the config
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="do not match the config"):
        Tweet2Vec.load(folder)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text('{"kind": "tweet2vec"}')
    with pytest.raises(FileNotFoundError, match="no params/ checkpoint"):
        Tweet2Vec.load(tmp_path / "empty")
