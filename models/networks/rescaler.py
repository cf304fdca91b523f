"""A shippable rescaling model: the invertible network plus, for -M, the latent codec.

`ModelConfig` names a variant (irn, irn-a, irn-m, dlv-irn, dlv-irn-a, dlv-irn-m) and a
scale; it is saved beside the weights and rebuilds the model.
"""

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from models.networks.invertible_rescaler import SCALES, InvertibleRescaler, RescalerConfig
from models.networks.latent_codec import CODE_REDUCTION, LatentCodec, LatentCodecConfig
from models.networks.lr_restorer import LRRestorer, RestorerConfig
from models.networks.quantize import quantize_alpha, quantize_unit

VARIANTS = ("irn", "irn-a", "irn-m", "dlv-irn", "dlv-irn-a", "dlv-irn-m")


@dataclass(frozen=True)
class ModelConfig:
    variant: str = "irn"
    scale: int = 4
    blocks_per_level: int = 8
    growth: int = 32
    dlv_channels: int = 3
    dlv_sigma: float = 1.0
    alpha_gain: float = 64.0  # -A: see invertible_rescaler.py; the first shipped IRN-A used 1
    codec_layers: int = 4
    codec_hidden: int = 64
    # compression-aware models: an LR restorer of this many conv layers before the inverse (0: none)
    restorer_layers: int = 0
    restorer_hidden: int = 64

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {', '.join(VARIANTS)}; got {self.variant!r}")
        if self.scale not in SCALES:
            raise ValueError(f"scale must be one of {SCALES}, got {self.scale}")
        if self.dlv and self.dlv_channels < 1:
            raise ValueError(f"{self.variant} needs dlv_channels >= 1, got {self.dlv_channels}")
        if self.dlv_sigma < 0:
            raise ValueError(f"dlv_sigma must be >= 0, got {self.dlv_sigma}")
        self.network_config()  # validates the remaining sizes
        if self.metadata:
            self.codec_config()
        if self.restorer_layers:
            if self.alpha:
                raise ValueError(f"an LR restorer works on an RGB LR, not on {self.variant}'s alpha")
            self.restorer_config()

    @property
    def base(self) -> str:
        return "dlv-irn" if self.dlv else "irn"

    @property
    def dlv(self) -> bool:
        return self.variant.startswith("dlv-")

    @property
    def alpha(self) -> bool:
        return self.variant.endswith("-a")

    @property
    def metadata(self) -> bool:
        return self.variant.endswith("-m")

    @property
    def size_multiple(self) -> int:
        """HR height and width must be multiples of this (inputs are padded to it)."""
        return self.scale * (CODE_REDUCTION if self.metadata else 1)

    def network_config(self) -> RescalerConfig:
        return RescalerConfig(
            scale=self.scale,
            alpha=self.alpha,
            dlv_channels=self.dlv_channels if self.dlv else 0,
            blocks_per_level=self.blocks_per_level,
            growth=self.growth,
            alpha_gain=self.alpha_gain,
        )

    def codec_config(self) -> LatentCodecConfig:
        return LatentCodecConfig(
            z_channels=self.network_config().z_channels, layers=self.codec_layers, hidden=self.codec_hidden
        )

    def restorer_config(self) -> RestorerConfig:
        return RestorerConfig(channels=3, layers=self.restorer_layers, hidden=self.restorer_hidden)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "ModelConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown model config keys: {', '.join(unknown)}")
        return cls(**data)


def lr_lengths(hr_length: int, scale: int, multiple: int) -> tuple[int, ...]:
    """The LR lengths a file may carry for an HR length: ceil(H / s), what every file is written with, and for
    -M files written before that (`multiple` = 4 x s, the code's grid), the LR of the padded HR."""
    exact, padded = -(-hr_length // scale), -(-hr_length // multiple) * multiple // scale
    return (exact,) if padded == exact else (exact, padded)


@dataclass
class Encoded:
    """What a file carries, as floats on the k/255 grid."""

    rgb: torch.Tensor  # (B, 3, h, w)
    alpha: torch.Tensor | None = None  # (B, 1, h, w), -A
    code: torch.Tensor | None = None  # (B, 4, h/4, w/4), -M

    def to(self, device: torch.device | str) -> "Encoded":
        return Encoded(*(None if t is None else t.to(device) for t in (self.rgb, self.alpha, self.code)))

    @classmethod
    def cat(cls, items: list["Encoded"]) -> "Encoded":
        """Stack single-image inputs into a batch (all fields present or absent alike)."""
        fields = zip(*((e.rgb, e.alpha, e.code) for e in items), strict=True)
        return cls(*(None if parts[0] is None else torch.cat(parts) for parts in fields))

    def split(self) -> list["Encoded"]:
        return [
            Encoded(*(None if t is None else t[i : i + 1] for t in (self.rgb, self.alpha, self.code)))
            for i in range(self.rgb.shape[0])
        ]


@dataclass
class TrainingOutputs:
    lr_rgb: torch.Tensor  # (B, 3, h, w) before rounding
    z: torch.Tensor  # (B, Cz, h, w)
    z_hat: torch.Tensor | None  # decoded z for -M
    hr_rec: torch.Tensor  # (B, 3, H, W) from the rounded LR


class Rescaler(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        self.net = InvertibleRescaler(config.network_config())
        self.codec = LatentCodec(config.codec_config()) if config.metadata else None
        self.restorer = LRRestorer(config.restorer_config()) if config.restorer_layers else None

    def restore(self, rgb: torch.Tensor) -> torch.Tensor:
        """The decoded RGB LR, corrected for codec damage by the restorer of a compression-aware model."""
        return rgb if self.restorer is None else self.restorer(rgb)

    def encode_floats(self, hr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The network's part of `encode`: the LR (with alpha for -A) and, for -M, the code before rounding."""
        lr, z = self.net.downscale(hr)
        return lr, None if self.codec is None else self.codec.encode(z)

    def quantize(self, lr: torch.Tensor, code: torch.Tensor | None) -> Encoded:
        """`encode_floats`' outputs -> file contents on the k/255 grid (fp32: k/255 needs it under bf16)."""
        c = self.net.config.image_channels
        encoded = Encoded(rgb=quantize_unit(lr[:, :c].float()))
        if self.config.alpha:
            encoded.alpha = quantize_alpha(lr[:, c:].float())
        if code is not None:
            encoded.code = quantize_unit(code.float())
        return encoded

    def _reconstruct(self, encoded: Encoded) -> torch.Tensor:
        rgb = self.restore(encoded.rgb)
        lr = rgb if encoded.alpha is None else torch.cat([rgb, encoded.alpha], dim=1)
        z_hat = self.codec.decode(encoded.code) if self.codec is not None and encoded.code is not None else None
        return self.net.upscale(lr, z_hat)

    def sample_dlv_latent(self, hr: torch.Tensor) -> torch.Tensor | None:
        """Training-time downscaling latent u ~ N(0, sigma^2) at half the HR size."""
        if not self.config.dlv:
            return None
        b, _, h, w = hr.shape
        return torch.randn(b, self.config.dlv_channels, h // 2, w // 2, device=hr.device, dtype=hr.dtype) * (
            self.config.dlv_sigma
        )

    def training_forward(self, hr: torch.Tensor) -> TrainingOutputs:
        lr, z = self.net.downscale(hr, self.sample_dlv_latent(hr))
        encoded = self.quantize(lr, None if self.codec is None else self.codec.encode(z))
        z_hat = self.codec.decode(encoded.code) if self.codec is not None else None
        lr_q = encoded.rgb if encoded.alpha is None else torch.cat([encoded.rgb, encoded.alpha], dim=1)
        hr_rec = self.net.upscale(lr_q, z_hat)
        return TrainingOutputs(lr_rgb=lr[:, : self.net.config.image_channels], z=z, z_hat=z_hat, hr_rec=hr_rec)

    def check_hr(self, hr: torch.Tensor) -> None:
        """What `encode` takes, whatever runs it: H and W multiples of `config.size_multiple`."""
        m = self.config.size_multiple
        if hr.shape[-2] % m or hr.shape[-1] % m:
            raise ValueError(f"{self.config.variant} x{self.config.scale} needs sizes that are multiples of {m}")

    def check_encoded(self, encoded: Encoded) -> None:
        """What `decode` takes, whatever runs it: -A needs its alpha channel."""
        if self.config.alpha and encoded.alpha is None:
            raise ValueError(f"{self.config.variant} needs the alpha channel")

    @torch.no_grad()
    def encode(self, hr: torch.Tensor) -> Encoded:
        """HR (B, 3, H, W) in [0, 1], H and W multiples of `config.size_multiple` -> file contents."""
        self.check_hr(hr)
        return self.quantize(*self.encode_floats(hr))

    @torch.no_grad()
    def decode(self, encoded: Encoded) -> torch.Tensor:
        """File contents -> HR (B, 3, H, W); a missing code means z = 0 (a degraded -M file)."""
        self.check_encoded(encoded)
        return self._reconstruct(encoded)

    def forward(self, x: torch.Tensor, rev: bool = False):
        return self.decode(Encoded(rgb=x)) if rev else self.encode(x)
