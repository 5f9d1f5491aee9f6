"""Models: real TensorFlow on CPU with tiny presets, so every variant is checked end to end."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from pipeline import config
from pipeline.contracts import END_ID as END
from pipeline.contracts import PAD_ID as PAD
from pipeline.contracts import START_ID as START
from pipeline.model import networks, positions

keras = tf.keras
VOCAB = 12
WIDTH = 64


def model_config(section: dict) -> networks.ModelConfig:
    """The network sizes a params ``model`` section gives (the timing signal: the variant's own
    choice unless the section says)."""
    return networks.model_config(config.section("model", {"timing_signal": None} | section))


def tiny(variant: str, **overrides: object) -> networks.ModelConfig:
    return model_config({"variant": variant, "preset": "tiny", **overrides})


def height(config: networks.ModelConfig) -> int:
    return config.fixed_height or 32


def batch(config: networks.ModelConfig, size: int = 2, seed: int = 0) -> tuple[np.ndarray, ...]:
    """Random ink images and token rows of different lengths (row 0 padded)."""
    rng = np.random.default_rng(seed)
    images = (rng.random((size, height(config), WIDTH, 1)) < 0.3).astype(np.float32)
    tokens = np.zeros((size, 8), np.int32)
    for row in range(size):
        length = 3 if row == 0 else 6
        tokens[row, : length + 2] = [START, *rng.integers(4, VOCAB, length), END]
    return images, tokens


@pytest.fixture(autouse=True)
def seeded() -> None:
    keras.utils.set_random_seed(0)


@pytest.fixture(params=["mixed_float16", "mixed_bfloat16"])
def mixed_precision(request) -> Iterator[str]:
    keras.mixed_precision.set_global_policy(request.param)
    try:
        yield request.param.removeprefix("mixed_")
    finally:
        keras.mixed_precision.set_global_policy("float32")


# --- configuration -------------------------------------------------------------------------


def test_paper_presets_have_published_sizes() -> None:
    seq = model_config({"variant": "seq2seq", "preset": "paper"})
    assert (seq.encoder_filters, seq.pools) == ((64, 256, 512), 2)
    assert (seq.decoder_units, seq.embedding_dim, seq.decoder_layers) == (256, 256, 1)
    for variant in ("nopool", "strips"):
        singh = model_config({"variant": variant, "preset": "paper"})
        assert singh.encoder_filters == (64, 128, 256, 512, 512)
        assert singh.pools == 5
        assert (singh.decoder_units, singh.decoder_layers, singh.embedding_dim) == (1500, 2, 64)
        assert singh.l2 == pytest.approx(5e-5)
        assert singh == networks.ModelConfig(
            variant=variant, timing_signal=None, **networks.SINGH_2018
        )
        assert singh.canvas == (128, 1088, 1)  # centred on the canvas, in a 1-px frame
    strips = model_config({"variant": "strips", "preset": "paper"})
    assert strips.fixed_height == 130
    assert strips.memory_dim == 4 * 512  # a column of the 4 x 34 x 512 map at 128 x 1088
    assert (strips.locations, model_config({"variant": "nopool", "preset": "paper"}).locations) == (
        34,
        136,
    )


def test_overrides_are_coerced_and_pools_follow_filters() -> None:
    config = model_config(
        {"variant": "nopool", "preset": "small", "encoder_filters": [8, 8, 16], "l2": "5e-5"}
    )
    assert config.encoder_filters == (8, 8, 16)
    assert config.pools == 3
    assert config.l2 == pytest.approx(5e-5)
    assert model_config({"variant": "seq2seq"}).decoder_units == 128  # small by default


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"variant": "vit"}, "model.variant = 'vit': must be one of"),
        ({"variant": "seq2seq", "preset": "huge"}, "model.preset = 'huge'"),
        ({"variant": "seq2seq", "hidden": 3}, "unknown key 'hidden'"),
        ({"variant": "seq2seq", "decoder_units": 12.5}, "model.decoder_units = 12.5: must be an"),
        ({"variant": "seq2seq", "pools": 4}, "pools"),
        ({"variant": "strips", "canvas_height": 100}, "canvas_height"),
    ],
)
def test_model_config_rejects_bad_sections(section: dict, message: str) -> None:
    with pytest.raises((SystemExit, ValueError), match=message):
        model_config(section)


# --- timing signal -------------------------------------------------------------------------


def test_seq2seq_memory_is_the_timing_signal_for_blank_images() -> None:
    """Blank input + ReLU convs with zero biases give zero features, leaving only the signal."""
    config = tiny("seq2seq")
    model = networks.build_model(config, VOCAB)
    memory = model.encoder(np.zeros((1, 8, 12, 1), np.float32)).numpy()
    expected = positions.timing_signal_2d(2, 3, config.encoder_filters[-1]).numpy().reshape(6, -1)
    np.testing.assert_allclose(memory[0], expected, atol=1e-6)


@pytest.mark.parametrize("variant", ["nopool", "strips"])
def test_singh_variants_take_the_timing_signal_only_when_asked(variant: str) -> None:
    images = np.zeros((1, 64, 64, 1), np.float32)
    memories = []
    for flag in (None, True):
        tf.keras.utils.set_random_seed(0)
        config = model_config({"variant": variant, "preset": "tiny", "timing_signal": flag})
        memories.append(networks.build_model(config, VOCAB).encoder(images).numpy())
    assert not model_config({"variant": variant, "preset": "tiny"}).has_timing_signal
    difference = np.abs(memories[1] - memories[0]).max()
    assert difference > 0.5  # sin/cos of the positions added on top of identical features
    with pytest.raises(SystemExit, match="timing_signal"):
        model_config({"variant": variant, "preset": "tiny", "timing_signal": "yes"})


# --- shapes, attention, decoding -------------------------------------------------------------


@pytest.mark.parametrize("variant", networks.VARIANTS)
def test_shapes_dtypes_and_attention(variant: str) -> None:
    config = tiny(variant)
    model = networks.build_model(config, VOCAB)
    images, tokens = batch(config)
    logits = model((images, tokens[:, :-1]), training=True)
    assert logits.shape == (2, 7, VOCAB)
    assert logits.dtype == tf.float32

    ids, attention = model.greedy_decode(images, max_len=9)
    rows, cols = model.encoder_grid(images)
    pooled_h, pooled_w = height(config) // 2**config.pools, WIDTH // 2**config.pools
    expected_grid = {"strips": (1, pooled_w)}.get(variant, (pooled_h, pooled_w))
    assert (rows, cols) == expected_grid
    assert ids.shape == (2, 9) and ids.dtype == tf.int32
    assert attention.shape == (2, 9, rows * cols) and attention.dtype == tf.float32
    ids, sums = ids.numpy(), attention.numpy().sum(-1)
    for row in range(2):
        ends = np.flatnonzero(ids[row] == END)
        live = ends[0] + 1 if len(ends) else 9
        np.testing.assert_allclose(sums[row, :live], 1.0, atol=1e-5)
        assert (sums[row, live:] == 0).all() and (ids[row, live:] == PAD).all()


def test_grid_sizes_for_each_variant() -> None:
    shape = np.zeros((1, 64, 128, 1))
    assert networks.build_model(tiny("strips"), VOCAB).encoder_grid(shape) == (1, 4)
    assert networks.build_model(tiny("nopool"), VOCAB).encoder_grid(shape) == (2, 4)
    assert networks.build_model(tiny("seq2seq"), VOCAB).encoder_grid(shape) == (16, 32)


def test_strips_rejects_other_heights() -> None:
    model = networks.build_model(tiny("strips"), VOCAB)
    with pytest.raises(ValueError, match="px high"):
        model((np.zeros((1, 32, 64, 1), np.float32), np.ones((1, 3), np.int32)))


def test_greedy_stops_after_end_token() -> None:
    """Force the output layer to prefer one token and check what greedy makes of it."""
    model = networks.build_model(tiny("nopool"), VOCAB)
    images, _ = batch(model.config)
    layer = model.decoder.logits
    layer.kernel.assign(np.zeros(layer.kernel.shape, np.float32))
    bias = np.zeros(VOCAB, np.float32)
    bias[END] = 5.0
    layer.bias.assign(bias)
    ids, attention = model.greedy_decode(images, max_len=4)
    assert ids.numpy().tolist() == [[END, PAD, PAD, PAD]] * 2
    np.testing.assert_allclose(attention.numpy().sum(-1), [[1, 0, 0, 0]] * 2, atol=1e-5)
    bias[END], bias[7] = 0.0, 5.0
    layer.bias.assign(bias)
    assert model.greedy_decode(images, max_len=4)[0].numpy().tolist() == [[7] * 4] * 2


@pytest.mark.parametrize("variant", networks.VARIANTS)
def test_greedy_agrees_with_teacher_forcing(variant: str) -> None:
    """Feeding greedy's own output back through ``call`` must reproduce its argmaxes."""
    model = networks.build_model(tiny(variant), VOCAB)
    images, _ = batch(model.config)
    ids, _ = model.greedy_decode(images, max_len=6)
    tokens_in = np.concatenate([np.full((2, 1), START), ids.numpy()[:, :-1]], axis=1)
    predicted = tf.argmax(model((images, tokens_in)), axis=-1).numpy()
    for row in range(2):
        ends = np.flatnonzero(ids[row] == END)
        live = ends[0] + 1 if len(ends) else 6
        assert predicted[row, :live].tolist() == ids.numpy()[row, :live].tolist()


def test_variable_sizes_do_not_retrace_endlessly() -> None:
    model = networks.build_model(tiny("nopool"), VOCAB)
    for h, w in [(32, 64), (64, 96), (96, 160), (32, 224), (64, 32)]:
        images = np.zeros((2, h, w, 1), np.float32)
        model.greedy_decode(images, max_len=3 + h // 32)
        model((images, np.ones((2, 2 + w // 32), np.int32)))
    assert model._greedy_graph.experimental_get_tracing_count() <= 2
    assert model.decoder._recur_graph.experimental_get_tracing_count() <= 2


# --- causality and masking -----------------------------------------------------------------


@pytest.mark.parametrize("variant", networks.VARIANTS)
def test_logits_do_not_depend_on_later_tokens(variant: str) -> None:
    model = networks.build_model(tiny(variant), VOCAB)
    images, tokens = batch(model.config)
    tokens_in = tokens[:, :-1]
    changed = tokens_in.copy()
    changed[:, 4:] = (changed[:, 4:] + 5) % VOCAB
    before, after = model((images, tokens_in)).numpy(), model((images, changed)).numpy()
    np.testing.assert_allclose(before[:, :4], after[:, :4], rtol=0, atol=1e-6)
    assert np.abs(before[:, 4:] - after[:, 4:]).max() > 1e-4  # later positions do respond


def test_loss_ignores_padded_positions() -> None:
    """Replace the inputs after row 0's end: its logits there change, the loss must not."""
    model = networks.build_model(tiny("nopool"), VOCAB)
    images, tokens = batch(model.config)
    tokens_in, tokens_out = tokens[:, :-1], tokens[:, 1:]
    padded = tokens_out[0] == PAD
    assert padded.sum() >= 3
    changed = tokens_in.copy()
    changed[0, padded] = np.arange(padded.sum()) + 5
    logits, logits_changed = model((images, tokens_in)), model((images, changed))
    assert np.abs(logits.numpy()[0, padded] - logits_changed.numpy()[0, padded]).max() > 1e-4
    np.testing.assert_allclose(
        networks.masked_loss(tokens_out, logits), networks.masked_loss(tokens_out, logits_changed)
    )

    def unmasked(logits: tf.Tensor) -> float:
        losses = keras.losses.sparse_categorical_crossentropy(tokens_out, logits, from_logits=True)
        return float(tf.reduce_mean(losses))

    assert abs(unmasked(logits) - unmasked(logits_changed)) > 1e-5  # so the mask is what helps


def test_masked_loss_and_accuracy_by_hand() -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 4, 5)).astype(np.float32)
    targets = np.array([[3, 1, 0, 0], [2, 4, 4, 1]], np.int32)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    real = [(b, t) for b in range(2) for t in range(4) if targets[b, t] != PAD]
    expected_loss = -np.mean([log_probs[b, t, targets[b, t]] for b, t in real])
    expected_acc = np.mean([logits[b, t].argmax() == targets[b, t] for b, t in real])
    assert float(networks.masked_loss(targets, logits)) == pytest.approx(expected_loss, rel=1e-5)
    assert float(networks.token_accuracy(targets, logits)) == pytest.approx(expected_acc)
    assert float(networks.masked_loss(np.zeros_like(targets), logits)) == 0.0  # no NaN
    # smoothed: 0.9 of the mass on the target, 0.1 spread evenly over the 5 tokens
    smoothed = -np.mean(
        [0.9 * log_probs[b, t, targets[b, t]] + 0.1 * log_probs[b, t].mean() for b, t in real]
    )
    got = float(networks.masked_loss(targets, logits, smoothing=0.1))
    assert got == pytest.approx(smoothed, rel=1e-5) and got != pytest.approx(expected_loss)


def test_regularization_covers_kernels_only() -> None:
    model = networks.build_model(tiny("strips", l2=0.01), VOCAB)
    with tf.GradientTape() as tape:
        loss = networks.regularization_loss(model)
    conv, embeddings = model.encoder.convs[0].kernel, model.decoder.embedding.embeddings
    recurrent, bias = model.decoder.cells[1].recurrent_kernel, model.decoder.logits.bias
    dense = model.decoder.logits.kernel
    grads = tape.gradient(loss, [conv, recurrent, dense, embeddings, bias])
    for kernel, grad in zip([conv, recurrent, dense], grads, strict=False):
        np.testing.assert_allclose(grad, 2 * 0.01 * kernel.numpy(), rtol=1e-5)
    assert grads[3] is None and grads[4] is None
    assert float(loss) > 0
    assert float(networks.regularization_loss(networks.build_model(tiny("strips"), VOCAB))) == 0.0


# --- learning, persistence, precision -------------------------------------------------------

FORMULAS = [[4, 5, 6], [7, 8, 4, 9], [10, 11, 5], [6, 6, 7, 8, 9], [11, 4, 10, 5, 7, 8]]


@pytest.mark.parametrize("variant", networks.VARIANTS)
def test_tiny_model_overfits_a_few_formulas(variant: str) -> None:
    config = tiny(variant)
    rng = np.random.default_rng(0)
    images = (rng.random((len(FORMULAS), height(config), WIDTH, 1)) < 0.3).astype(np.float32)
    tokens = np.zeros((len(FORMULAS), 8), np.int32)
    for row, formula in enumerate(FORMULAS):
        tokens[row, : len(formula) + 2] = [START, *formula, END]
    expected = np.pad(tokens[:, 1:], [(0, 0), (0, 1)])
    model = networks.build_model(config, VOCAB)
    optimizer = keras.optimizers.Adam(3e-3)

    @tf.function
    def train_step() -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = model((images, tokens[:, :-1]), training=True)
            loss = networks.masked_loss(tokens[:, 1:], logits) + networks.regularization_loss(model)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss

    for _ in range(16):  # at most 400 steps; ~150 suffice
        for _ in range(25):
            train_step()
        decoded = model.greedy_decode(images, max_len=8)[0].numpy()
        if (decoded == expected).all():
            break
    assert decoded.tolist() == expected.tolist()


@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # Keras' h5 io
def test_weights_round_trip(tmp_path: Path) -> None:
    config = tiny("seq2seq")
    images, tokens = batch(config)
    model = networks.build_model(config, VOCAB)
    path = tmp_path / "model.weights.h5"
    model.save_weights(path)
    restored = networks.build_model(config, VOCAB)
    restored.load_weights(path)
    np.testing.assert_allclose(model((images, tokens)), restored((images, tokens)), atol=1e-6)


def test_tf_checkpoint_round_trip(tmp_path: Path) -> None:
    """The trainer resumes through tf.train.Checkpoint, which sees only attribute-held layers."""
    config = tiny("strips")
    images, tokens = batch(config)
    model, restored = networks.build_model(config, VOCAB), networks.build_model(config, VOCAB)
    path = tf.train.Checkpoint(model=model).save(str(tmp_path / "ckpt"))
    tf.train.Checkpoint(model=restored).restore(path).assert_consumed()
    for saved, loaded in zip(model.weights, restored.weights, strict=True):
        np.testing.assert_array_equal(saved.numpy(), loaded.numpy(), err_msg=saved.path)


@pytest.mark.parametrize("variant", networks.VARIANTS)
def test_mixed_precision_forward_and_decode(variant: str, mixed_precision: str) -> None:
    config = tiny(variant)
    images, tokens = batch(config)
    with tf.distribute.MirroredStrategy().scope():
        model = networks.build_model(config, VOCAB)
    assert model.decoder.compute_dtype == mixed_precision
    logits = model((images, tokens[:, :-1]))
    assert logits.dtype == tf.float32 and np.isfinite(logits.numpy()).all()
    ids, attention = model.greedy_decode(images, max_len=5)
    assert ids.dtype == tf.int32 and attention.dtype == tf.float32
    np.testing.assert_allclose(attention.numpy()[:, 0].sum(-1), 1.0, atol=1e-3)


@pytest.mark.parametrize("mixed_precision", ["mixed_float16"], indirect=True)  # loss scaling
def test_mixed_precision_train_step_under_mirrored_strategy(mixed_precision: str) -> None:
    config = tiny("nopool", l2=1e-4)
    images, tokens = batch(config)
    strategy = tf.distribute.MirroredStrategy()
    with strategy.scope():
        model = networks.build_model(config, VOCAB)
        optimizer = keras.mixed_precision.LossScaleOptimizer(keras.optimizers.Adam(1e-2))

    def replica_step(images: tf.Tensor, tokens: tf.Tensor) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits = model((images, tokens[:, :-1]), training=True)
            loss = networks.masked_loss(tokens[:, 1:], logits) + networks.regularization_loss(model)
            scaled = optimizer.scale_loss(loss)  # inside the tape, or no gradient reaches it
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    step = tf.function(lambda i, t: strategy.run(replica_step, args=(i, t)))
    losses = [float(step(images, tokens)) for _ in range(5)]
    assert all(np.isfinite(losses)) and losses[-1] < losses[0]


# --- Singh 2018's published graph -----------------------------------------------------------

PAPER_TOKENS = 339  # I2L-140K: 338 tokens with start and end, plus the CTC blank it reserved


@pytest.mark.parametrize(
    ("variant", "parts", "total"),
    [
        ("nopool", (18_263_632, 12_466_500, 993_789), 61_235_049),
        ("strips", (18_247_330, 21_682_500, 1_543_677), 70_984_635),
    ],
)
def test_the_published_graph_has_table_2s_parameter_counts(variant, parts, total) -> None:
    """Singh 2018, Table 2, part by part; the parts differ between the variants only where the
    attended location's size (512 or 2048) or count (136 or 34) enters."""
    model = networks.build_model(
        networks.ModelConfig(variant=variant, **networks.SINGH_2018), PAPER_TOKENS
    )
    decoder = model.decoder
    attention, first_lstm, deep_output = parts
    assert model.encoder.count_params() == 3_909_632
    assert decoder.embedding.count_params() == 21_696
    assert decoder.init_hidden.count_params() + decoder.init_state.count_params() == 7_569_300
    assert decoder.full_attention.count_params() == attention
    assert [cell.count_params() for cell in decoder.cells] == [first_lstm, 18_010_500]
    deep = sum(layer.count_params() for layer in [*decoder.deep_outputs, decoder.logits])
    assert deep == deep_output
    assert model.count_params() == total


def published_tiny(variant: str) -> networks.ModelConfig:
    """The published graph's structure at CPU-test sizes: a 64 x 128 canvas in its frame."""
    sizes = dict(
        encoder_filters=(4, 4, 8, 8, 8),
        embedding_dim=8,
        decoder_units=16,
        attention_units=8,
        deep_output_units=12,
        init_units=6,
        canvas_height=64,
        canvas_width=128,
    )
    return networks.ModelConfig(variant=variant, **(networks.SINGH_2018 | sizes))


@pytest.mark.parametrize("variant", ["nopool", "strips"])
def test_the_published_graph_trains_and_decodes(variant) -> None:
    config = published_tiny(variant)
    model = networks.build_model(config, VOCAB)
    assert config.locations == (8 if variant == "nopool" else 4)
    images = np.random.default_rng(0).random((2, 66, 130, 1)).astype(np.float32)  # framed
    tokens = np.array([[START, 5, 6, END, PAD], [START, 7, 8, 9, END]], np.int32)
    optimizer = keras.optimizers.Adam(0.01)
    losses = []
    for _ in range(5):
        with tf.GradientTape() as tape:
            logits = model((images, tokens[:, :-1]), training=True)
            loss = networks.masked_loss(tokens[:, 1:], logits)
        grads = tape.gradient(loss, model.trainable_variables)
        assert all(g is not None for g in grads)
        optimizer.apply(grads, model.trainable_variables)
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    ids, attention = model.greedy_decode(images, 6)
    assert ids.shape == (2, 6) and attention.shape == (2, 6, config.locations)
    beam_ids, _, _ = model.beam_decode(images, 6, beam_width=1)
    np.testing.assert_array_equal(beam_ids, ids)


def test_a_peephole_cell_has_4n_in_plus_n_plus_7n_parameters_and_remembers_at_first() -> None:
    cell = networks.PeepholeLSTMCell(5, name="cell")
    cell.build((None, 3))
    assert cell.count_params() == 4 * 5 * (3 + 5) + 4 * 5 + 3 * 5
    np.testing.assert_array_equal(cell.bias.numpy()[5:10], 1.0)  # the forget gate's
    h, (h2, c) = cell(tf.ones([2, 3]), [tf.zeros([2, 5]), tf.ones([2, 5])])
    np.testing.assert_array_equal(h, h2)
    assert c.shape == (2, 5)


def test_full_map_attention_needs_a_fixed_canvas() -> None:
    with pytest.raises(ValueError, match="needs canvas_height and canvas_width"):
        networks.ModelConfig(variant="nopool", **(networks.SINGH_2018 | {"canvas_width": None}))
