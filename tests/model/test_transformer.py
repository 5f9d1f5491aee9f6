"""The transformer decoder's own invariants: the cache, padding, and what its sizes accept.

Shapes, causality, greedy against teacher forcing, beam width 1, mixed precision and overfitting
are checked for every variant in test_networks.py and test_beam.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from pipeline.contracts import PAD_ID as PAD
from pipeline.model import networks
from tests.model.test_networks import VOCAB, batch, model_config, tiny


@pytest.fixture(autouse=True)
def seeded() -> None:
    tf.keras.utils.set_random_seed(0)


@pytest.mark.parametrize("map_layers", [0, 1])
def test_each_cached_step_gives_the_full_pass_logits(map_layers: int) -> None:
    """Incremental decoding with cached keys and values equals recomputing the whole prefix."""
    config = tiny("transformer", dropout=0.0, map_layers=map_layers)
    model = networks.build_model(config, VOCAB)
    images, tokens = batch(model.config, size=3)
    memory = model.encoder(images)
    decoder = model.decoder
    full = decoder((memory, tokens)).numpy()
    image = decoder._image(memory)
    cache = decoder.start_cache(tf.shape(memory)[0], tf.constant(tokens.shape[1] + 3))
    for t in range(tokens.shape[1]):
        logits, attention, cache = decoder.step(tf.constant(tokens[:, t]), cache, image)
        np.testing.assert_allclose(logits.numpy(), full[:, t], atol=2e-5, rtol=1e-5)
        np.testing.assert_allclose(attention.numpy().sum(-1), 1.0, atol=1e-5)
    assert cache["position"].numpy().tolist() == [tokens.shape[1]] * 3


@pytest.mark.parametrize("map_layers", [0, 1])
def test_padding_never_changes_a_real_tokens_output(map_layers: int) -> None:
    """Whatever fills row 0's padding, no real position of any row changes."""
    model = networks.build_model(tiny("transformer", map_layers=map_layers), VOCAB)
    images, tokens = batch(model.config)
    real = tokens != PAD
    assert not real[0].all()  # row 0 is padded
    noisy = np.where(real, tokens, np.random.default_rng(1).integers(4, VOCAB, tokens.shape))
    clean = model((images, tokens)).numpy()
    changed = model((images, noisy.astype(np.int32))).numpy()
    np.testing.assert_allclose(changed[real], clean[real], atol=1e-6)
    assert not np.allclose(changed[~real], clean[~real])  # the padding itself did change


@pytest.mark.parametrize("map_layers", [0, 1])
def test_map_layers_let_each_location_see_the_whole_image(map_layers: int) -> None:
    """Ink changed at the right end reaches the first column's keys through the map's
    self-attention; through the convolutions alone (a receptive field of a few cells) it cannot."""
    model = networks.build_model(tiny("transformer", map_layers=map_layers), VOCAB)
    images, _ = batch(model.config)
    changed = images.copy()
    changed[:, :, -16:] = 1.0 - changed[:, :, -16:]
    rows, columns = model.encoder_grid(images)

    def first_column_keys(images: np.ndarray) -> np.ndarray:
        keys, _ = model.decoder._image(model.encoder(images))[0]  # [B, H, L, dk]
        return keys.numpy().reshape(keys.shape[0], keys.shape[1], rows, columns, -1)[:, :, :, 0]

    reached = not np.allclose(first_column_keys(images), first_column_keys(changed), atol=1e-6)
    assert reached == bool(map_layers)


def test_dropout_is_off_at_inference_and_on_in_training() -> None:
    model = networks.build_model(tiny("transformer", dropout=0.5), VOCAB)
    images, tokens = batch(model.config)
    np.testing.assert_array_equal(model((images, tokens)), model((images, tokens)))
    trained = model((images, tokens), training=True).numpy()
    assert not np.allclose(trained, model((images, tokens), training=True).numpy())


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"variant": "transformer", "preset": "tiny", "heads": 3}, "heads >= 1 dividing"),
        ({"variant": "transformer", "preset": "paper"}, "'paper' is not one of transformer's"),
        ({"variant": "nopool", "preset": "large"}, "'large' is not one of nopool's"),
        ({"variant": "transformer", "attention_units": 64}, "attention_units is not a size"),
        ({"variant": "nopool", "heads": 4}, "heads is not a size of the nopool variant"),
        ({"variant": "transformer", "embedding_dim": 64}, "embedding_dim must equal"),
        ({"variant": "transformer", "map_layers": -1}, "map_layers must be >= 0"),
        (
            {"variant": "transformer", "preset": "tiny", "heads": 8, "encoder_filters": [8, 12]}
            | {"map_layers": 1},
            "heads must divide the map's channels",
        ),
        ({"variant": "nopool", "map_layers": 1}, "map_layers is not a size of the nopool"),
    ],
)
def test_sizes_that_do_not_fit_are_refused_with_the_reason(section: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model_config(section)


def test_presets_grow_and_the_width_sets_the_embedding() -> None:
    counts = {
        preset: networks.build_model(
            model_config({"variant": "transformer", "preset": preset}), 300
        ).count_params()
        for preset in ("tiny", "small", "large")
    }
    assert counts["tiny"] < counts["small"] < counts["large"]
    wide = model_config({"variant": "transformer", "decoder_units": 192, "heads": 6})
    assert wide.embedding_dim == 192 and wide.has_timing_signal
