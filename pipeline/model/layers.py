"""Building blocks of Singh 2018's published decoder that Keras does not have as such.

* ``PeepholeLSTMCell``: an LSTM whose gates also see the cell state (Graves 2013), as the
  paper's two 1500-unit decoder layers; ``4n(in + n) + 4n + 3n`` parameters.
* ``FullMapAttention``: the paper's "MLP_full" attention. It reads the whole flattened feature
  map with the previous top hidden state through an MLP that outputs one score per location,
  so it needs a fixed number of locations (a fixed canvas), unlike Bahdanau's per-location
  scores.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf

keras = tf.keras


class PeepholeLSTMCell(keras.layers.Layer):
    """``cell(x, [h, c]) -> (h', [h', c'])``, the state layout of Keras' own ``LSTMCell``.

    Input and forget gates see ``c``, the output gate sees ``c'``; the forget gate's bias starts
    at 1 so that early training keeps the cell's memory (the paper's ``forget_bias=1.0``).
    """

    def __init__(self, units: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.units = units
        self.state_size = [units, units]

    def build(self, input_shape: Any) -> None:
        n, inputs = self.units, int(input_shape[-1])
        self.kernel = self.add_weight(
            name="kernel", shape=(inputs, 4 * n), initializer="glorot_uniform"
        )
        self.recurrent_kernel = self.add_weight(
            name="recurrent_kernel", shape=(n, 4 * n), initializer="orthogonal"
        )
        forget_one = tf.concat([tf.zeros([n]), tf.ones([n]), tf.zeros([2 * n])], axis=0)
        self.bias = self.add_weight(
            name="bias", shape=(4 * n,), initializer=lambda shape, dtype=None: forget_one
        )
        self.peepholes = self.add_weight(name="peepholes", shape=(3, n), initializer="zeros")
        self.built = True

    def call(self, inputs: tf.Tensor, states: list[tf.Tensor]) -> tuple[tf.Tensor, list]:
        h, c = states
        z = tf.matmul(inputs, self.kernel) + tf.matmul(h, self.recurrent_kernel) + self.bias
        z_input, z_forget, z_cell, z_output = tf.split(z, 4, axis=-1)
        peep_input, peep_forget, peep_output = tf.unstack(tf.cast(self.peepholes, c.dtype))
        input_gate = tf.sigmoid(z_input + peep_input * c)
        forget_gate = tf.sigmoid(z_forget + peep_forget * c)
        c_new = forget_gate * c + input_gate * tf.tanh(z_cell)
        output_gate = tf.sigmoid(z_output + peep_output * c_new)
        h_new = output_gate * tf.tanh(c_new)
        return h_new, [h_new, c_new]


class FullMapAttention(keras.layers.Layer):
    """Scores for all ``locations`` at once from [flattened map; query]: FC ``units`` tanh, FC
    ``max(locations, 128)`` tanh, FC ``locations``, softmax.

    The first layer's weights are split into the map's part (with the bias), applied once per
    image by ``keys``, and the query's part, applied at every step by ``attend``; their sum is
    the published layer on the concatenation, with the same parameters.
    """

    def __init__(self, units: int, locations: int, memory_dim: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.locations = locations
        dense = keras.layers.Dense
        self.map_part = dense(units, name="map")
        self.query_part = dense(units, use_bias=False, name="query")
        self.hidden = dense(max(locations, 128), activation="tanh", name="hidden")
        self.scores = dense(locations, name="scores")
        self.map_part.build((None, locations * memory_dim))
        self.hidden.build((None, units))
        self.scores.build((None, max(locations, 128)))

    def build_query(self, query_dim: int) -> None:
        self.query_part.build((None, query_dim))
        self.built = True

    def keys(self, memory: tf.Tensor) -> tf.Tensor:
        """``[B, L, D]`` -> ``[B, units]``: the map's share of the first layer, once per image."""
        flat = tf.reshape(memory, [tf.shape(memory)[0], -1])
        return self.map_part(flat)

    def attend(
        self, memory: tf.Tensor, keys: tf.Tensor, query: tf.Tensor
    ) -> tuple[tf.Tensor, tf.Tensor]:
        """Context ``[B, D]`` and float32 weights ``[B, L]``; softmax in float32."""
        hidden = self.hidden(tf.tanh(keys + self.query_part(query)))
        weights = tf.nn.softmax(tf.cast(self.scores(hidden), tf.float32), axis=-1)
        context = tf.einsum("bl,bld->bd", tf.cast(weights, memory.dtype), memory)
        return context, weights
