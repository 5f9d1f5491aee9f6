"""The ``transformer`` variant's decoder: masked self-attention, cross-attention over the image's
feature map and a feed-forward layer, pre-norm, sinusoidal token positions.

Teacher forcing runs every position at once (a causal mask keeps position t from seeing later
tokens), so a training step has no loop over tokens: this is what makes it train faster per
compute-hour than the recurrent decoders. Decoding runs one token at a time inside one compiled
``tf.while_loop`` with the keys and values of earlier positions cached, through the same
``beam_search`` as the other variants.

Invariants (tested): the logits at position t depend on tokens ``<= t`` only, so padding after a
formula never changes it; stepping with the cache gives the logits of the full pass, position by
position, to float rounding.

The cache holds ``max_len`` positions, zero where not yet written: a step attends over all of
them with the unwritten ones masked out, which costs O(max_len) per step but keeps every loop
variable's shape fixed (``beam_search`` reorders it by gathering along the batch).
"""

from __future__ import annotations

import math
from typing import Any

import tensorflow as tf

from pipeline.contracts import END_ID as END
from pipeline.contracts import START_ID as START
from pipeline.model.beam import BeamResult, StepFn, beam_search, log_probabilities
from pipeline.model.greedy import greedy_search
from pipeline.model.positions import timing_signal_1d

keras = tf.keras

_MASKED = -1e9  # a score that softmax turns into exactly 0 in float32

Cache = dict[str, Any]  # "keys", "values": per block [B, H, max_len, dk]; "position": [B]


class MultiHeadAttention(keras.layers.Layer):
    """Scaled dot-product attention over ``heads`` heads, with the projections split out so
    that keys and values can be computed once (the image's) or cached (earlier tokens')."""

    def __init__(self, width: int, heads: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.heads, self.depth = heads, width // heads
        dense = keras.layers.Dense
        self.query = dense(width, name="query")
        # no bias: it adds the same q.b to every score of a query, which softmax ignores, so its
        # gradient is rounding noise that Adam would blow up into steps
        self.key = dense(width, use_bias=False, name="key")
        self.value = dense(width, name="value")
        self.out = dense(width, name="out")

    def build_for(self, query_dim: int, memory_dim: int) -> None:
        self.query.build((None, query_dim))
        self.key.build((None, memory_dim))
        self.value.build((None, memory_dim))
        self.out.build((None, self.heads * self.depth))
        self.built = True

    def split(self, x: tf.Tensor) -> tf.Tensor:
        """``[B, T, H*dk]`` -> ``[B, H, T, dk]``."""
        batch, steps = tf.shape(x)[0], tf.shape(x)[1]
        return tf.transpose(tf.reshape(x, [batch, steps, self.heads, self.depth]), [0, 2, 1, 3])

    def keys_values(self, source: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return self.split(self.key(source)), self.split(self.value(source))

    def attend(
        self, x: tf.Tensor, keys: tf.Tensor, values: tf.Tensor, allowed: tf.Tensor | None
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """``x [B, T, D]`` over ``keys/values [B, H, S, dk]`` -> ``([B, T, D], weights
        [B, H, T, S])``; ``allowed`` broadcasts to ``[B, H, T, S]``. Softmax in float32."""
        query = self.split(self.query(x))
        scores = tf.matmul(query, keys, transpose_b=True) / math.sqrt(self.depth)
        scores = tf.cast(scores, tf.float32)
        if allowed is not None:
            scores = tf.where(allowed, scores, _MASKED)
        weights = tf.nn.softmax(scores, axis=-1)
        mixed = tf.matmul(tf.cast(weights, values.dtype), values)
        batch, steps = tf.shape(mixed)[0], tf.shape(mixed)[2]
        merged = tf.reshape(tf.transpose(mixed, [0, 2, 1, 3]), [batch, steps, -1])
        return self.out(merged), weights


class _Residual(keras.layers.Layer):
    """A layer whose branches are dropped out (``dropout`` 0: none) before their residual sum."""

    def __init__(self, dropout: float, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.dropout = keras.layers.Dropout(dropout) if dropout else None

    def _drop(self, x: tf.Tensor, training: bool) -> tf.Tensor:
        return self.dropout(x, training=training) if self.dropout is not None else x


class FeedForward(_Residual):
    """The pre-norm feed-forward branch of a block: ``drop(out(drop(gelu(in(LN x)))))``."""

    def __init__(self, width: int, ff_units: int, dropout: float, **kwargs: Any) -> None:
        super().__init__(dropout, **kwargs)
        self.norm = keras.layers.LayerNormalization(epsilon=1e-6, name="norm")
        self.inner = keras.layers.Dense(ff_units, activation="gelu", name="inner")
        self.outer = keras.layers.Dense(width, name="outer")
        for layer in (self.norm, self.inner):
            layer.build((None, width))
        self.outer.build((None, ff_units))
        self.built = True

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        hidden = self._drop(self.inner(self.norm(x)), training)
        return self._drop(self.outer(hidden), training)


class DecoderBlock(_Residual):
    """Pre-norm: ``x + self(LN x)``, then ``+ cross(LN x, map)``, then ``+ ffn(LN x)``."""

    def __init__(self, width: int, heads: int, ff_units: int, dropout: float, **kwargs) -> None:
        super().__init__(dropout, **kwargs)
        norm = keras.layers.LayerNormalization
        self.self_norm = norm(epsilon=1e-6, name="self_norm")
        self.self_attention = MultiHeadAttention(width, heads, name="self_attention")
        self.cross_norm = norm(epsilon=1e-6, name="cross_norm")
        self.cross_attention = MultiHeadAttention(width, heads, name="cross_attention")
        self.feed_forward = FeedForward(width, ff_units, dropout, name="feed_forward")
        self.width = width

    def build_for(self, memory_dim: int) -> None:
        for norm in (self.self_norm, self.cross_norm):
            norm.build((None, self.width))
        self.self_attention.build_for(self.width, self.width)
        self.cross_attention.build_for(self.width, memory_dim)
        self.built = True

    def run(
        self,
        x: tf.Tensor,
        own: tuple[tf.Tensor, tf.Tensor, tf.Tensor],
        image: tuple[tf.Tensor, tf.Tensor],
        training: bool,
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """``own`` is (keys, values, allowed) of the tokens seen so far, ``image`` the map's
        keys and values; returns the new ``x`` and the cross-attention weights."""
        keys, values, allowed = own
        attended, _ = self.self_attention.attend(self.self_norm(x), keys, values, allowed)
        x = x + self._drop(attended, training)
        attended, weights = self.cross_attention.attend(self.cross_norm(x), *image, None)
        x = x + self._drop(attended, training)
        return x + self.feed_forward(x, training=training), weights


class MapBlock(_Residual):
    """Pre-norm self-attention over the image's feature map, then a feed-forward layer (a
    hybrid ViT's encoder block on our CNN's map): each location sees the whole formula before
    the decoder's cross-attention looks for its place in it. No mask: every location is real."""

    def __init__(self, width: int, heads: int, ff_units: int, dropout: float, **kwargs) -> None:
        super().__init__(dropout, **kwargs)
        self.attention_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="attention_norm")
        self.attention = MultiHeadAttention(width, heads, name="attention")
        self.feed_forward = FeedForward(width, ff_units, dropout, name="feed_forward")
        self.attention_norm.build((None, width))
        self.attention.build_for(width, width)
        self.built = True

    def call(self, x: tf.Tensor, training: bool = False) -> tf.Tensor:
        normed = self.attention_norm(x)
        attended, _ = self.attention.attend(normed, *self.attention.keys_values(normed), None)
        x = x + self._drop(attended, training)
        return x + self.feed_forward(x, training=training)


class TransformerDecoder(keras.layers.Layer):
    """Token decoder with the interface of the recurrent ``AttentionDecoder``: ``call`` (teacher
    forcing), ``greedy`` and ``beam`` over an encoder memory ``[B, L, memory_dim]``."""

    def __init__(
        self,
        vocab_size: int,
        width: int,
        layers: int,
        heads: int,
        ff_units: int,
        dropout: float,
        memory_dim: int,
        map_layers: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if width % heads or (map_layers and memory_dim % heads):
            raise ValueError(
                f"the width {width} (and with map layers the map's {memory_dim}) must be a "
                f"multiple of the heads {heads}"
            )
        self.width, self.layers, self.map_layers = width, layers, map_layers
        for i in range(map_layers):
            setattr(self, f"map_block{i}", MapBlock(memory_dim, heads, ff_units, dropout))
        self.embedding = keras.layers.Embedding(vocab_size, width, name="embedding")
        for i in range(layers):  # named attributes: tf.train.Checkpoint skips lists
            block = DecoderBlock(width, heads, ff_units, dropout, name=f"block{i}")
            setattr(self, f"block{i}", block)
        # the map's features are ReLU outputs of any scale plus a timing signal in [-1, 1]:
        # normalized, positions weigh as much as content when the keys are formed
        self.memory_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="memory_norm")
        self.final_norm = keras.layers.LayerNormalization(epsilon=1e-6, name="final_norm")
        self.logits = keras.layers.Dense(vocab_size, dtype="float32", name="logits")
        self.dropout = keras.layers.Dropout(dropout) if dropout else None
        self.embedding.build(None)
        for block in self.blocks:
            block.build_for(memory_dim)
        self.memory_norm.build((None, memory_dim))
        self.final_norm.build((None, width))
        self.logits.build((None, width))
        self.built = True

    @property
    def blocks(self) -> list[DecoderBlock]:
        return [getattr(self, f"block{i}") for i in range(self.layers)]

    def _inputs(self, tokens: tf.Tensor, first: tf.Tensor, training: bool) -> tf.Tensor:
        """Embedded tokens ``[B, T]`` (scaled by sqrt(width)) plus the positions from ``first``."""
        embedded = tf.cast(self.embedding(tokens), tf.float32) * math.sqrt(self.width)
        steps = tf.shape(tokens)[1]
        signal = timing_signal_1d(first + tf.range(steps), self.width)
        x = tf.cast(embedded + signal[None], self.compute_dtype)
        return self.dropout(x, training=training) if self.dropout is not None else x

    def _image(
        self, memory: tf.Tensor, training: bool = False
    ) -> list[tuple[tf.Tensor, tf.Tensor]]:
        """Each block's keys and values of the map: once per image, not once per token."""
        memory = tf.cast(memory, self.compute_dtype)
        for i in range(self.map_layers):
            memory = getattr(self, f"map_block{i}")(memory, training=training)
        memory = self.memory_norm(memory)
        return [block.cross_attention.keys_values(memory) for block in self.blocks]

    def _output(self, x: tf.Tensor, cross: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Logits, and the last block's cross-attention averaged over heads: the heatmaps."""
        return self.logits(self.final_norm(x)), tf.reduce_mean(cross, axis=1)

    def call(self, inputs: tuple[tf.Tensor, tf.Tensor], training: bool = False) -> tf.Tensor:
        memory, tokens_in = inputs
        x = self._inputs(tokens_in, tf.constant(0), training)
        steps = tf.shape(tokens_in)[1]
        causal = tf.linalg.band_part(tf.ones([steps, steps], tf.bool), -1, 0)
        cross = None
        for block, image in zip(self.blocks, self._image(memory, training), strict=True):
            keys, values = block.self_attention.keys_values(block.self_norm(x))
            x, cross = block.run(x, (keys, values, causal), image, training)
        return self._output(x, cross)[0]

    # -- one token at a time ---------------------------------------------------------------
    def start_cache(self, batch: tf.Tensor, max_len: tf.Tensor) -> Cache:
        shape = [batch, self.blocks[0].self_attention.heads, max_len, self.width]
        shape[-1] //= shape[1]
        zeros = tf.zeros(shape, self.compute_dtype)
        return {
            "keys": [zeros for _ in self.blocks],
            "values": [zeros for _ in self.blocks],
            "position": tf.zeros([batch], tf.int32),
        }

    def step(
        self, tokens: tf.Tensor, cache: Cache, image: list[tuple[tf.Tensor, tf.Tensor]]
    ) -> tuple[tf.Tensor, tf.Tensor, Cache]:
        """Tokens ``[B]`` at ``cache["position"]`` -> float32 logits ``[B, V]``, attention
        ``[B, L]`` and the cache with this position written."""
        position = cache["position"][0]  # every row is at the same position
        slots = tf.shape(cache["keys"][0])[2]
        here = tf.one_hot(position, slots, dtype=self.compute_dtype)[None, None, :, None]
        allowed = (tf.range(slots) <= position)[None, None, None, :]
        x = self._inputs(tokens[:, None], position, training=False)
        new = {"keys": [], "values": [], "position": cache["position"] + 1}
        cross = None
        for i, (block, image_kv) in enumerate(zip(self.blocks, image, strict=True)):
            key, value = block.self_attention.keys_values(block.self_norm(x))
            keys = cache["keys"][i] * (1 - here) + key * here
            values = cache["values"][i] * (1 - here) + value * here
            new["keys"].append(keys)
            new["values"].append(values)
            x, cross = block.run(x, (keys, values, allowed), image_kv, training=False)
        logits, attention = self._output(x, cross)
        return logits[:, 0], attention[:, 0], new

    def _step_fn(self, image: list[tuple[tf.Tensor, tf.Tensor]]) -> StepFn:
        def step_fn(tokens: tf.Tensor, cache: Cache) -> tuple[tf.Tensor, tf.Tensor, Cache]:
            return self.step(tokens, cache, image)

        return step_fn

    def greedy(self, memory: tf.Tensor, max_len: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        """Argmax feedback from ``<s>``; a row emits 0 (and zero attention) after its ``</s>``."""
        batch = tf.shape(memory)[0]
        return greedy_search(
            self._step_fn(self._image(memory)),
            self.start_cache(batch, max_len),
            batch_size=batch,
            max_len=max_len,
            start_id=START,
            end_id=END,
        )

    def beam(
        self, memory: tf.Tensor, max_len: tf.Tensor, beam_width: int, length_penalty: float
    ) -> BeamResult:
        """Beam search over ``step``; the map's keys and values are repeated per beam (row b's
        beams at ``b*K .. b*K+K-1``), the cache is what ``beam_search`` reorders."""
        batch = tf.shape(memory)[0]
        image = [
            tuple(tf.repeat(part, beam_width, axis=0) for part in pair)
            for pair in self._image(memory)
        ]
        return beam_search(
            log_probabilities(self._step_fn(image)),
            self.start_cache(batch * beam_width, max_len),
            batch_size=batch,
            beam_width=beam_width,
            max_len=max_len,
            length_penalty=length_penalty,
            attention_size=tf.shape(memory)[1],
            start_id=START,
            end_id=END,
        )
