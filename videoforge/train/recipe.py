"""Training recipes: the YAML files under `configs/` read into small typed dataclasses.

A recipe is a model section, data, optimisation, flow-matching settings, and a curriculum: a
list of stages, each with its own data tier, resolution anchors, duration buckets, steps and
learning rate. Every schedule comes from here, never from `--max-steps` (which only caps).
Unknown keys are errors, so a typo in a recipe fails loudly instead of training the wrong thing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from videoforge.annotate.captions import FIELDS, CaptionMix

T = TypeVar("T")


@dataclass
class ModelSection:
    preset: str = "tiny"  # videoforge.config preset name
    dit: dict[str, Any] = field(default_factory=dict)  # DiTConfig field overrides
    init: str | None = None  # weights to start from (load_dit path); None: random init
    vae: str | None = None  # VAE weights (load_vae path); None: the preset's VAE, seeded random
    vae_config: dict[str, Any] = field(default_factory=dict)  # VAEConfig field overrides of a from-scratch VAE
    vae_seed: int = 0
    text_encoder: str = "minilm"  # "minilm" (bundled) or a model folder with text_encoder/
    text_max_length: int = 64


@dataclass
class DataSection:
    path: str | None = None  # manifest.parquet or a folder of media + captions; --data overrides
    cache: str | None = None  # a `videoforge cache` folder; used instead of decoding when set
    caption_dropout: float = 0.1  # probability of training on the empty prompt (for CFG)
    # Structured captions become text by keeping each field with a probability and shuffling
    # (annotate.captions.FIELD_KEEP_PROB / PERMUTE_PROB). These override them, e.g. short prompts
    # only for a small text encoder: {short_description: 1.0, dense_description: 0.2, tags: 0.0}.
    caption_fields: dict[str, float] | None = None
    caption_permute: float | None = None
    # True: each step trains on a fresh draw from the VAE posterior. False: on its mean. A VAE
    # trained with a KL term has a wide posterior (std ~0.26 of the latents' spread for the shapes
    # VAE at kl 1e-2), and noise drawn independently per latent frame can drown small signals such
    # as where an object moved between frames.
    sample_posterior: bool = True
    # A batch pads its captions to the longest, and the DiT pays for every text position. N > 1 (a
    # cache only): each step's samples share one of N caption-length ranges of their bucket, chosen
    # to minimise the expected padding; every (item, caption) is drawn as often as with 1.
    text_length_groups: int = 1

    def __post_init__(self) -> None:
        if not 0.0 <= self.caption_dropout <= 1.0:
            raise ValueError(f"data.caption_dropout must be in [0, 1], got {self.caption_dropout}")
        if not isinstance(self.text_length_groups, int) or self.text_length_groups < 1:
            raise ValueError(f"data.text_length_groups must be an integer >= 1, got {self.text_length_groups!r}")
        unknown = sorted(set(self.caption_fields or {}) - set(FIELDS))
        if unknown:
            raise ValueError(f"data.caption_fields: unknown field(s) {unknown}; caption fields: {list(FIELDS)}")
        for name, p in {**(self.caption_fields or {}), "caption_permute": self.caption_permute or 0.0}.items():
            if not isinstance(p, (int, float)) or not 0.0 <= p <= 1.0:
                raise ValueError(f"data.caption_fields / caption_permute: {name} must be a probability in [0, 1], got {p!r}")

    @property
    def caption_mix(self) -> CaptionMix:
        return CaptionMix(self.caption_fields, self.caption_permute)


@dataclass
class StageSection:
    name: str = "stage"
    steps: int = 100
    lr: float = 1e-4
    lr_end: float | None = None  # decay linearly from lr to this over the stage; None: constant
    tiers: list[str] | None = None  # manifest tiers to draw from (e.g. [video-256-65, image-1]); None: all
    anchors: list[int] = field(default_factory=lambda: [256])  # resolution anchors (sqrt of area)
    frames: list[int] = field(default_factory=lambda: [1])  # duration buckets, 4k+1; 1 = image
    token_budget: int = 4096  # latent tokens per global batch (sets each bucket's batch size)
    max_batch: int = 64  # cap on a bucket's global batch
    image_ratio: float = 1.0  # fraction of batches drawn from image buckets when both exist
    frame_stride: list[int] = field(default_factory=lambda: [1, 1])  # inclusive range of strides
    bucket_grid: int = 16  # bucket sides are multiples of this
    max_aspect: float = 4.0

    def __post_init__(self) -> None:
        bad = [f for f in self.frames if f < 1 or (f - 1) % 4]
        if bad:
            raise ValueError(f"stage {self.name!r}: duration buckets must be 4k+1 frames, got {bad}")
        if not 0.0 <= self.image_ratio <= 1.0:
            raise ValueError(f"stage {self.name!r}: image_ratio must be in [0, 1], got {self.image_ratio}")
        if self.steps < 1:
            raise ValueError(f"stage {self.name!r}: steps must be >= 1, got {self.steps}")
        lo, hi = self.frame_stride
        if not 1 <= lo <= hi:
            raise ValueError(f"stage {self.name!r}: frame_stride must be [lo, hi] with 1 <= lo <= hi")


@dataclass
class OptimSection:
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    eps: float = 1e-8
    warmup_steps: int = 0
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    ema_decay: float = 0.999
    micro_batch: int = 0  # max samples per device per forward; 0: whole local batch at once


@dataclass
class FlowSection:
    logit_mean: float = 0.0
    logit_std: float = 1.0
    shift: float = 1.0
    guidance_range: tuple[float, float] = (1.0, 6.0)  # embedded-guidance values fed during training


@dataclass
class LoRASection:
    rank: int = 16
    alpha: float = 16.0
    target_modules: list[str] | None = None  # None: attention and MLP linears of every block


@dataclass
class VAELossSection:
    """The VAE trainer's objective and data mix (task: vae)."""

    l1: float = 1.0
    l2: float = 0.0  # mean squared error; L1 alone settles on the background when objects are small
    # Extra weight on pixels that differ from their frame's border colour (1 + this, the rest 1).
    # For sparse objects on plain backgrounds (the shapes world): objects are ~4% of the pixels, and
    # an unweighted loss learns their colours last. 0: off.
    foreground_weight: float = 0.0
    # False: freeze the encoder (and quant_conv) and train the decoder only. The latents stay
    # exactly the same, so caches and DiTs built on them stay valid while reconstructions improve.
    train_encoder: bool = True
    lpips: float = 0.1
    adversarial: float = 0.05
    kl: float = 1e-6
    disc_start: int = 1000  # the adversarial term switches on at this step
    disc_lr: float = 1e-4
    lpips_weights: str | None = None  # a .safetensors of VGG16 features + linear heads (user-supplied)
    video_ratio: float = 0.8  # video:image batches 4:1
    tiled_ratio: float = 0.25  # fraction of steps run through the tiled encode/decode
    tile_sample_min_size: int = 32
    tile_sample_min_tsize: int = 8
    # After a from-scratch run, set config.scaling_factor to 1/std of the posterior means over this
    # many training batches, so the DiT sees unit-variance latents. 0, or a run from model.init /
    # model.vae, keeps the loaded factor (the one its DiT was trained with).
    scaling_batches: int = 32
    # True: over the same batches, also fit each latent channel's mean and std (config.latents_mean /
    # latents_std), so the DiT sees every channel at unit variance rather than all at one factor.
    # Fitted after any run whose VAE has none yet, from model.init too; a VAE that has them keeps them.
    channel_statistics: bool = False
    # False: decode the posterior mean (a plain autoencoder). With a high learning rate, Adam turns
    # even a 1e-6 KL into a steady push of the log-variance towards 0, and decoders fed std-1
    # noise learn only the background; from scratch on small data, train on the mean instead.
    sample_posterior: bool = True
    # From scratch only: start the encoder's log-variance outputs at this constant (zero weights),
    # e.g. -6 (std 0.05). With sample_posterior false and kl 0 they get no gradient, so the
    # posterior keeps that fixed, small variance. None: the default init.
    init_logvar: float | None = None
    # A run from model.init: first move every causal conv's temporal taps onto the newest frame
    # (models.vae.concentrate_temporal_taps). Images decode exactly as before; a clip's latent k
    # becomes an image code of frame 4k, so an image-trained VAE starts with motion in its latents.
    concentrate_temporal_taps: bool = False

    def __post_init__(self) -> None:
        if self.channel_statistics and self.scaling_batches <= 0:
            raise ValueError("vae_loss.channel_statistics needs vae_loss.scaling_batches > 0: the batches they are fitted on")


@dataclass
class RunSection:
    seed: int = 0
    log_every: int = 1
    checkpoint_every: int = 100
    keep_checkpoints: int = 2
    validate_every: int = 0  # 0: no validation samples
    validation_prompts: list[str] = field(default_factory=list)
    validation_steps: int = 10
    activation_checkpointing: bool = False
    compile: bool = False
    mixed_precision: str = "bfloat16"  # autocast dtype on GPU ("bfloat16", "float16", "float32"); CPU trains in float32

    def __post_init__(self) -> None:
        if self.mixed_precision not in ("bfloat16", "float16", "float32"):
            raise ValueError(f"run.mixed_precision must be bfloat16, float16 or float32, got {self.mixed_precision!r}")


@dataclass
class GenerationSection:
    """The generation defaults `final/videoforge.json` records (what `generate` uses when unset).
    Size and length come from the last stage: its first anchor and longest duration bucket."""

    steps: int = 30
    flow_shift: float | None = None  # None: the training schedule's flow.shift
    guidance_scale: float = 1.0  # embedded guidance (guidance-distilled DiTs only)
    cfg_scale: float = 1.0  # true classifier-free guidance; > 1 needs caption dropout in training
    negative_prompt: str = ""  # the unconditional branch: the empty prompt that caption dropout trained
    fps: int = 24


@dataclass
class Recipe:
    task: str = "dit"  # "dit" (flow matching) or "vae"
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    flow: FlowSection = field(default_factory=FlowSection)
    run: RunSection = field(default_factory=RunSection)
    stages: list[StageSection] = field(default_factory=lambda: [StageSection()])
    lora: LoRASection | None = None
    vae_loss: VAELossSection = field(default_factory=VAELossSection)
    generation: GenerationSection = field(default_factory=GenerationSection)

    def __post_init__(self) -> None:
        if self.task not in ("dit", "vae"):
            raise ValueError(f"task must be 'dit' or 'vae', got {self.task!r}")

    @property
    def total_steps(self) -> int:
        return sum(s.steps for s in self.stages)

    def stage_at(self, step: int) -> tuple[int, StageSection]:
        """The stage that global step `step` (0-based) belongs to; past the end, the last one."""
        end = 0
        for i, s in enumerate(self.stages):
            end += s.steps
            if step < end:
                return i, s
        return len(self.stages) - 1, self.stages[-1]

    def lr_at(self, step: int) -> float:
        """Linear warm-up from the run's start, then each stage's rate (constant, or linear to `lr_end`)."""
        i, stage = self.stage_at(step)
        lr = stage.lr
        if stage.lr_end is not None:
            start = sum(s.steps for s in self.stages[:i])
            frac = min(1.0, (step - start) / stage.steps)
            lr = stage.lr + (stage.lr_end - stage.lr) * frac
        w = self.optim.warmup_steps
        return lr * min(1.0, (step + 1) / w) if w > 0 else lr

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def write_json(self, run_dir: Path) -> None:
        """`run_dir/recipe.json`: what `convert` rebuilds a mid-run checkpoint's model from."""
        (run_dir / "recipe.json").write_text(json.dumps(self.to_dict(), indent=1, default=list))


def config_with_overrides(base: T, overrides: dict[str, Any], where: str) -> T:
    """A copy of `base` (a DiTConfig or VAEConfig) with a recipe's field overrides; unknown fields are errors."""
    d = base.to_dict()
    unknown = set(overrides) - {f.name for f in dataclasses.fields(base)}  # to_dict drops fields at their defaults
    if unknown:
        raise ValueError(f"{where}: unknown {type(base).__name__} field(s) {sorted(unknown)}")
    return type(base).from_dict({**d, **overrides})


def _scalar(value: Any, annotation: str, where: str) -> Any:
    """`value` checked against a scalar field's annotation ("float", "int | None", ...). YAML 1.1
    reads `1e-3` (no dot) as a string, so a float field takes a string that parses as a number."""
    kind, *others = annotation.replace(" ", "").split("|")
    if kind not in ("float", "int", "bool") or (value is None and "None" in others):
        return value
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "float" and isinstance(value, str):
        with contextlib.suppress(ValueError):
            return float(value)
    if kind == "float" and number:
        return float(value)
    if (kind == "int" and number and isinstance(value, int)) or (kind == "bool" and isinstance(value, bool)):
        return value
    raise ValueError(f"{where}: expected {annotation}, got {value!r}")


def _build(cls: type[T], data: Any, where: str) -> T:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(names))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; allowed: {sorted(names)}")
    kwargs = {}
    for k, v in data.items():
        if isinstance(names[k].default, tuple) and isinstance(v, list):
            v = tuple(v)
        kwargs[k] = _scalar(v, str(names[k].type), f"{where}.{k}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None


def recipe_from_dict(d: dict[str, Any]) -> Recipe:
    sections = {"task", "model", "data", "optim", "flow", "run", "stages", "lora", "vae_loss", "generation"}
    unknown = sorted(set(d) - sections)
    if unknown:
        raise ValueError(f"recipe: unknown section(s) {unknown}; allowed: {sorted(sections)}")
    stages = d.get("stages") or [{}]
    if not isinstance(stages, list):
        raise ValueError("recipe: `stages` must be a list of stage mappings")
    return Recipe(
        task=d.get("task", "dit"),
        vae_loss=_build(VAELossSection, d.get("vae_loss"), "vae_loss"),
        model=_build(ModelSection, d.get("model"), "model"),
        data=_build(DataSection, d.get("data"), "data"),
        optim=_build(OptimSection, d.get("optim"), "optim"),
        flow=_build(FlowSection, d.get("flow"), "flow"),
        run=_build(RunSection, d.get("run"), "run"),
        stages=[_build(StageSection, s, f"stages[{i}]") for i, s in enumerate(stages)],
        lora=_build(LoRASection, d["lora"], "lora") if d.get("lora") is not None else None,
        generation=_build(GenerationSection, d.get("generation"), "generation"),
    )


def _merged(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` laid over `base`: mappings merge key by key, anything else (lists: the stages) replaces."""
    out = dict(base)
    for k, v in override.items():
        out[k] = _merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _read_recipe_yaml(path: Path, chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The YAML mapping at `path` with its `base:` (a recipe path relative to this file) resolved."""
    if not path.is_file():
        raise FileNotFoundError(f"recipe not found: {path}" + (f" (the base of {chain[-1]})" if chain else ""))
    d = yaml.safe_load(path.read_text()) or {}
    if not isinstance(d, dict):
        raise ValueError(f"{path}: a recipe must be a YAML mapping")
    base = d.pop("base", None)
    if base is None:
        return d
    if not isinstance(base, str):
        raise ValueError(f"{path}: `base` must be the path of another recipe, got {base!r}")
    chain, base_path = (*chain, path.resolve()), (path.parent / base).resolve()
    if base_path in chain:
        raise ValueError(f"{path}: `base` {base} leads back to itself ({' -> '.join(str(p) for p in (*chain, base_path))})")
    return _merged(_read_recipe_yaml(base_path, chain), d)


def load_recipe(path: str | Path) -> Recipe:
    """Read a training recipe YAML; errors name the file and the offending key. A recipe may start
    from another (`base: other.yaml`, relative to it) and change only what differs: its mappings
    merge into the base's key by key, and a list it gives (`stages`) replaces the base's whole."""
    path = Path(path)
    d = _read_recipe_yaml(path)
    try:
        return recipe_from_dict(d)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
