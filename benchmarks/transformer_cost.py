"""The transformer variant's cost per training sample, counted and measured, beside NOPOOL's.

For each transformer preset, from the layer shapes (2 FLOPs per multiply-add forward, backward
twice the forward, as ``paper_graph.py`` counts Singh's graph):

- encoder: the convolutions over an ``--height`` x ``--width`` image;
- decoder, per block: per token the self-attention projections (4 d^2), scores and mixing over
  all ``--tokens`` positions (the causal mask halves the useful part, not the work), the
  cross-attention's query and output projections (2 d^2), scores and mixing over the map's L
  locations, and the feed-forward (2 d ff); per image the map's keys and values (2 L D d);
- the logits, d V per token.

Then it times real training steps of the ``small`` preset and of NOPOOL's on this CPU, side by
side at the same batch and image size, in float32 and under each other ``train.mixed_precision``
of ``--precisions`` (bfloat16 by default, for CPUs with AVX512_BF16), and projects the large
preset's samples/s on a GPU at ``--gpu-tflops`` (sustained, assumed: stated, not measured).

    python benchmarks/transformer_cost.py [--tokens 100] [--height 64] [--width 480] [--batch 8]
        [--precisions off bf16]
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

from pipeline import config  # noqa: E402
from pipeline.model import devices, networks  # noqa: E402

VOCAB = 300


def model_config(variant: str, preset: str) -> networks.ModelConfig:
    return networks.model_config(config.section("model", {"variant": variant, "preset": preset}))


def encoder_macs(cfg: networks.ModelConfig, height: int, width: int) -> tuple[int, int]:
    """(multiply-adds, locations L) of the convolutions for one image."""
    channels, macs = 1, 0
    for i, filters in enumerate(cfg.encoder_filters):
        macs += height * width * 9 * channels * filters
        if i < cfg.pools:
            height, width = height // 2, width // 2
        channels = filters
    return macs, height * width


def transformer_flops(cfg: networks.ModelConfig, height: int, width: int, tokens: int) -> float:
    """Training FLOPs for one sample (forward, and backward at twice the forward)."""
    encoder, locations = encoder_macs(cfg, height, width)
    d, ff, memory = cfg.decoder_units, cfg.ff_units, cfg.memory_dim
    per_token = 4 * d * d + 2 * tokens * d + 2 * d * d + 2 * locations * d + 2 * d * ff
    per_image = 2 * locations * memory * d
    decoder = cfg.decoder_layers * (tokens * per_token + per_image) + tokens * d * VOCAB
    return 3 * 2 * (encoder + decoder)


def time_steps(
    cfg: networks.ModelConfig, batch: int, shape: tuple[int, int, int], policy: str
) -> float:
    """Seconds per training step (forward, backward, Adam) under a Keras precision policy,
    median of 5 after 2 warm-ups."""
    height, width, tokens = shape
    tf.keras.mixed_precision.set_global_policy(policy)
    model = networks.build_model(cfg, VOCAB)
    optimizer = tf.keras.optimizers.Adam(1e-3)
    optimizer.build(model.trainable_variables)
    rng = np.random.default_rng(0)
    images = (rng.random((batch, height, width, 1)) < 0.1).astype(np.float32)
    targets = rng.integers(4, VOCAB, (batch, tokens + 1)).astype(np.int32)

    @tf.function
    def step(images, targets):
        with tf.GradientTape() as tape:
            logits = model((images, targets[:, :-1]), training=True)
            loss = networks.masked_loss(targets[:, 1:], logits)
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply(grads, model.trainable_variables)
        return loss

    times = []
    for _ in range(7):
        start = time.perf_counter()
        float(step(images, targets))
        times.append(time.perf_counter() - start)
    return float(np.median(times[2:]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--height", type=int, default=64)
    parser.add_argument("--width", type=int, default=480)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument(
        "--precisions", nargs="+", default=["off", "bf16"], help="train.mixed_precision values"
    )
    parser.add_argument("--gpu-tflops", type=float, nargs="+", default=[20.0, 60.0])
    args = parser.parse_args(argv)
    shape = (args.height, args.width, args.tokens)
    print(f"one sample: {args.height} x {args.width} px image, {args.tokens} target tokens")
    print(f"{'preset':8} {'params':>10} {'GFLOP/sample':>13}")
    flops = {}
    for preset in ("tiny", "small", "large"):
        cfg = model_config("transformer", preset)
        flops[preset] = transformer_flops(cfg, *shape)
        params = networks.build_model(cfg, VOCAB).count_params()
        print(f"{preset:8} {params:>10,} {flops[preset] / 1e9:>13.2f}")
    print(f"\ntraining steps on this CPU, batch {args.batch} (median of 5):")
    rates = {}
    for variant in ("nopool", "transformer"):
        for precision in args.precisions:
            policy = devices.precision_policy(precision, gpus=False)
            seconds = time_steps(model_config(variant, "small"), args.batch, shape, policy)
            rates[variant, precision] = args.batch / seconds
            print(
                f"  {variant:12} small, {policy:15} {seconds:.3f} s/step, "
                f"{rates[variant, precision]:.1f} samples/s"
            )
    first = args.precisions[0]
    for precision in args.precisions[1:]:
        for variant in ("nopool", "transformer"):
            ratio = rates[variant, precision] / rates[variant, first]
            print(f"  {variant} {precision}/{first} samples/s: {ratio:.2f}x")
    rates = {variant: rates[variant, first] for variant in ("nopool", "transformer")}
    achieved = flops["small"] * rates["transformer"] / 1e9
    print(f"  transformer/nopool samples/s: {rates['transformer'] / rates['nopool']:.2f}x")
    print(f"  transformer small achieved {achieved:.1f} GFLOP/s here")
    for tflops in args.gpu_tflops:
        rate = tflops * 1e12 / flops["large"]
        print(f"large on one GPU sustaining {tflops:g} TFLOP/s (assumed): {rate:,.0f} samples/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
