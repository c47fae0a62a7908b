"""The HunyuanVideo causal 3D VAE ("884-16c-hy": 8x8 spatial, 4x temporal, 16 latent channels).

Module and parameter names follow the released checkpoint (and diffusers'
`AutoencoderKLHunyuanVideo`), so the released state dict loads with no renaming.

Shapes: a video is [B, 3, F, H, W] in [-1, 1] with F = 4k+1 and H, W divisible by 8; its latent is
[B, 16, k+1, H/8, W/8]. An image is a 1-frame video (F = 1 -> one latent frame).

Causality: every convolution is causal in time (replicate padding with k-1 copies of the first
frame at the front, none at the back), so through the convolutions latent frame t sees pixel
frames <= 4t only. The model as a whole is NOT strictly causal: every GroupNorm (and the
mid-block attention's GroupNorm) takes its statistics over all frames of the clip, so changing a
late frame shifts the normalisation of early frames. The mid-block attention itself is causal by
frame. `tests/models/test_vae_properties.py` checks both statements.

Not in the release, off unless `VAEConfig.pixel_shortcut`: a parameter-free path around both
networks (`keyframe_thumbnails` into the latent, `thumbnail_video` back out), for small VAEs
trained from scratch.
"""

from __future__ import annotations

import contextlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from videoforge.config import VAEConfig
from videoforge.models.vae_tiling import Tiling, tiled_decode, tiled_encode

LOGVAR_RANGE = (-30.0, 20.0)  # the release clamps the posterior's log-variance to this range
NORM_EPS = 1e-6


def norm_silu(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
    """SiLU(GroupNorm(x)); in place on the fresh GroupNorm output when no autograd graph is built."""
    return F.silu(norm(x), inplace=not torch.is_grad_enabled())


class CausalConv3d(nn.Module):
    """Conv3d over a replicate-padded input: k//2 on each side in H and W, k-1 leading frames in time.

    With a stride the padding happens first, as in the release; a k=1 conv gets no padding.
    A single frame (an image) is a 2D conv with the kernel summed over time: its k time taps all
    read the same replicated frame. That is exact, and a third of the multiply-adds; forward plus
    backward of an image batch runs 2-4x faster on a CPU (bench/vae_train_step.py).
    Measured alternatives that did not pay on CPU (bench/vae_decode.py): folding the k-1 replicated
    frames of a longer clip into summed weights saves 1/T of the multiply-adds and sped single
    T <= 9 layers up by 11-17%, but the extra output copy ate the gain end to end; channels-last-3d
    activations changed neither CPU time nor peak memory.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3, stride: int | tuple[int, int, int] = 1):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, stride=stride)
        k = kernel_size
        # F.pad order: (W left, W right, H top, H bottom, T front, T back)
        self.padding = (k // 2, k // 2, k // 2, k // 2, k - 1, 0)
        self.pointwise = k == 1 and self.conv.stride == (1, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pointwise:
            # A 1x1x1 conv is a matmul over channels. PyTorch's CPU conv3d sends it to slow_conv3d,
            # which first copies the whole input into a column buffer; the matmul reads it in place.
            weight, bias = self.conv.weight.flatten(1), self.conv.bias
            y = torch.matmul(weight, x.flatten(2)) + bias[:, None]
            return y.view(x.shape[0], -1, *x.shape[2:])
        if x.shape[2] == 1:
            image = F.pad(x[:, :, 0], self.padding[:4], mode="replicate")
            y = F.conv2d(image, self.conv.weight.sum(2), self.conv.bias, stride=self.conv.stride[1:])
            return y[:, :, None]
        return self.conv(F.pad(x, self.padding, mode="replicate"))


class ResnetBlock(nn.Module):
    """GN -> SiLU -> conv -> GN -> SiLU -> conv, plus the (1x1x1-projected if needed) input. No time embedding."""

    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_channels, eps=NORM_EPS)
        self.conv1 = CausalConv3d(in_channels, out_channels, 3)
        self.norm2 = nn.GroupNorm(groups, out_channels, eps=NORM_EPS)
        self.conv2 = CausalConv3d(out_channels, out_channels, 3)
        self.conv_shortcut = CausalConv3d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(norm_silu(self.norm1, x))
        h = self.conv2(norm_silu(self.norm2, h))
        if self.conv_shortcut is not None:
            x = self.conv_shortcut(x)
        return h.add_(x) if not torch.is_grad_enabled() else h + x


def frame_causal_mask(num_frames: int, tokens_per_frame: int, device: torch.device) -> torch.Tensor:
    """Boolean [L, L] mask (True = may attend) over (f h w)-flattened tokens: frame i sees frames <= i."""
    frame = torch.arange(num_frames, device=device).repeat_interleave(tokens_per_frame)
    return frame[:, None] >= frame[None, :]


class FrameCausalAttention(nn.Module):
    """Single-head self-attention over all (f h w) tokens with a frame-block-causal mask and a residual.

    The GroupNorm runs on the 5D tensor, so its statistics span every frame (as in the release).
    """

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.group_norm = nn.GroupNorm(groups, channels, eps=NORM_EPS)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        tokens = self.group_norm(x).flatten(2).transpose(1, 2)  # [B, T*H*W, C], order (f h w)
        q, k, v = (proj(tokens).unsqueeze(1) for proj in (self.to_q, self.to_k, self.to_v))
        mask = frame_causal_mask(t, h * w, x.device)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask).squeeze(1)
        out = self.to_out[0](out)
        return x + out.transpose(1, 2).reshape(b, c, t, h, w)


class MidBlock(nn.Module):
    """resnet -> attention -> resnet at the lowest resolution."""

    def __init__(self, channels: int, groups: int, add_attention: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(channels, channels, groups), ResnetBlock(channels, channels, groups)])
        self.attentions = nn.ModuleList([FrameCausalAttention(channels, groups)]) if add_attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        if self.attentions is not None:
            x = self.attentions[0](x)
        return self.resnets[1](x)


class Downsample(nn.Module):
    """A strided causal k3 conv (stride (t, h, w) in {1, 2})."""

    def __init__(self, channels: int, stride: tuple[int, int, int]):
        super().__init__()
        self.conv = CausalConv3d(channels, channels, 3, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling by (t, h, w), then a causal k3 conv.

    Frame 0 is upscaled in space only; frames 1.. are also repeated in time, so T_out = 1 + t(T_in - 1).
    This keeps the 4k+1 <-> k+1 frame mapping exact. (The release upcasts bf16 to fp32 for the
    interpolation; nearest-neighbour copying is exact in any dtype, so we do not.)
    """

    def __init__(self, channels: int, factor: tuple[int, int, int]):
        super().__init__()
        self.factor = factor
        self.conv = CausalConv3d(channels, channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ft, fh, fw = self.factor
        b, c, t, h, w = x.shape
        # One copy: write broadcast views of x into the strided (t, ft, h, fh, w, fw) view of the output.
        out = x.new_empty(b, c, 1 + ft * (t - 1), h * fh, w * fw)
        space = (3, (h, fh)), (4, (w, fw))
        first = out[:, :, :1].unflatten(*space[1]).unflatten(*space[0])
        first.copy_(x[:, :, :1, :, None, :, None].expand_as(first))
        if t > 1:
            rest = out[:, :, 1:].unflatten(*space[1]).unflatten(*space[0]).unflatten(2, (t - 1, ft))
            rest.copy_(x[:, :, 1:, None, :, None, :, None].expand_as(rest))
        return self.conv(out)


class DownBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_layers: int, groups: int, stride: tuple[int, int, int] | None):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock(in_channels if i == 0 else out_channels, out_channels, groups) for i in range(num_layers)]
        )
        self.downsamplers = nn.ModuleList([Downsample(out_channels, stride)]) if stride else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.downsamplers is not None:
            x = self.downsamplers[0](x)
        return x


class UpBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, num_layers: int, groups: int, factor: tuple[int, int, int] | None):
        super().__init__()
        self.resnets = nn.ModuleList(
            [ResnetBlock(in_channels if i == 0 else out_channels, out_channels, groups) for i in range(num_layers)]
        )
        self.upsamplers = nn.ModuleList([Upsample(out_channels, factor)]) if factor else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x)
        if self.upsamplers is not None:
            x = self.upsamplers[0](x)
        return x


def resampling_factors(config: VAEConfig) -> list[tuple[int, int, int] | None]:
    """Per encoder block, the (t, h, w) downsampling stride (None: no downsampler).

    As in the release: the first log2(spatial ratio) blocks halve H and W; the log2(time ratio)
    blocks just before the last one halve T; the last block never resamples. The decoder's up
    blocks use the same list in the same order, so the totals match.
    """
    n = len(config.block_out_channels)
    n_space, n_time = _log2(config.spatial_compression_ratio, "spatial"), _log2(config.time_compression_ratio, "time")
    if n_space > n - 1 or n_time > n - 1:
        raise ValueError(
            f"{n} blocks can downsample at most {n - 1} times; got spatial_compression_ratio="
            f"{config.spatial_compression_ratio}, time_compression_ratio={config.time_compression_ratio}"
        )
    factors: list[tuple[int, int, int] | None] = []
    for i in range(n):
        space = i < n_space
        time = n - 1 - n_time <= i < n - 1
        factors.append((2 if time else 1, 2 if space else 1, 2 if space else 1) if (space or time) else None)
    return factors


def _log2(ratio: int, what: str) -> int:
    if ratio < 1 or ratio & (ratio - 1):
        raise ValueError(f"{what} compression ratio must be a power of two, got {ratio}")
    return int(math.log2(ratio))


class Encoder(nn.Module):
    """video [B, 3, F, H, W] -> moments [B, 2*latent, F', H/8, W/8] (before quant_conv)."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        ch, groups = config.block_out_channels, config.norm_num_groups
        self.conv_in = CausalConv3d(config.in_channels, ch[0], 3)
        self.down_blocks = nn.ModuleList(
            DownBlock(ch[max(i - 1, 0)], ch[i], config.layers_per_block, groups, stride)
            for i, stride in enumerate(resampling_factors(config))
        )
        self.mid_block = MidBlock(ch[-1], groups, config.mid_block_add_attention)
        self.conv_norm_out = nn.GroupNorm(groups, ch[-1], eps=NORM_EPS)
        self.conv_out = CausalConv3d(ch[-1], 2 * config.latent_channels, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(norm_silu(self.conv_norm_out, x))


class Decoder(nn.Module):
    """latent [B, latent, T, h, w] (after post_quant_conv) -> video [B, 3, 4(T-1)+1, 8h, 8w]."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        ch, groups = tuple(reversed(config.block_out_channels)), config.norm_num_groups
        self.conv_in = CausalConv3d(config.latent_channels, ch[0], 3)
        self.mid_block = MidBlock(ch[0], groups, config.mid_block_add_attention)
        self.up_blocks = nn.ModuleList(
            UpBlock(ch[max(i - 1, 0)], ch[i], config.layers_per_block + 1, groups, factor)
            for i, factor in enumerate(resampling_factors(config))
        )
        self.conv_norm_out = nn.GroupNorm(groups, ch[-1], eps=NORM_EPS)
        self.conv_out = CausalConv3d(ch[-1], config.out_channels, 3)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(norm_silu(self.conv_norm_out, x))


class DiagonalGaussian:
    """The encoder's posterior N(mean, exp(logvar)) per latent element; logvar clamped to [-30, 20]."""

    def __init__(self, moments: torch.Tensor):
        mean, logvar = moments.chunk(2, dim=1)
        self.mean = mean
        self.logvar = logvar.clamp(*LOGVAR_RANGE)
        self.std = torch.exp(0.5 * self.logvar)
        self.var = torch.exp(self.logvar)

    def mode(self) -> torch.Tensor:
        return self.mean

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = torch.randn(self.mean.shape, generator=generator, device=self.mean.device, dtype=self.mean.dtype)
        return self.mean + self.std * noise

    def kl(self) -> torch.Tensor:
        """KL(posterior || N(0, I)) per batch element, summed over all latent elements."""
        return 0.5 * (self.mean.pow(2) + self.var - 1.0 - self.logvar).flatten(1).sum(1)


def _channel_view(values: tuple[float, ...], z: torch.Tensor) -> torch.Tensor:
    return torch.tensor(values, device=z.device, dtype=z.dtype).view(1, -1, *([1] * (z.dim() - 2)))


def latents_to_model(z: torch.Tensor, config: VAEConfig) -> torch.Tensor:
    """VAE latents [B, C, ...] -> the DiT's: (z - mean) / std per channel where the config carries
    channel statistics, else z * scaling_factor."""
    if config.latents_std is None:
        return z * config.scaling_factor
    return (z - _channel_view(config.latents_mean, z)) / _channel_view(config.latents_std, z)


def latents_from_model(z: torch.Tensor, config: VAEConfig) -> torch.Tensor:
    """The inverse of `latents_to_model`: the DiT's latents -> what the decoder reads."""
    if config.latents_std is None:
        return z / config.scaling_factor
    return z * _channel_view(config.latents_std, z) + _channel_view(config.latents_mean, z)


def keyframe_thumbnails(video: torch.Tensor, config: VAEConfig) -> torch.Tensor:
    """The pixel shortcut's latent part: video [B, C, 4k+1, H, W] -> [B, f*f*C, k+1, H/8, W/8], f the fold.

    Frames 0, 4, 8, ... (the frames latent k codes once its temporal taps are concentrated),
    average-pooled to 1/f of the latent's stride, each f x f block folded into channels."""
    t, s, f = config.time_compression_ratio, config.spatial_compression_ratio, config.pixel_shortcut_fold
    keys = video[:, :, ::t]
    b, c, n, h, w = keys.shape
    x = F.avg_pool2d(keys.transpose(1, 2).reshape(b * n, c, h, w), s // f)
    return F.pixel_unshuffle(x, f).view(b, n, f * f * c, h // s, w // s).transpose(1, 2)


def thumbnail_video(latents: torch.Tensor, config: VAEConfig) -> torch.Tensor:
    """The pixel shortcut's output part: latents [B, 16, T, h, w] -> video [B, C, 4(T-1)+1, 8h, 8w].

    The first f*f*C channels unfolded into thumbnails, upsampled bicubically to full size; frame 0 is
    keyframe 0, and frames 4k-3..4k blend keyframes k-1 and k linearly (1/4, 2/4, 3/4, 1 of k)."""
    t, s, c, f = config.time_compression_ratio, config.spatial_compression_ratio, config.out_channels, config.pixel_shortcut_fold
    b, _, n, h, w = latents.shape
    x = F.pixel_shuffle(latents[:, : f * f * c].transpose(1, 2).reshape(b * n, f * f * c, h, w), f)
    x = F.interpolate(x, scale_factor=s // f, mode="bicubic", align_corners=False)
    keys = x.view(b, n, c, h * s, w * s).transpose(1, 2)
    weight = torch.arange(1, t + 1, device=keys.device, dtype=keys.dtype).div(t).view(1, 1, 1, t, 1, 1)
    previous, current = keys[:, :, :-1, None], keys[:, :, 1:, None]
    between = previous + (current - previous) * weight  # [B, C, T-1, t, H, W]
    return torch.cat([keys[:, :, :1], between.flatten(2, 3)], dim=2)


class CausalVAE(nn.Module):
    """The causal 3D VAE. `encode` / `decode` work on unscaled latents; tiling is off until enabled."""

    def __init__(self, config: VAEConfig):
        super().__init__()
        if config.act_fn not in ("silu", "swish"):
            raise ValueError(f"act_fn must be 'silu' (the only activation the release uses), got {config.act_fn!r}")
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)
        self.quant_conv = nn.Conv3d(2 * config.latent_channels, 2 * config.latent_channels, 1)
        self.post_quant_conv = nn.Conv3d(config.latent_channels, config.latent_channels, 1)
        self.tiling: Tiling | None = None
        if config.pixel_shortcut:
            # Both networks start as zero residuals of the shortcut: an untrained VAE is already the
            # thumbnail codec (26.4 dB on the shapes world's clips), and training learns what it misses.
            for conv in (self.encoder.conv_out.conv, self.decoder.conv_out.conv):
                nn.init.zeros_(conv.weight)
                nn.init.zeros_(conv.bias)
            with torch.no_grad():
                self.quant_conv.bias[: config.latent_channels].zero_()  # the posterior mean's offset

    # -- tiling switches ---------------------------------------------------------------------

    def enable_tiling(
        self, tile_sample_min_size: int = 256, tile_sample_min_tsize: int = 64, tile_overlap_factor: float = 0.25
    ) -> None:
        """Tile in space and time with the release's rule (see `vae_tiling.py`); bounds peak memory."""
        self.tiling = Tiling(
            self.config, sample_size=tile_sample_min_size, sample_tsize=tile_sample_min_tsize, overlap=tile_overlap_factor
        )

    def disable_tiling(self) -> None:
        self.tiling = None

    # -- encode / decode ---------------------------------------------------------------------

    def encode(self, video: torch.Tensor) -> DiagonalGaussian:
        """video [B, 3, 4k+1, H, W] in [-1, 1] -> posterior over latents [B, 16, k+1, H/8, W/8]."""
        self.check_video(video)
        if self.tiling is not None:
            return DiagonalGaussian(tiled_encode(self, video, self.tiling))
        return DiagonalGaussian(self.encode_moments(video))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unscaled latents [B, 16, T, h, w] -> video [B, 3, 4(T-1)+1, 8h, 8w], roughly in [-1, 1]."""
        self.check_latents(latents)
        if self.tiling is not None:
            return tiled_decode(self, latents, self.tiling)
        return self.decode_latents(latents)

    def forward(self, video: torch.Tensor, sample_posterior: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        posterior = self.encode(video)
        return self.decode(posterior.sample(generator) if sample_posterior else posterior.mode())

    # The untiled passes, without shape checks; the tiling functions call these per tile.
    def encode_moments(self, video: torch.Tensor) -> torch.Tensor:
        moments = self.quant_conv(self.encoder(video))
        if self.config.pixel_shortcut:  # onto the posterior mean's first channels
            thumbnails = keyframe_thumbnails(video, self.config)
            moments = torch.cat([moments[:, : thumbnails.shape[1]] + thumbnails, moments[:, thumbnails.shape[1]:]], dim=1)
        return moments

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        video = self.decoder(self.post_quant_conv(latents))
        return video + thumbnail_video(latents, self.config) if self.config.pixel_shortcut else video

    # -- input checks ------------------------------------------------------------------------

    def check_video(self, video: torch.Tensor) -> None:
        c = self.config
        s, t = c.spatial_compression_ratio, c.time_compression_ratio
        if video.ndim != 5:
            hint = " (an image is a 1-frame video: use image.unsqueeze(2))" if video.ndim == 4 else ""
            raise ValueError(f"expected a video tensor [B, {c.in_channels}, F, H, W], got shape {tuple(video.shape)}{hint}")
        _, ch, frames, h, w = video.shape
        if ch != c.in_channels:
            raise ValueError(f"expected {c.in_channels} channels at dim 1 of [B, C, F, H, W], got {ch} (shape {tuple(video.shape)})")
        if frames % t != 1 and t > 1:
            below = max(frames - (frames - 1) % t, 1)
            raise ValueError(
                f"the frame count must be {t}k+1 (1, {t + 1}, {2 * t + 1}, ...), got {frames}; use {below} or {below + t} frames"
            )
        if h % s or w % s or h == 0 or w == 0:
            raise ValueError(f"height and width must be positive multiples of {s}, got {h}x{w}")

    def check_latents(self, latents: torch.Tensor) -> None:
        c = self.config
        if latents.ndim != 5:
            raise ValueError(f"expected latents [B, {c.latent_channels}, T, h, w], got shape {tuple(latents.shape)}")
        if latents.shape[1] != c.latent_channels:
            raise ValueError(
                f"expected {c.latent_channels} latent channels at dim 1 of [B, C, T, h, w], got {latents.shape[1]} "
                f"(shape {tuple(latents.shape)})"
            )
        if min(latents.shape[2:]) < 1:
            raise ValueError(f"latents need at least one frame, row and column, got shape {tuple(latents.shape)}")


@torch.no_grad()
def concentrate_temporal_taps(vae: CausalVAE) -> CausalVAE:
    """Sum each causal conv's kernel over time into its newest tap (in place).

    An image is a 1-frame video whose causal padding repeats that frame, so every temporal tap sees
    the same input and only their sum matters: images encode and decode exactly as before. A clip
    is then processed frame by frame (apart from the GroupNorm statistics and the mid-block
    attention, which span frames), the time-strided convs keep every second frame, and latent k
    becomes an image code of pixel frame 4k; the decoder draws latent k for frames 4k-3..4k.
    An image-trained VAE so starts clip training with motion in its latents, the way image VAEs
    are inflated to video ones, instead of learning to copy frame 0 forward.
    """
    for module in vae.modules():
        if isinstance(module, CausalConv3d) and module.conv.kernel_size[0] > 1:
            w = module.conv.weight
            summed = w.sum(dim=2)
            w.zero_()
            w[:, :, -1] = summed
    return vae


def build_vae(config: VAEConfig, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> CausalVAE:
    """Build a randomly initialised CausalVAE; device="meta" allocates nothing."""
    with torch.device(device) if device is not None else contextlib.nullcontext():
        model = CausalVAE(config)
    return model.to(dtype=dtype) if dtype is not None else model
