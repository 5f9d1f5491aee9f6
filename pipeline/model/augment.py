"""On-the-fly augmentation of training images, so a model meets screenshots, scans and JPEGs
before a user shows it one.

Our renders are clean: one renderer, anti-aliased black on white, every formula at one scale.
What ``predict`` gives the model after its own normalization (cropped to the ink, scaled to the
render dpi, inverted when the background was dark, as ink with 1 = ink) is not: the scale is
only estimated, strokes come thinner or bolder from another renderer, edges blur and ring after
resampling and JPEG, a gray or tinted page (or an inverted dark one) leaves a floor of ink
everywhere and its ink never reaches 1. Each kind below imitates one of these, with its
probability and range in ``params.yaml`` (``augment``); every probability is 0 by default, and
then the input pipeline does not call this module at all.

Deterministic: every draw is a stateless random op keyed by the dataset's seed (``train.seed``
plus the epoch) and a hash of the row's id, so the same params give the same batches on every
run, a resumed run sees what the killed one would have, and an image looks different each epoch.
Each kind has its own fixed stream, so turning one kind on never changes another's draws.
Images keep their labels; geometry may change their size, within ``max_height``/``max_width``
(a fixed canvas or height) when given.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import tensorflow as tf

from pipeline.config import AugmentSettings

# each kind's stream: fold_in(key, stream) decides whether it applies, fold_in(key, 100 + stream)
# draws its strength; fixed numbers, so adding a kind never moves another's draws
STREAMS = {
    "scale": 1,
    "aspect": 2,
    "rotate": 3,
    "shift": 4,
    "stroke": 5,
    "blur": 6,
    "binarize": 7,
    "background": 8,
    "noise": 9,
    "jpeg": 10,
}
_HASH_BUCKETS = 2**62


def augmenter(
    settings: AugmentSettings,
    seed: int | tf.Tensor,
    max_height: int | None = None,
    max_width: int | None = None,
) -> Callable[[dict], dict]:
    """A ``tf.data`` map over decoded rows (``ink`` uint8 [h, w, 1], 1 = ink; ``id``) that
    augments the ink and leaves everything else alone."""

    def apply(row: dict) -> dict:
        key = row_key(seed, row["id"])
        return row | {"ink": augment_ink(row["ink"], key, settings, max_height, max_width)}

    return apply


def row_key(seed: int | tf.Tensor, row_id: tf.Tensor) -> tf.Tensor:
    """The stateless seed of one row in one epoch: the dataset's seed and the id's fingerprint."""
    return tf.stack(
        [tf.cast(seed, tf.int64), tf.strings.to_hash_bucket_fast(row_id, _HASH_BUCKETS)]
    )


def augment_ink(
    ink: tf.Tensor,
    key: tf.Tensor,
    settings: AugmentSettings,
    max_height: int | None = None,
    max_width: int | None = None,
) -> tf.Tensor:
    """One image's ink (uint8 [h, w, 1]) augmented as ``key`` draws it, as uint8 again.

    The order is the world's: the formula is placed (geometry), drawn (strokes), blurred by
    optics or resampling, thresholded by a scanner, put on its paper, then noise and JPEG.
    """
    x = tf.cast(ink, tf.float32) / 255.0
    draw = _Draws(key)
    x = _geometry(x, draw, settings, max_height, max_width)
    s = settings
    if s.p_stroke:
        x = _maybe(draw, "stroke", s.p_stroke, lambda x, u: _stroke(x, u, s.stroke_strength), x)
    if s.p_blur:
        x = _maybe(draw, "blur", s.p_blur, lambda x, u: _blur(x, _lerp(s.blur_sigma, u[0]), s), x)
    if s.p_binarize:
        x = _maybe(
            draw, "binarize", s.p_binarize, lambda x, u: _binarize(x, s.binarize_threshold, u), x
        )
    if s.p_background:
        x = _maybe(draw, "background", s.p_background, lambda x, u: _background(x, u, s), x)
    if s.p_noise:
        x = _maybe(draw, "noise", s.p_noise, lambda x, u: _noise(x, u, s.noise_std, draw), x)
    if s.p_jpeg:
        x = _maybe(draw, "jpeg", s.p_jpeg, lambda x, u: _jpeg(x, u, s.jpeg_quality), x)
    x = tf.ensure_shape(x, [None, None, 1])
    return tf.cast(tf.round(tf.clip_by_value(x, 0.0, 1.0) * 255.0), tf.uint8)


class _Draws:
    """A row's random streams: whether each kind applies, and its strengths, in [0, 1)."""

    def __init__(self, key: tf.Tensor) -> None:
        self.key = key

    def seed(self, stream: int) -> tf.Tensor:
        return tf.random.experimental.stateless_fold_in(self.key, stream)

    def applies(self, kind: str, probability: float) -> tf.Tensor:
        return tf.random.stateless_uniform([], self.seed(STREAMS[kind])) < probability

    def uniforms(self, kind: str, count: int) -> tf.Tensor:
        return tf.random.stateless_uniform([count], self.seed(100 + STREAMS[kind]))


def _maybe(
    draw: _Draws,
    kind: str,
    probability: float,
    change: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    x: tf.Tensor,
) -> tf.Tensor:
    """``change(x, strengths)`` with the kind's probability, else ``x`` as it was."""
    strengths = draw.uniforms(kind, 2)
    return tf.cond(draw.applies(kind, probability), lambda: change(x, strengths), lambda: x)


def _lerp(bounds: tuple[float, float], u: tf.Tensor) -> tf.Tensor:
    low, high = bounds
    return low + (high - low) * u


def _log_lerp(bounds: tuple[float, float], u: tf.Tensor) -> tf.Tensor:
    """Log-uniform: as likely to shrink by a factor as to grow by it."""
    low, high = bounds
    return tf.exp(math.log(low) + (math.log(high) - math.log(low)) * u)


# -- geometry ---------------------------------------------------------------------------------


def _geometry(
    x: tf.Tensor,
    draw: _Draws,
    s: AugmentSettings,
    max_height: int | None,
    max_width: int | None,
) -> tf.Tensor:
    """Scale, aspect, rotation and shift as one resampling, each at its neutral value unless
    its own draw applies; an image no kind applies to is not resampled at all."""
    kinds = {"scale": s.p_scale, "aspect": s.p_aspect, "rotate": s.p_rotate, "shift": s.p_shift}
    if not any(kinds.values()):
        return x
    on = {kind: draw.applies(kind, p) if p else tf.constant(False) for kind, p in kinds.items()}
    u = {kind: draw.uniforms(kind, 2) for kind in kinds}
    one = tf.constant(1.0)
    scale = tf.where(on["scale"], _log_lerp(s.scale_range, u["scale"][0]), one)
    aspect = tf.where(on["aspect"], _log_lerp(s.aspect_range, u["aspect"][0]), one)
    angle = math.radians(s.max_rotate_deg) * (2.0 * u["rotate"][0] - 1.0)
    angle = tf.where(on["rotate"], angle, 0.0)
    shift = tf.where(on["shift"], s.max_shift_px * (2.0 * u["shift"] - 1.0), tf.zeros([2]))
    any_on = tf.reduce_any(tf.stack(list(on.values())))
    return tf.cond(
        any_on,
        lambda: _transform(
            x, scale * tf.sqrt(aspect), scale / tf.sqrt(aspect), angle, shift, max_height, max_width
        ),
        lambda: x,
    )


def _transform(
    x: tf.Tensor,
    sx: tf.Tensor,
    sy: tf.Tensor,
    angle: tf.Tensor,
    shift: tf.Tensor,
    max_height: int | None,
    max_width: int | None,
) -> tf.Tensor:
    """Resample ``x`` through p' = R(angle) diag(sx, sy) (p - centre) + centre' on a frame that
    holds the whole transformed image plus the shift (so no ink is cut: a shift is a change of
    margins), the whole shrunk to fit the limits when it would pass them."""
    shape = tf.cast(tf.shape(x), tf.float32)
    h, w = shape[0], shape[1]
    cos, sin = tf.cos(angle), tf.sin(angle)
    m = tf.stack([cos * sx, -sin * sy, sin * sx, cos * sy])  # row-major 2x2, (x, y) order
    half_w = (tf.abs(m[0]) * w + tf.abs(m[1]) * h) / 2
    half_h = (tf.abs(m[2]) * w + tf.abs(m[3]) * h) / 2
    dx, dy = shift[0], shift[1]
    fit = tf.constant(1.0)
    if max_width is not None:
        fit = tf.minimum(fit, max_width / (2 * half_w + tf.abs(dx)))
    if max_height is not None:
        fit = tf.minimum(fit, max_height / (2 * half_h + tf.abs(dy)))
    m, half_w, half_h, dx, dy = m * fit, half_w * fit, half_h * fit, dx * fit, dy * fit
    out_w = tf.maximum(1.0, tf.math.ceil(2 * half_w + tf.abs(dx) - 1e-3))
    out_h = tf.maximum(1.0, tf.math.ceil(2 * half_h + tf.abs(dy) - 1e-3))
    cx, cy = half_w + tf.maximum(dx, 0.0), half_h + tf.maximum(dy, 0.0)  # the new centre
    det = m[0] * m[3] - m[1] * m[2]
    inv = tf.stack([m[3], -m[1], -m[2], m[0]]) / det
    # output pixel index -> input pixel index, pixel centres at index + 0.5
    ox, oy = 0.5 - cx, 0.5 - cy
    transform = tf.stack(
        [
            inv[0],
            inv[1],
            inv[0] * ox + inv[1] * oy + w / 2 - 0.5,
            inv[2],
            inv[3],
            inv[2] * ox + inv[3] * oy + h / 2 - 0.5,
            0.0,
            0.0,
        ]
    )
    out = tf.raw_ops.ImageProjectiveTransformV3(
        images=x[None],
        transforms=transform[None],
        output_shape=tf.cast(tf.stack([out_h, out_w]), tf.int32),
        fill_value=0.0,  # background
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )
    return out[0]


# -- strokes, blur, paper, noise, JPEG --------------------------------------------------------


def _stroke(x: tf.Tensor, u: tf.Tensor, strength: tuple[float, float]) -> tf.Tensor:
    """Bolder: towards the ink dilated by a 3x3 cross. Thinner: ink raised to a power, which
    fades anti-aliased edges but keeps every 1-pixel stroke (an erosion would erase them)."""
    amount = _lerp(strength, u[1])

    def bolder() -> tf.Tensor:
        rows, cols = _neighbours(x, 0, 1), _neighbours(x, 1, 1)
        dilated = tf.reduce_max(tf.stack([rows[0], rows[2], cols[0], cols[1], cols[2]]), 0)
        return x + amount * (dilated - x)

    return tf.cond(u[0] < 0.5, bolder, lambda: tf.pow(x, 1.0 + 2.0 * amount))


def _neighbours(x: tf.Tensor, axis: int, radius: int) -> list[tf.Tensor]:
    """``x`` shifted by -radius..radius pixels along ``axis``, background coming in. Shifted
    copies, not a convolution: on one small image, elementwise work is many times faster."""
    padding = [[0, 0], [0, 0], [0, 0]]
    padding[axis] = [radius, radius]
    padded = tf.pad(x, padding)
    size = tf.shape(x)[axis]
    if axis == 0:
        return [padded[k : k + size] for k in range(2 * radius + 1)]
    return [padded[:, k : k + size] for k in range(2 * radius + 1)]


def _blur(x: tf.Tensor, sigma: tf.Tensor, s: AugmentSettings) -> tf.Tensor:
    """A separable Gaussian; the kernel is as wide as the largest sigma needs."""
    radius = max(1, math.ceil(3 * s.blur_sigma[1]))
    taps = tf.range(-radius, radius + 1, dtype=tf.float32)
    kernel = tf.exp(-(taps**2) / (2 * sigma**2))
    kernel /= tf.reduce_sum(kernel)
    for axis in (0, 1):
        shifted = _neighbours(x, axis, radius)
        x = tf.add_n([kernel[k] * shifted[k] for k in range(2 * radius + 1)])
    return x


def _binarize(x: tf.Tensor, bounds: tuple[float, float], u: tf.Tensor) -> tf.Tensor:
    return tf.cast(x > _lerp(bounds, u[0]), tf.float32)


def _background(x: tf.Tensor, u: tf.Tensor, s: AugmentSettings) -> tf.Tensor:
    """Gray or tinted paper (or a dark screenshot, inverted) as the model sees it in ink: a
    floor under the background, and ink that stops short of 1."""
    floor = s.background_max * u[0]
    top = _lerp((s.ink_min, 1.0), u[1])
    return floor + (top - floor) * x


def _noise(x: tf.Tensor, u: tf.Tensor, bounds: tuple[float, float], draw: _Draws) -> tf.Tensor:
    noise = tf.random.stateless_normal(tf.shape(x), draw.seed(200 + STREAMS["noise"]))
    return tf.clip_by_value(x + _lerp(bounds, u[0]) * noise, 0.0, 1.0)


def _jpeg(x: tf.Tensor, u: tf.Tensor, bounds: tuple[int, int]) -> tf.Tensor:
    """Compressed as the gray picture it stands for (white paper), then back to ink."""
    low, high = bounds
    quality = tf.minimum(low + tf.cast(u[0] * (high - low + 1), tf.int32), high)
    gray = 1.0 - tf.clip_by_value(x, 0.0, 1.0)
    return 1.0 - tf.image.adjust_jpeg_quality(gray, quality)
