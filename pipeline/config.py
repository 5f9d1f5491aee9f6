"""The schema of ``params.yaml``: one dataclass per section, read and checked by one function.

Every stage reads its settings through ``parse`` (a whole file, or the sections Snakemake passes
as JSON), so a misspelt key, a wrong type or an out-of-range value stops the first stage that
reads it, with a message naming the section, the key and the value. The dataclasses' defaults
are the shipped ``params.yaml`` (``tests/test_config.py`` holds them equal): there is one set
of defaults, not one in the code and another in the file.
"""

from __future__ import annotations

import json
import re
import types
import typing
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml

VARIANTS = ("seq2seq", "nopool", "strips", "transformer")
PRESETS = ("small", "paper", "large", "tiny")
LR_SCHEDULES = ("constant", "cosine")
PRECISIONS = ("auto", "on", "off", "bf16")
FONTS = ("cm", "times", "palatino")  # render.font: TeX Live's packages for each (texrun)
SCALE_TO = ("render", "drawn")
MIN_FORMULA_TOKENS = 10  # generate: a shorter cap leaves the grammar too little room


class ConfigError(SystemExit):
    """A setting a stage cannot run with; the message names the key, the value and the rule."""


@dataclass(frozen=True)
class GenerateSettings:
    """The embedded default data: a seeded grammar of formulas."""

    count: int = 20000
    seed: int = 0
    max_tokens: int = 120

    def check(self) -> None:
        _require(self.count >= 1, "count", self.count, "must be at least 1")
        _require(
            self.max_tokens >= MIN_FORMULA_TOKENS,
            "max_tokens",
            self.max_tokens,
            f"must be at least {MIN_FORMULA_TOKENS}",
        )


@dataclass(frozen=True)
class SplitRatios:
    train: float = 0.9
    validation: float = 0.05
    test: float = 0.05

    def check(self) -> None:
        for name, value in asdict(self).items():
            _require(value >= 0, name, value, "must not be negative")
        total = self.train + self.validation + self.test
        _require(abs(total - 1) < 1e-9, "train+validation+test", total, "must add up to 1")


@dataclass(frozen=True)
class Step0Settings:
    input: str = "data/generated/formulas.norm.txt"  # a list, or a folder of split lists
    raw: bool = False  # input is raw LaTeX: the normalize stage turns it into tokens first
    sha256: str | None = None  # the input file's digest, checked before it is read
    split: SplitRatios = field(default_factory=SplitRatios)

    def check(self) -> None:
        _require(bool(self.input.strip()), "input", self.input, "must name a file or folder")
        _require(
            self.sha256 is None or re.fullmatch(r"[0-9a-fA-F]{64}", self.sha256) is not None,
            "sha256",
            self.sha256,
            "must be 64 hexadecimal digits (a sha256 digest) or null",
        )


@dataclass(frozen=True)
class RenderSettings:
    chunks: int = 8  # Snakemake jobs; a formula's chunk comes from its id
    dpi: int = 200
    batch_size: int = 500  # formulas per latex + dvipng run
    timeout_s: float = 20.0  # hard limit per TeX process
    font: str = "cm"  # every formula's font family, unless train_fonts draws another
    # training formulas only: each draws its family from [font, *train_fonts] by its id and
    # font_seed; validation and test stay in ``font``
    train_fonts: tuple[str, ...] = ()
    font_seed: int = 0

    def check(self) -> None:
        for name in ("chunks", "dpi", "batch_size", "timeout_s"):
            _require(getattr(self, name) > 0, name, getattr(self, name), "must be positive")
        for name, fonts in (("font", [self.font]), ("train_fonts", list(self.train_fonts))):
            for font in fonts:
                _require(font in FONTS, name, font, f"must be one of {FONTS}")


@dataclass(frozen=True)
class CropSettings:
    pad: int = 8  # white pixels around the ink, before downsampling (im2markup)
    downsample: int = 2
    buckets: tuple[tuple[int, int], ...] = (  # [height, width] after downsampling
        (32, 192),
        (32, 320),
        (48, 320),
        (48, 480),
        (64, 480),
        (64, 640),
        (96, 640),
        (96, 800),
        (128, 800),
        (160, 1024),
    )
    # training images only: each resampled as if rendered at a dpi drawn per formula (by its id
    # and scale_seed, log-uniform in [low, high]); None: every image at render.dpi
    scale_dpi: tuple[int, int] | None = None
    scale_to: str = "render"  # render: back to render.dpi's size | drawn: the drawn dpi's size
    scale_seed: int = 0

    def check(self) -> None:
        _require(self.pad >= 0, "pad", self.pad, "must not be negative")
        _require(self.downsample >= 1, "downsample", self.downsample, "must be at least 1")
        _require(bool(self.buckets), "buckets", list(self.buckets), "needs at least one bucket")
        for bucket in self.buckets:
            _require(min(bucket) > 0, "buckets", list(bucket), "sizes must be positive")
        if self.scale_dpi is not None:
            low, high = self.scale_dpi
            _require(0 < low <= high, "scale_dpi", list(self.scale_dpi), "must be [low, high] > 0")
        _require(self.scale_to in SCALE_TO, "scale_to", self.scale_to, f"must be one of {SCALE_TO}")


@dataclass(frozen=True)
class VocabSettings:
    min_count: int = 1

    def check(self) -> None:
        _require(self.min_count >= 1, "min_count", self.min_count, "must be at least 1")


@dataclass(frozen=True)
class ShardSettings:
    max_tokens: int = 150
    rows_per_shard: int = 5000
    # a formula holding a token outside the vocabulary is filtered rather than given <unk>
    drop_unknown: bool = False
    drop_tokens: tuple[str, ...] = ()  # formulas holding any of these are filtered

    def check(self) -> None:
        for name in ("max_tokens", "rows_per_shard"):
            _require(getattr(self, name) >= 1, name, getattr(self, name), "must be at least 1")


@dataclass(frozen=True)
class ModelSettings:
    """A variant, a preset of sizes, and any size overridden (None: the preset's)."""

    variant: str = "nopool"
    preset: str = "small"
    # the notebook's 2-D timing signal on the final map; None: the variant's own choice
    timing_signal: bool | None = True
    encoder_filters: tuple[int, ...] | None = None
    pools: int | None = None
    embedding_dim: int | None = None
    decoder_units: int | None = None
    decoder_layers: int | None = None
    attention_units: int | None = None
    deep_output_units: int | None = None
    init_units: int | None = None
    l2: float | None = None
    canvas_height: int | None = None
    dropout: float | None = None
    heads: int | None = None  # transformer: attention heads
    ff_units: int | None = None  # transformer: feed-forward width
    map_layers: int | None = None  # transformer: self-attention blocks over the feature map

    def check(self) -> None:
        _require(self.variant in VARIANTS, "variant", self.variant, f"must be one of {VARIANTS}")
        _require(self.preset in PRESETS, "preset", self.preset, f"must be one of {PRESETS}")

    def overrides(self) -> dict[str, Any]:
        """The sizes set here, to lay over the preset's."""
        skip = {"variant", "preset", "timing_signal"}
        return {k: v for k, v in asdict(self).items() if k not in skip and v is not None}


@dataclass(frozen=True)
class TrainSettings:
    batch_size: int = 8  # global: split across replicas (the paper: 56 = 28 per GPU on 2 GPUs)
    # The budget counts steps and epochs, so the same params give the same model on any machine.
    epochs: int = 30
    max_steps: int = 2000  # 0: no limit
    max_minutes: float = 0.0  # an opt-in wall-clock cap (0: none); a run it cuts says so
    learning_rate: float = 0.002  # the peak, after any warm-up (the paper: 1e-4)
    lr_schedule: str = "constant"  # constant | cosine (decays to the nearest budget limit)
    warmup_steps: int = 0
    final_lr_fraction: float = 0.05  # cosine: the last rate, as a fraction of the peak
    beta_1: float = 0.9
    beta_2: float = 0.999
    clip_norm: float = 5.0  # the gradients' global norm is clipped to this (0: not clipped)
    label_smoothing: float = 0.0  # training loss only; validation loss stays the plain one
    ema_decay: float = 0.995  # validate and export a moving average of the weights (0: off)
    checkpoint_every: int = 200
    patience: int = 4  # epochs without validation improvement before stopping
    val_bleu_samples: int = 256  # greedy-decoded validation rows per epoch (0: select by loss)
    max_len: int = 152
    # upper edges of token-length bins: each training batch is drawn from one bin (and one size
    # bucket), as Singh 2018 batched; empty: size buckets only
    length_bins: tuple[int, ...] = ()
    seed: int = 0
    mixed_precision: str = "auto"  # auto (on with GPUs) | on | off | bf16
    progress_every_s: float = 30.0  # a progress line in the log at most this often

    def check(self) -> None:
        for name in ("batch_size", "epochs", "checkpoint_every", "max_len"):
            _require(getattr(self, name) >= 1, name, getattr(self, name), "must be at least 1")
        bins = list(self.length_bins)
        _require(
            all(a < b for a, b in zip([0, *bins], bins, strict=False)),
            "length_bins",
            bins,
            "must be positive and increasing",
        )
        for name in ("max_steps", "max_minutes", "warmup_steps", "patience", "val_bleu_samples"):
            _require(getattr(self, name) >= 0, name, getattr(self, name), "must not be negative")
        _require(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be positive")
        _require(
            self.lr_schedule in LR_SCHEDULES,
            "lr_schedule",
            self.lr_schedule,
            f"must be one of {LR_SCHEDULES}",
        )
        _require(
            0 <= self.final_lr_fraction <= 1,
            "final_lr_fraction",
            self.final_lr_fraction,
            "must be in [0, 1]",
        )
        for name in ("beta_1", "beta_2"):
            _require(0 <= getattr(self, name) < 1, name, getattr(self, name), "must be in [0, 1)")
        _require(self.clip_norm >= 0, "clip_norm", self.clip_norm, "must be >= 0 (0: no clipping)")
        _require(0 <= self.ema_decay < 1, "ema_decay", self.ema_decay, "must be in [0, 1)")
        _require(
            0 <= self.label_smoothing < 1,
            "label_smoothing",
            self.label_smoothing,
            "must be in [0, 1)",
        )
        _require(
            self.mixed_precision in PRECISIONS,
            "mixed_precision",
            self.mixed_precision,
            f"must be one of {PRECISIONS}",
        )
        _require(
            self.progress_every_s > 0, "progress_every_s", self.progress_every_s, "must be positive"
        )


@dataclass(frozen=True)
class AugmentSettings:
    """On-the-fly changes to training images (``pipeline/model/augment.py``); each kind is
    applied to an image with its probability ``p_*`` (0: never), at a strength drawn from its
    range. Validation and test images are never augmented."""

    p_scale: float = 0.0  # rescale by a factor in scale_range (log-uniform)
    scale_range: tuple[float, float] = (0.85, 1.15)
    p_aspect: float = 0.0  # stretch width against height by a factor in aspect_range
    aspect_range: tuple[float, float] = (0.9, 1.1)
    p_rotate: float = 0.0  # rotate by up to max_rotate_deg either way
    max_rotate_deg: float = 2.0
    p_shift: float = 0.0  # move the ink within its margins by up to max_shift_px each way
    max_shift_px: float = 3.0
    p_stroke: float = 0.0  # thinner or bolder strokes (erosion or dilation) at a strength in
    stroke_strength: tuple[float, float] = (0.3, 1.0)
    p_blur: float = 0.0  # Gaussian blur, sigma in pixels
    blur_sigma: tuple[float, float] = (0.3, 1.0)
    p_binarize: float = 0.0  # ink or not, at a threshold in binarize_threshold
    binarize_threshold: tuple[float, float] = (0.3, 0.6)
    p_background: float = 0.0  # gray or tinted paper: a background floor in [0, background_max]
    background_max: float = 0.35  # of ink, with the darkest ink lowered as much as ink_min
    ink_min: float = 0.7
    p_noise: float = 0.0  # Gaussian noise, standard deviation in noise_std (of full ink)
    noise_std: tuple[float, float] = (0.01, 0.08)
    p_jpeg: float = 0.0  # JPEG re-compression at a quality in jpeg_quality
    jpeg_quality: tuple[int, int] = (30, 90)

    def check(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name.startswith("p_"):
                _require(0 <= value <= 1, f.name, value, "must be a probability in [0, 1]")
            elif isinstance(value, tuple):
                _require(0 <= value[0] <= value[1], f.name, list(value), "must be [low, high] >= 0")
        for name in ("scale_range", "aspect_range"):
            _require(getattr(self, name)[0] > 0, name, list(getattr(self, name)), "must be > 0")
        for name in ("stroke_strength", "binarize_threshold"):
            _require(getattr(self, name)[1] <= 1, name, list(getattr(self, name)), "must be <= 1")
        _require(
            0 <= self.background_max < self.ink_min <= 1,
            "background_max, ink_min",
            [self.background_max, self.ink_min],
            "need 0 <= background_max < ink_min <= 1",
        )
        low, high = self.jpeg_quality
        _require(1 <= low <= high <= 100, "jpeg_quality", [low, high], "must be within [1, 100]")
        for name in ("max_rotate_deg", "max_shift_px"):
            _require(getattr(self, name) >= 0, name, getattr(self, name), "must not be negative")

    @property
    def active(self) -> bool:
        """Whether any kind can apply: off, the input pipeline is exactly the plain one."""
        return any(getattr(self, f.name) > 0 for f in fields(self) if f.name.startswith("p_"))


@dataclass(frozen=True)
class EvaluateSettings:
    batch_size: int = 64
    max_len: int = 152  # 0: the model's own
    beam_width: int = 5  # 1: greedy only (the paper: 10)
    length_penalty: float = 0.6  # GNMT's alpha: score = log p / ((5 + length) / 6) ** alpha
    compare_greedy: bool = True  # with beam_width > 1, also decode greedily and report both
    visual: bool = True  # render predictions and compare images (visual match)
    heatmaps: int = 8  # attention heatmaps for this many test rows
    gallery: int = 24  # report: gold / prediction pairs shown
    worst: int = 20  # report: worst cases by edit distance

    def check(self) -> None:
        for name in ("batch_size", "beam_width"):
            _require(getattr(self, name) >= 1, name, getattr(self, name), "must be at least 1")
        for name in ("max_len", "heatmaps", "gallery", "worst", "length_penalty"):
            _require(getattr(self, name) >= 0, name, getattr(self, name), "must not be negative")


@dataclass(frozen=True)
class Params:
    """All of ``params.yaml``; a section the file leaves out takes the schema's defaults."""

    generate: GenerateSettings = field(default_factory=GenerateSettings)
    step0: Step0Settings = field(default_factory=Step0Settings)
    render: RenderSettings = field(default_factory=RenderSettings)
    crop: CropSettings = field(default_factory=CropSettings)
    vocab: VocabSettings = field(default_factory=VocabSettings)
    shards: ShardSettings = field(default_factory=ShardSettings)
    model: ModelSettings = field(default_factory=ModelSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    evaluate: EvaluateSettings = field(default_factory=EvaluateSettings)


T = TypeVar("T")


class _Invalid(ValueError):
    """Raised inside ``check``: which key, what value, and why; ``parse`` adds the section."""

    def __init__(self, key: str, value: Any, why: str) -> None:
        super().__init__(f"{key} = {value!r}: {why}")
        self.key = key


def _require(ok: bool, key: str, value: Any, why: str) -> None:
    if not ok:
        raise _Invalid(key, value, why)


def parse(raw: Any, source: str = "params") -> Params:
    """Every section of a params mapping, checked; ``source`` names it in error messages."""
    return _build(Params, raw, source, "")


def section(name: str, raw: Any, source: str = "params") -> Any:
    """One section's settings from its mapping (e.g. a model's recorded ``crop`` settings)."""
    if name not in {f.name for f in fields(Params)}:
        raise ConfigError(f"{source}: no section '{name}'; sections: {_names(Params)}")
    return _build(_field_type(Params, name), raw, source, name)


def load(path: Path) -> Params:
    """The params file as the schema reads it; a file that is not YAML is named as such."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such params file") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML ({error})") from None
    return parse(raw or {}, str(path))


def json_mapping(text: str, source: str = "--settings") -> dict[str, Any]:
    """Settings passed as JSON, before ``parse`` checks them; bad JSON is named as such."""
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as error:
        raise ConfigError(f"{source}: not valid JSON ({error})") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{source} must be a mapping of params sections, got {raw!r}")
    return raw


def as_dict(settings: Any) -> dict[str, Any]:
    """Plain JSON-able values (tuples as lists), as ``params.yaml`` writes them."""
    return json.loads(json.dumps(asdict(settings)))


# --- the reader ---------------------------------------------------------------------------


def _names(cls: type) -> str:
    return ", ".join(f.name for f in fields(cls))


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _build(cls: type[T], raw: Any, source: str, where: str) -> T:
    label = f"{source}: {where or 'params'}"
    if not isinstance(raw, dict):
        raise ConfigError(f"{label} must be a mapping, got {raw!r}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{label}: unknown key {', '.join(map(repr, unknown))}; allowed keys: {_names(cls)}"
        )
    values = {}
    for f in fields(cls):
        if f.name not in raw:
            continue
        path = f"{where}.{f.name}" if where else f.name
        values[f.name] = _coerce(_field_type(cls, f.name), raw[f.name], source, path)
    built = cls(**values)
    check = getattr(built, "check", None)
    if check is not None:
        try:
            check()
        except _Invalid as error:
            prefix = f"{where}." if where else ""
            raise ConfigError(f"{source}: {prefix}{error}") from None
    return built


def _coerce(kind: Any, value: Any, source: str, path: str) -> Any:
    """``value`` as ``kind``; YAML may give 1 for 1.0, and reads ``5e-5`` as a string."""
    if is_dataclass(kind):
        return _build(kind, value, source, path)
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(inner, value, source, path)
    if origin is tuple:
        if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}: {path} = {value!r}: must be a list")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, source, path) for v in value)
        if len(value) != len(args):
            raise ConfigError(f"{source}: {path} = {value!r}: must have {len(args)} items")
        return tuple(_coerce(a, v, source, path) for a, v in zip(args, value, strict=True))
    return _scalar(kind, value, source, path)


def _scalar(kind: type, value: Any, source: str, path: str) -> Any:
    wrong = ConfigError(f"{source}: {path} = {value!r}: must be {_article(kind)}")
    if kind is bool:
        if not isinstance(value, bool):
            raise wrong
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise wrong
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise wrong
        try:
            return float(value)
        except ValueError:
            raise wrong from None
    if kind is str:
        if not isinstance(value, str):
            raise wrong
        return value
    raise TypeError(f"config: no reader for {kind}")  # a schema field of an unsupported type


def _article(kind: type) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind]
