"""Singh 2018's published graph: parameters, FLOPs and activation memory per training step.

Builds I2L-NOPOOL and I2L-STRIPS exactly (``networks.SINGH_2018``, 339 tokens) and counts, per
training step at the paper's batch per GPU (``--batch 28``) and a typical target length
(``--tokens``; the paper's bins reach 150):

- FLOPs, from the layer shapes: 2 per multiply-add forward, and backward twice the forward
  (the usual rule for dense and convolution layers); the decoder's work is per token, the
  encoder's, the attention keys' and the init MLP's once per image;
- activation memory: the float32 tensors the backward pass keeps (every layer output, and per
  token the attention, LSTM gates and states, deep output), without the framework's workspace;
- weights, gradients and Adam's two moments: 4 copies of the parameters.

Then it times forward + backward steps of the real graph on this CPU at a small batch, so the
FLOP rate achieved here is measured, and projects a GPU's samples/s and memory at ``--gpu-tflops``
(sustained float32 TFLOP/s: assumptions to state, not measurements; an RNN decoder stepping
one token at a time keeps a GPU far from its peak).

    python benchmarks/paper_graph.py [--batch 28] [--tokens 100] [--cpu-batch 2] [--gpu-tflops 5 20]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.model import networks  # noqa: E402

TOKENS = 339
FLOAT = 4  # bytes


def encoder_cost(config: networks.ModelConfig) -> tuple[int, int]:
    """(multiply-adds, activation floats) of the convolutions and pools for one image."""
    height, width = config.canvas_height, config.canvas_width
    channels, macs, floats = 1, 0, 0
    for filters in config.encoder_filters:
        macs += height * width * 9 * channels * filters
        floats += 2 * height * width * filters  # the convolution's output and its tanh
        height, width, channels = height // 2, width // 2, filters
        floats += height * width * filters  # the pool's output
    return macs, floats


def decoder_cost(config: networks.ModelConfig) -> tuple[int, int, int, int]:
    """(multiply-adds once per image, per token; activation floats once, per token)."""
    locations, memory, units = config.locations, config.memory_dim, config.decoder_units
    flat = locations * memory
    hidden = max(locations, 128)
    once = flat * config.attention_units + flat * config.init_units
    once += config.init_units * 2 * config.decoder_layers * units
    per_token = units * config.attention_units + config.attention_units * hidden
    per_token += hidden * locations + locations * memory  # scores, and the weighted sum
    lstm_in = config.embedding_dim + memory
    for _ in range(config.decoder_layers):
        per_token += 4 * units * (lstm_in + units)
        lstm_in = units
    deep_in = config.embedding_dim + units + memory
    for _ in range(config.deep_output_layers):
        per_token += deep_in * config.deep_output_units
        deep_in = config.deep_output_units
    per_token += deep_in * TOKENS
    once_floats = config.attention_units + config.init_units + 2 * config.decoder_layers * units
    token_floats = config.attention_units + 2 * hidden + memory  # attention
    token_floats += config.decoder_layers * 7 * units  # four gates, c, tanh(c), h
    token_floats += config.deep_output_layers * config.deep_output_units + 2 * TOKENS
    return once, per_token, once_floats, token_floats


def step_flops_and_memory(config: networks.ModelConfig, batch: int, tokens: int) -> tuple:
    enc_macs, enc_floats = encoder_cost(config)
    once, per_token, once_floats, token_floats = decoder_cost(config)
    forward = 2 * batch * (enc_macs + once + tokens * per_token)
    activations = FLOAT * batch * (enc_floats + once_floats + tokens * token_floats)
    return 3 * forward, activations


def time_cpu_steps(config: networks.ModelConfig, batch: int, tokens: int, steps: int) -> float:
    """Seconds per forward + backward + Adam step of the real graph, after one warm-up."""
    model = networks.build_model(config, TOKENS)
    optimizer = tf.keras.optimizers.Adam(1e-4, beta_1=0.5, beta_2=0.9)
    size = (config.canvas_height + 2 * config.frame, config.canvas_width + 2 * config.frame)
    rng = np.random.default_rng(0)
    images = tf.constant((rng.random((batch, *size, 1)) < 0.1).astype(np.float32))
    ids = tf.constant(rng.integers(4, TOKENS, (batch, tokens + 1)).astype(np.int32))

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            logits = model((images, ids[:, :-1]), training=True)
            loss = networks.masked_loss(ids[:, 1:], logits)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - start) / steps


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=28)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--cpu-batch", type=int, default=2)
    parser.add_argument("--cpu-steps", type=int, default=3)
    parser.add_argument("--gpu-tflops", type=float, nargs="+", default=[5.0, 20.0])
    args = parser.parse_args(argv)
    print(f"batch {args.batch}, {args.tokens} target tokens, 339-token vocabulary\n")
    for variant in ("nopool", "strips"):
        config = networks.ModelConfig(variant=variant, **networks.SINGH_2018)
        params = networks.build_model(config, TOKENS).count_params()
        flops, activations = step_flops_and_memory(config, args.batch, args.tokens)
        state = 4 * FLOAT * params  # weights, gradients, Adam's m and v
        cpu_seconds = time_cpu_steps(config, args.cpu_batch, args.tokens, args.cpu_steps)
        cpu_flops, _ = step_flops_and_memory(config, args.cpu_batch, args.tokens)
        print(f"{variant}: {params:,} parameters")
        print(f"  per step: {flops / 1e12:.2f} TFLOP, activations {activations / 2**30:.1f} GiB,")
        print(f"            weights + gradients + Adam {state / 2**30:.2f} GiB")
        print(
            f"  this CPU, batch {args.cpu_batch}: {cpu_seconds:.1f} s/step, "
            f"{cpu_flops / cpu_seconds / 1e9:.0f} GFLOP/s achieved, "
            f"{args.cpu_batch / cpu_seconds:.2f} samples/s"
        )
        for rate in args.gpu_tflops:
            samples = args.batch / (flops / (rate * 1e12))
            print(f"  one GPU at {rate:g} TFLOP/s sustained (assumed): {samples:.0f} samples/s")
        memory = (activations + state) / 2**30
        print(f"  GPU memory at batch {args.batch}: {memory:.1f} GiB without workspace\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
