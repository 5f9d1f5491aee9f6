"""Models stage: attention encoder-decoders that turn a formula image into LaTeX token ids.

Three variants share one encoder/decoder skeleton so that they can be compared on equal terms:

* ``seq2seq``: the notebook model. A small ReLU CNN, a 2-D sinusoidal timing signal (so that
  attention can tell locations apart after the map is flattened), Bahdanau attention and a GRU.
* ``nopool`` and ``strips``: Singh 2018, "Teaching Machines to Code". A deeper tanh CNN that pools
  after every convolution, two stacked LSTMs whose initial states come from an MLP over the mean
  feature, and a deep output MLP. ``nopool`` attends over every location of the final map;
  ``strips`` attends over whole columns, which is why it needs a fixed canvas height.
  ``SINGH_2018`` is the published graph itself (full-map attention and init, peephole LSTMs, two
  deep output layers on a fixed framed canvas), exact to the paper's parameter counts.

The decoder recurrence is a ``tf.while_loop`` inside a ``tf.function``, so teacher forcing,
greedy decoding and beam search (``pipeline.model.beam``) run as one graph whatever the caller does;
only the attention/RNN step is in the loop, the output layers run once over all steps. Training
memory grows with ``B * T * L * attention_units`` (the backward pass keeps every step's attention
activations), so L, the number of attended locations, is what the presets keep in check.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import tensorflow as tf

from pipeline.config import VARIANTS, ModelSettings
from pipeline.contracts import END_ID as END
from pipeline.contracts import PAD_ID as PAD
from pipeline.contracts import START_ID as START
from pipeline.contracts import UNK_ID as UNK
from pipeline.model.beam import BeamResult, StepFn, beam_search, check_arguments, log_probabilities
from pipeline.model.greedy import greedy_search
from pipeline.model.layers import FullMapAttention, PeepholeLSTMCell
from pipeline.model.positions import timing_signal_2d
from pipeline.model.transformer import TransformerDecoder

keras = tf.keras

ATTENTIONS = ("bahdanau", "full_map")
INIT_FROM = ("mean", "full_map")


@dataclass(frozen=True)
class ModelConfig:
    """Every size a model needs; two equal configs build identically shaped models."""

    variant: str
    encoder_filters: tuple[int, ...]
    pools: int  # 2x2 max-pools, after the first ``pools`` convolutions
    embedding_dim: int
    decoder_units: int
    decoder_layers: int
    attention_units: int
    deep_output_units: int
    init_units: int  # hidden width of the init MLP (nopool/strips only)
    l2: float
    canvas_height: int | None = None  # fixed input height; used by ``strips`` only
    dropout: float = 0.0
    # add the 2-D sinusoidal timing signal to the final map; None: the variant's own choice
    # (the notebook's seq2seq has it, Singh's models do not)
    timing_signal: bool | None = None
    # Singh's published graph (see pipeline/model/layers.py); the defaults are our CPU models'
    canvas_width: int | None = None  # fixed input width, with canvas_height: a fixed map size
    frame: int = 0  # white pixels around the canvas that a VALID first convolution eats (0, 1)
    attention: str = "bahdanau"  # or "full_map": the paper's MLP over the whole map
    init_from: str = "mean"  # the init MLP reads the mean feature, or the "full_map"
    peepholes: bool = False  # decoder LSTMs with peephole connections
    deep_output_layers: int = 1  # tanh layers before the logits
    # the transformer's decoder: decoder_units wide, decoder_layers blocks of these
    heads: int = 0
    ff_units: int = 0
    map_layers: int = 0  # self-attention blocks over the feature map before the decoder

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"model variant must be one of {VARIANTS}, got {self.variant!r}")
        if not self.encoder_filters or min(self.encoder_filters) < 1:
            raise ValueError(f"encoder_filters must be positive, got {self.encoder_filters}")
        if not 0 <= self.pools <= len(self.encoder_filters):
            raise ValueError(
                f"pools must be in 0..{len(self.encoder_filters)} (one per convolution), "
                f"got {self.pools}"
            )
        sizes = ("embedding_dim", "decoder_units", "decoder_layers", "attention_units")
        for name in (*sizes, "deep_output_units", "init_units"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.l2 < 0 or not 0 <= self.dropout < 1:
            raise ValueError(f"need l2 >= 0 and 0 <= dropout < 1, got {self.l2}, {self.dropout}")
        if self.variant == "strips":
            height = self.canvas_height
            if height is None or height < 1 or height % self.size_multiple:
                raise ValueError(
                    f"strips needs canvas_height, a positive multiple of {self.size_multiple}, "
                    f"got {height}"
                )
        self._check_published_options()
        if self.variant == "transformer":
            self._check_transformer()

    def _check_transformer(self) -> None:
        if self.heads < 1 or self.ff_units < 1 or self.decoder_units % self.heads:
            raise ValueError(
                f"the transformer needs heads >= 1 dividing decoder_units and ff_units >= 1, "
                f"got heads {self.heads}, decoder_units {self.decoder_units}, "
                f"ff_units {self.ff_units}"
            )
        if self.map_layers < 0 or (self.map_layers and self.memory_dim % self.heads):
            raise ValueError(
                f"map_layers must be >= 0, and with map layers heads must divide the map's "
                f"channels: got map_layers {self.map_layers}, heads {self.heads}, "
                f"{self.memory_dim} channels"
            )
        if self.embedding_dim != self.decoder_units:
            raise ValueError(
                f"the transformer embeds tokens at its width: embedding_dim must equal "
                f"decoder_units, got {self.embedding_dim} and {self.decoder_units}"
            )
        if self.attention != "bahdanau" or self.init_from != "mean" or self.peepholes:
            raise ValueError("the transformer has none of the recurrent decoders' options")

    def _check_published_options(self) -> None:
        if self.attention not in ATTENTIONS or self.init_from not in INIT_FROM:
            raise ValueError(
                f"attention must be one of {ATTENTIONS} and init_from one of {INIT_FROM}, "
                f"got {self.attention!r}, {self.init_from!r}"
            )
        if self.frame not in (0, 1) or self.deep_output_layers < 1:
            raise ValueError(
                f"frame must be 0 or 1 and deep_output_layers >= 1, "
                f"got {self.frame}, {self.deep_output_layers}"
            )
        if "full_map" in (self.attention, self.init_from) and self.locations is None:
            raise ValueError(
                "full_map attention or init reads the whole feature map: it needs canvas_height "
                f"and canvas_width, multiples of {self.size_multiple}"
            )

    @property
    def canvas(self) -> tuple[int, int, int] | None:
        """(height, width, frame) of the fixed canvas every image is centred on, if any."""
        if self.canvas_height is None or self.canvas_width is None:
            return None
        return self.canvas_height, self.canvas_width, self.frame

    @property
    def locations(self) -> int | None:
        """How many locations attention sees on the fixed canvas, or None without one."""
        height, width, multiple = self.canvas_height, self.canvas_width, self.size_multiple
        if height is None or width is None or height % multiple or width % multiple:
            return None
        columns = width // multiple
        return columns if self.variant == "strips" else height // multiple * columns

    @property
    def has_timing_signal(self) -> bool:
        if self.timing_signal is None:
            return self.variant in ("seq2seq", "transformer")
        return self.timing_signal

    @property
    def size_multiple(self) -> int:
        """Image heights and widths must be multiples of this for the pools to divide evenly."""
        return 2**self.pools

    @property
    def fixed_height(self) -> int | None:
        """The height every image must be padded to, or None where any height works."""
        if self.variant != "strips" or self.canvas_height is None:
            return None
        return self.canvas_height + 2 * self.frame

    @property
    def memory_dim(self) -> int:
        """Feature size of one attended location: a whole column's features for ``strips``."""
        if self.variant == "strips":
            assert self.canvas_height is not None
            return self.canvas_height // self.size_multiple * self.encoder_filters[-1]
        return self.encoder_filters[-1]


_SEQ2SEQ = {
    "paper": dict(
        encoder_filters=(64, 256, 512),
        pools=2,
        embedding_dim=256,
        decoder_units=256,
        decoder_layers=1,
        attention_units=256,
        deep_output_units=256,
        init_units=256,
        l2=0.0,
    ),
    "small": dict(
        encoder_filters=(32, 64, 128),
        pools=3,  # not the notebook's 2: attention over H*W/16 locations is too slow on a CPU
        embedding_dim=64,
        decoder_units=128,
        decoder_layers=1,
        attention_units=128,
        deep_output_units=128,
        init_units=128,
        l2=0.0,
    ),
    "tiny": dict(
        encoder_filters=(4, 8, 8),
        pools=2,
        embedding_dim=8,
        decoder_units=16,
        decoder_layers=1,
        attention_units=8,
        deep_output_units=16,
        init_units=8,
        l2=0.0,
    ),
}
_SINGH = {
    "small": dict(
        encoder_filters=(16, 32, 64, 128, 128),
        # Four pools, not the paper's five: our images are downsampled to ~100 dpi, where a
        # 32-px cell spans about four characters; 16-px cells let attention tell them apart.
        pools=4,
        embedding_dim=64,
        # 128, not 256: in make run's CPU budget the smaller decoder takes more steps in the
        # same time and wins (README, Performance); set model.decoder_units for long runs
        decoder_units=128,
        decoder_layers=2,
        attention_units=128,
        deep_output_units=256,
        init_units=128,
        l2=5e-5,
    ),
    "tiny": dict(
        encoder_filters=(4, 4, 8, 8, 8),
        pools=5,
        embedding_dim=8,
        decoder_units=16,
        decoder_layers=2,
        attention_units=8,
        deep_output_units=16,
        init_units=8,
        l2=0.0,
    ),
}
_CANVAS = {"small": 64, "tiny": 64}
# The recurrent decoders' sizes, which the transformer has no use for (ModelConfig needs them).
_NOT_RECURRENT = dict(attention_units=1, deep_output_units=1, init_units=1)
_TRANSFORMER = {
    "small": dict(
        encoder_filters=(32, 64, 128),
        pools=3,
        embedding_dim=128,
        decoder_units=128,
        decoder_layers=3,
        heads=4,
        ff_units=512,
        l2=0.0,
        **_NOT_RECURRENT,
    ),
    # about pix2tex's decoder (4 layers, width 256, 8 heads), for GPUs
    "large": dict(
        encoder_filters=(64, 128, 256, 256),
        pools=3,
        embedding_dim=256,
        decoder_units=256,
        decoder_layers=4,
        heads=8,
        ff_units=1024,
        dropout=0.1,
        l2=0.0,
        **_NOT_RECURRENT,
    ),
    "tiny": dict(
        encoder_filters=(4, 8, 8),
        pools=2,
        embedding_dim=16,
        decoder_units=16,
        decoder_layers=2,
        heads=2,
        ff_units=32,
        l2=0.0,
        **_NOT_RECURRENT,
    ),
}

#: Singh 2018's published I2L-NOPOOL / I2L-STRIPS graph (for either variant): a 128 x 1088
#: canvas in a 1-px frame, the full-map attention and init, peephole LSTMs, two deep output
#: layers. With the paper's 339 tokens it has exactly Table 2's 61,235,049 (NOPOOL) and
#: 70,984,635 (STRIPS) parameters (tests/model/test_networks.py). It is the ``paper`` preset of
#: both; the input pipeline and predict centre every image on its canvas.
SINGH_2018: dict[str, Any] = dict(
    encoder_filters=(64, 128, 256, 512, 512),
    pools=5,
    embedding_dim=64,
    decoder_units=1500,
    decoder_layers=2,
    attention_units=256,
    deep_output_units=358,
    init_units=100,
    l2=5e-5,
    canvas_height=128,
    canvas_width=1088,
    frame=1,
    attention="full_map",
    init_from="full_map",
    peepholes=True,
    deep_output_layers=2,
)
_PRESETS: dict[str, dict[str, dict[str, Any]]] = {
    "seq2seq": _SEQ2SEQ,
    "nopool": {**_SINGH, "paper": SINGH_2018},
    "strips": {
        **{name: {**sizes, "canvas_height": _CANVAS[name]} for name, sizes in _SINGH.items()},
        "paper": SINGH_2018,
    },
    "transformer": _TRANSFORMER,
}
_RECURRENT_ONLY = ("attention_units", "deep_output_units", "init_units")
_TRANSFORMER_ONLY = ("heads", "ff_units", "map_layers")


def model_config(settings: ModelSettings) -> ModelConfig:
    """The preset's sizes with the settings' overrides laid over them.

    For nopool/strips ``pools`` follows ``encoder_filters`` (they pool after every convolution)
    unless given explicitly.
    """
    overrides = settings.overrides()
    variant, presets = settings.variant, _PRESETS[settings.variant]
    if settings.preset not in presets:
        raise ValueError(f"preset {settings.preset!r} is not one of {variant}'s: {list(presets)}")
    foreign = _RECURRENT_ONLY if variant == "transformer" else _TRANSFORMER_ONLY
    for name in foreign:
        if name in overrides:
            raise ValueError(f"{name} is not a size of the {variant} variant")
    merged = {**presets[settings.preset], **overrides}
    pools_follow_filters = "encoder_filters" in overrides and "pools" not in overrides
    if variant in ("nopool", "strips") and pools_follow_filters:
        merged["pools"] = len(merged["encoder_filters"])
    if variant == "transformer" and "embedding_dim" not in overrides:
        merged["embedding_dim"] = merged["decoder_units"]  # tokens are embedded at its width
    return ModelConfig(variant=variant, timing_signal=settings.timing_signal, **merged)


class ConvEncoder(keras.layers.Layer):
    """Image ``[B, H, W, 1]`` -> memory ``[B, L, memory_dim]``, one row per attended location."""

    def __init__(self, config: ModelConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        activation = "tanh" if config.variant in ("nopool", "strips") else "relu"
        for i, filters in enumerate(config.encoder_filters):
            padding = "valid" if i == 0 and config.frame else "same"  # VALID eats the frame
            conv = keras.layers.Conv2D(
                filters, 3, padding=padding, activation=activation, name=f"conv{i}"
            )
            setattr(self, f"conv{i}", conv)  # named attributes: tf.train.Checkpoint skips lists
        self.pool = keras.layers.MaxPooling2D(2, name="pool")
        channels = 1
        for conv in self.convs:
            conv.build((None, None, None, channels))
            channels = conv.filters
        self.built = True

    @property
    def convs(self) -> list[keras.layers.Conv2D]:
        return [getattr(self, f"conv{i}") for i in range(len(self.config.encoder_filters))]

    def call(self, images: tf.Tensor, training: bool = False) -> tf.Tensor:
        self._check_height(images)
        features = images
        for i, conv in enumerate(self.convs):
            features = conv(features)
            if i < self.config.pools:
                features = self.pool(features)
        return self._to_memory(features)

    def _check_height(self, images: tf.Tensor) -> None:
        """Strips bake the canvas height into the feature size, so say so before reshape fails."""
        height = self.config.fixed_height
        if height is None:
            return
        if images.shape[1] is not None and images.shape[1] != height:
            raise ValueError(f"strips needs images {height} px high, got {images.shape[1]}")
        tf.debugging.assert_equal(
            tf.shape(images)[1], height, message=f"strips needs images {height} px high"
        )

    def _to_memory(self, features: tf.Tensor) -> tf.Tensor:
        shape = tf.shape(features)
        batch, height, width = shape[0], shape[1], shape[2]
        channels = self.config.encoder_filters[-1]
        if self.config.has_timing_signal:
            signal = timing_signal_2d(height, width, channels)
            features = features + tf.cast(signal, features.dtype)
        if self.config.variant == "strips":
            columns = tf.transpose(features, [0, 2, 1, 3])
            return tf.reshape(columns, [batch, width, self.config.memory_dim])
        return tf.reshape(features, [batch, height * width, channels])


State = list[list[tf.Tensor]]  # per decoder layer: [h] (GRU) or [h, c] (LSTM)


class AttentionDecoder(keras.layers.Layer):
    """Token decoder with additive attention over the encoder memory.

    ``step`` is the only part inside the recurrence; output layers run once on all steps.
    """

    def __init__(self, config: ModelConfig, vocab_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.singh = config.variant != "seq2seq"
        units = config.decoder_units
        dense = keras.layers.Dense
        self.embedding = keras.layers.Embedding(vocab_size, config.embedding_dim, name="embedding")
        if config.attention == "full_map":
            assert config.locations is not None  # ModelConfig checks it
            self.full_attention = FullMapAttention(
                config.attention_units, config.locations, config.memory_dim, name="att_full"
            )
        else:
            self.attention_memory = dense(config.attention_units, use_bias=False, name="att_memory")
            self.attention_query = dense(config.attention_units, name="att_query")
            self.attention_score = dense(1, use_bias=False, name="att_score")
        cell = _cell_type(config)
        for i in range(config.decoder_layers):
            setattr(self, f"rnn{i}", cell(units, name=f"rnn{i}"))  # not a list: see ConvEncoder
        if self.singh:
            self.init_hidden = dense(config.init_units, activation="tanh", name="init_hidden")
            self.init_state = dense(
                2 * config.decoder_layers * units, activation="tanh", name="init_state"
            )
        deep_activation = "tanh" if self.singh else None  # the notebook's fc1 is linear
        self.deep_output = dense(config.deep_output_units, deep_activation, name="deep_output")
        for i in range(1, config.deep_output_layers):
            layer = dense(config.deep_output_units, deep_activation, name=f"deep_output_{i + 1}")
            setattr(self, f"deep_output_{i + 1}", layer)
        self.logits = dense(vocab_size, dtype="float32", name="logits")
        self.dropout = keras.layers.Dropout(config.dropout) if config.dropout else None
        self._build_sublayers()
        self._recur_graph = tf.function(self._recur, reduce_retracing=True)

    def _build_sublayers(self) -> None:
        """Create every variable now: none may be created inside the compiled recurrence."""
        config, units = self.config, self.config.decoder_units
        self.embedding.build(None)
        if config.attention == "full_map":
            self.full_attention.build_query(units)
        else:
            self.attention_memory.build((None, config.memory_dim))
            self.attention_query.build((None, units))
            self.attention_score.build((None, config.attention_units))
        in_dim = config.embedding_dim + config.memory_dim
        for cell in self.cells:
            cell.build((None, in_dim))
            in_dim = units
        if self.singh:
            init_in = config.memory_dim
            if config.init_from == "full_map":
                assert config.locations is not None  # ModelConfig checks it
                init_in *= config.locations
            self.init_hidden.build((None, init_in))
            self.init_state.build((None, config.init_units))
            deep_in = config.embedding_dim + units + config.memory_dim
        else:
            deep_in = units
        for layer in self.deep_outputs:
            layer.build((None, deep_in))
            deep_in = config.deep_output_units
        self.logits.build((None, config.deep_output_units))
        self.built = True

    @property
    def deep_outputs(self) -> list[keras.layers.Layer]:
        extra = range(2, self.config.deep_output_layers + 1)
        return [self.deep_output] + [getattr(self, f"deep_output_{i}") for i in extra]

    def attention_keys(self, memory: tf.Tensor) -> tf.Tensor:
        """What attention computes from the memory once per image, not once per step."""
        if self.config.attention == "full_map":
            return self.full_attention.keys(memory)
        return self.attention_memory(memory)

    @property
    def cells(self) -> list[keras.layers.Layer]:
        return [getattr(self, f"rnn{i}") for i in range(self.config.decoder_layers)]

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor], training: bool = False) -> tf.Tensor:
        memory, tokens_in = inputs
        embedded = self._drop(self._embed(tokens_in), training)
        outputs, contexts = self._recur_graph(
            memory, self.attention_keys(memory), embedded, self.initial_state(memory)
        )
        return self.output_logits(embedded, outputs, contexts, training)

    def _embed(self, tokens: tf.Tensor) -> tf.Tensor:
        return tf.cast(self.embedding(tokens), self.compute_dtype)

    def _drop(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        return self.dropout(x, training=training) if self.dropout is not None else x

    def initial_state(self, memory: tf.Tensor) -> State:
        """Singh: an MLP over the mean feature sets every h and c; the notebook starts at 0."""
        batch, units = tf.shape(memory)[0], self.config.decoder_units
        if not self.singh:
            zeros = tf.zeros([batch, units], self.compute_dtype)
            return [[zeros] for _ in self.cells]
        if self.config.init_from == "full_map":
            summary = tf.reshape(memory, [batch, -1])
        else:
            summary = tf.reduce_mean(memory, axis=1)
        flat = self.init_state(self.init_hidden(summary))
        parts = tf.split(flat, 2 * len(self.cells), axis=-1)
        return [[parts[2 * i], parts[2 * i + 1]] for i in range(len(self.cells))]

    def attend(
        self, memory: tf.Tensor, keys: tf.Tensor, query: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Bahdanau scores v.tanh(W m + U s) (or the full-map MLP's); softmax in float32 so
        fp16 cannot break it."""
        if self.config.attention == "full_map":
            return self.full_attention.attend(memory, keys, query)
        hidden = tf.tanh(keys + self.attention_query(query)[:, None, :])
        scores = tf.cast(self.attention_score(hidden)[..., 0], tf.float32)
        weights = tf.nn.softmax(scores, axis=-1)
        context = tf.einsum("bl,bld->bd", tf.cast(weights, memory.dtype), memory)
        return context, weights

    def step(
        self, embedded: tf.Tensor, state: State, memory: tf.Tensor, keys: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, State]:
        """One token: attend with the top layer's previous h, then run the stacked cells."""
        context, weights = self.attend(memory, keys, state[-1][0])
        x = tf.concat([embedded, tf.cast(context, embedded.dtype)], axis=-1)
        new_state = []
        for cell, layer_state in zip(self.cells, state, strict=True):
            x, layer_state = cell(x, layer_state)
            new_state.append(list(layer_state))
        return x, context, weights, new_state

    def output_logits(
        self, embedded: tf.Tensor, outputs: tf.Tensor, contexts: tf.Tensor, training: bool
    ) -> tf.Tensor:
        """Singh's deep output sees [embedding; h; context]; the notebook's fc1 sees h only."""
        if self.singh:
            features = tf.concat([embedded, outputs, tf.cast(contexts, outputs.dtype)], axis=-1)
        else:
            features = outputs
        for layer in self.deep_outputs:
            features = layer(features)
        return self.logits(self._drop(features, training))

    def _recur(
        self, memory: tf.Tensor, keys: tf.Tensor, embedded: tf.Tensor, state: State
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Teacher-forced recurrence: ``[B, T, E]`` -> top outputs and contexts ``[B, T, .]``."""
        steps = tf.shape(embedded)[1]
        inputs = tf.TensorArray(embedded.dtype, size=steps).unstack(
            tf.transpose(embedded, [1, 0, 2])
        )
        outputs = tf.TensorArray(
            self.compute_dtype, size=steps, element_shape=[None, self.config.decoder_units]
        )
        contexts = tf.TensorArray(
            memory.dtype, size=steps, element_shape=[None, self.config.memory_dim]
        )

        def body(t, state, outputs, contexts):
            output, context, _, state = self.step(inputs.read(t), state, memory, keys)
            return t + 1, state, outputs.write(t, output), contexts.write(t, context)

        _, _, outputs, contexts = tf.while_loop(
            lambda t, *_: t < steps,
            body,
            (tf.constant(0), state, outputs, contexts),
            maximum_iterations=steps,
        )
        return (
            tf.transpose(outputs.stack(), [1, 0, 2]),
            tf.transpose(contexts.stack(), [1, 0, 2]),
        )

    def _step_fn(self, memory: tf.Tensor, keys: tf.Tensor) -> StepFn:
        """One token for the searches: float32 logits, attention and the new state."""

        def step_fn(tokens: tf.Tensor, state: State) -> tuple[tf.Tensor, tf.Tensor, State]:
            embedded = self._embed(tokens)
            output, context, attention, state = self.step(embedded, state, memory, keys)
            logits = self.output_logits(embedded, output, context, training=False)
            return tf.cast(logits, tf.float32), attention, state

        return step_fn

    def greedy(self, memory: tf.Tensor, max_len: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Argmax feedback from ``<s>``; a row emits 0 (and zero attention) after its ``</s>``."""
        return greedy_search(
            self._step_fn(memory, self.attention_keys(memory)),
            self.initial_state(memory),
            batch_size=tf.shape(memory)[0],
            max_len=max_len,
            start_id=START,
            end_id=END,
        )

    def beam(
        self, memory: tf.Tensor, max_len: tf.Tensor, beam_width: int, length_penalty: float
    ) -> BeamResult:
        """Beam search over the same step as ``greedy``: the memory, its attention keys and the
        initial state are repeated ``beam_width`` times (row b's beams at ``b*K .. b*K+K-1``)."""

        def tile(x: tf.Tensor) -> tf.Tensor:
            return tf.repeat(x, beam_width, axis=0)

        keys = tile(self.attention_keys(memory))  # project once per row, not once per beam
        return beam_search(
            log_probabilities(self._step_fn(tile(memory), keys)),
            tf.nest.map_structure(tile, self.initial_state(memory)),
            batch_size=tf.shape(memory)[0],
            beam_width=beam_width,
            max_len=max_len,
            length_penalty=length_penalty,
            attention_size=tf.shape(memory)[1],
            start_id=START,
            end_id=END,
        )


def _cell_type(config: ModelConfig) -> type:
    if config.variant == "seq2seq":
        return keras.layers.GRUCell
    return PeepholeLSTMCell if config.peepholes else keras.layers.LSTMCell


def _decoder(config: ModelConfig, vocab_size: int) -> keras.layers.Layer:
    if config.variant != "transformer":
        return AttentionDecoder(config, vocab_size, name="decoder")
    return TransformerDecoder(
        vocab_size,
        width=config.decoder_units,
        layers=config.decoder_layers,
        heads=config.heads,
        ff_units=config.ff_units,
        dropout=config.dropout,
        memory_dim=config.memory_dim,
        map_layers=config.map_layers,
        name="decoder",
    )


class FormulaModel(keras.Model):
    """Encoder + attention decoder; ``call`` is teacher forcing, ``greedy_decode`` and
    ``beam_decode`` inference."""

    def __init__(self, config: ModelConfig, vocab_size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.config = config
        self.vocab_size = vocab_size
        self.encoder = ConvEncoder(config, name="encoder")
        self.decoder = _decoder(config, vocab_size)
        self._greedy_graph = tf.function(self._greedy, reduce_retracing=True)
        self._beam_graph = tf.function(self._beam, reduce_retracing=True)
        self.built = True

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor], training: bool = False) -> tf.Tensor:
        """``(images [B,H,W,1], tokens_in [B,T])`` -> float32 logits ``[B, T, vocab_size]``."""
        images, tokens_in = inputs
        memory = self.encoder(images, training=training)
        return self.decoder((memory, tokens_in), training=training)

    def greedy_decode(self, images: Any, max_len: int) -> tuple[tf.Tensor, tf.Tensor]:
        """Token ids int32 ``[B, max_len]`` (``</s>`` kept, 0 after it) and attention float32
        ``[B, max_len, L]``; reshape L with ``encoder_grid``."""
        if isinstance(max_len, int) and max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        images = tf.convert_to_tensor(images, tf.float32)
        return self._greedy_graph(images, tf.convert_to_tensor(max_len, tf.int32))

    def _greedy(self, images: tf.Tensor, max_len: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        memory = self.encoder(images, training=False)
        return self.decoder.greedy(memory, max_len)

    def beam_decode(
        self, images: Any, max_len: int, beam_width: int, length_penalty: float = 0.6
    ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        """Like ``greedy_decode`` (same ids and attention contract, width 1 gives the same
        result) plus float32 ``[B]`` scores: summed log-probs over GNMT's length penalty
        ``((5 + len) / 6) ** length_penalty``, which keeps the search from favouring short
        outputs. Each new width or penalty compiles its own graph; max_len does not."""
        check_arguments(beam_width, max_len, length_penalty)
        if beam_width > self.vocab_size:
            raise ValueError(
                f"beam_width must be <= the vocabulary size {self.vocab_size}, got {beam_width}"
            )
        images = tf.convert_to_tensor(images, tf.float32)
        max_len = tf.convert_to_tensor(max_len, tf.int32)
        result = self._beam_graph(images, max_len, beam_width, float(length_penalty))
        return result.ids, result.scores, result.attention

    def _beam(
        self, images: tf.Tensor, max_len: tf.Tensor, beam_width: int, length_penalty: float
    ) -> BeamResult:
        memory = self.encoder(images, training=False)
        return self.decoder.beam(memory, max_len, beam_width, length_penalty)

    def encoder_grid(self, images: Any) -> tuple[int, int]:
        """``(rows, cols)`` of the attended locations for images (or an image batch shape) like
        this, so that L = rows * cols; strips attend over columns, so their grid is ``1 x W'``."""
        shape = tuple(getattr(images, "shape", images))
        height, width = int(shape[1]), int(shape[2])
        multiple = self.config.size_multiple
        if self.config.variant == "strips":
            return 1, width // multiple
        return height // multiple, width // multiple


def build_model(config: ModelConfig, vocab_size: int) -> FormulaModel:
    """A fully built model (all variables exist, so ``count_params`` works before any call).

    Build it inside ``strategy.scope()`` and after setting any global mixed-precision policy.
    """
    if vocab_size <= UNK:
        raise ValueError(f"vocab_size must include the 4 special tokens, got {vocab_size}")
    return FormulaModel(config, vocab_size, name=f"formula_{config.variant}")


def _target_mask(tokens_out: tf.Tensor) -> tf.Tensor:
    return tf.cast(tf.not_equal(tokens_out, PAD), tf.float32)


def masked_loss(tokens_out: tf.Tensor, logits: tf.Tensor, smoothing: float = 0.0) -> tf.Tensor:
    """Mean cross-entropy over the real (non-pad) target tokens of this batch; with
    ``smoothing`` the target puts that much of its mass evenly on every token."""
    tokens_out = tf.cast(tokens_out, tf.int32)
    logits = tf.cast(logits, tf.float32)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tokens_out, logits=logits)
    if smoothing:
        uniform = -tf.reduce_mean(tf.nn.log_softmax(logits), axis=-1)
        losses = (1.0 - smoothing) * losses + smoothing * uniform
    mask = _target_mask(tokens_out)
    return tf.reduce_sum(losses * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def token_accuracy(tokens_out: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Fraction of real target tokens whose argmax prediction is right."""
    tokens_out = tf.cast(tokens_out, tf.int32)
    predicted = tf.argmax(logits, axis=-1, output_type=tf.int32)
    hits = tf.cast(tf.equal(predicted, tokens_out), tf.float32)
    mask = _target_mask(tokens_out)
    return tf.reduce_sum(hits * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def regularization_loss(model: FormulaModel) -> tf.Tensor:
    """``l2 * sum(w**2)`` over kernels (dense, conv and recurrent), not biases or embeddings."""
    kernels = [v for v in model.trainable_variables if v.name.endswith("kernel")]
    if model.config.l2 == 0 or not kernels:
        return tf.constant(0.0)
    total = tf.add_n([tf.reduce_sum(tf.square(tf.cast(v.value, tf.float32))) for v in kernels])
    return model.config.l2 * total
