"""A small named registry of networks, each for 2D slices or 3D images and patches.

========== ====================================== ==========================================
name       what                                   tasks
========== ====================================== ==========================================
conv5fc3   ClinicaDL's Conv5_FC3: five conv/BN/   classification, regression
           LeakyReLU/max-pool blocks, three
           fully connected layers
resnet     a small ResNet: stem + four stages of  classification, regression
           one basic residual block, global
           average pooling
unet       a U-Net (three levels + bottleneck)    segmentation
autoencoder a convolutional autoencoder            reconstruction
           (three stride-2 stages each way)
========== ====================================== ==========================================

``width`` scales the channels (ClinicaDL's Conv5_FC3 is ``width=8``); every
network takes any input size (max-pooling rounds up; the U-Net and the
autoencoder pad to a multiple of their stride and crop back).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from audit.errors import InputError

__all__ = ["MODELS", "ModelSpec", "build_model", "part_of"]


def _layers(dims: int) -> tuple[type[nn.Module], type[nn.Module], type[nn.Module], type[nn.Module]]:
    if dims == 3:
        return nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.ConvTranspose3d
    if dims == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ConvTranspose2d
    raise ValueError(f"dims must be 2 or 3, got {dims}")


class Conv5FC3(nn.Module):
    """ClinicaDL's Conv5_FC3 (Wen et al. 2020), for any input size and 2D or 3D."""

    def __init__(self, in_shape: tuple[int, ...], n_out: int, *, width: int = 8, dropout: float = 0.5) -> None:
        super().__init__()
        dims = len(in_shape) - 1
        conv, bn, pool, _ = _layers(dims)
        chans = [in_shape[0]] + [width * 2**i for i in range(5)]
        blocks: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            blocks += [conv(a, b, 3, padding=1), bn(b), nn.LeakyReLU(), pool(2, 2, ceil_mode=True)]
        self.features = nn.Sequential(*blocks)
        spatial = [math.ceil(s / 32) for s in in_shape[1:]]
        n_feat = chans[-1] * math.prod(spatial)
        h1, h2 = max(16, 1300 * width // 8), max(8, 50 * width // 8)
        self.classifier = nn.Sequential(nn.Flatten(), nn.Dropout(dropout), nn.Linear(n_feat, h1), nn.LeakyReLU(),
                                        nn.Linear(h1, h2), nn.LeakyReLU(), nn.Linear(h2, n_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))  # type: ignore[no-any-return]


class _Basic(nn.Module):
    def __init__(self, dims: int, a: int, b: int, stride: int) -> None:
        super().__init__()
        conv, bn, _, _ = _layers(dims)
        self.c1, self.b1 = conv(a, b, 3, stride=stride, padding=1, bias=False), bn(b)
        self.c2, self.b2 = conv(b, b, 3, padding=1, bias=False), bn(b)
        self.skip: nn.Module = nn.Identity() if stride == 1 and a == b else nn.Sequential(
            conv(a, b, 1, stride=stride, bias=False), bn(b))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.b1(self.c1(x)))
        return F.relu(self.b2(self.c2(y)) + self.skip(x))


class ResNet(nn.Module):
    """A small ResNet (one basic block per stage), 2D or 3D."""

    def __init__(self, in_shape: tuple[int, ...], n_out: int, *, width: int = 8) -> None:
        super().__init__()
        dims = len(in_shape) - 1
        conv, bn, _, _ = _layers(dims)
        self.stem = nn.Sequential(conv(in_shape[0], width, 3, padding=1, bias=False), bn(width), nn.ReLU())
        chans = [width, width, 2 * width, 4 * width, 8 * width]
        self.stages = nn.Sequential(*[_Basic(dims, a, b, 1 if i == 0 else 2)
                                      for i, (a, b) in enumerate(zip(chans[:-1], chans[1:]))])
        self.pool = nn.AdaptiveAvgPool3d(1) if dims == 3 else nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(chans[-1], n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.stages(self.stem(x))), 1))  # type: ignore[no-any-return]


def _pad_to(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    size = tuple(x.shape[2:])
    pad: list[int] = []
    for s in reversed(size):
        pad += [0, (-s) % multiple]
    return (F.pad(x, pad) if any(pad) else x), size


def _crop(x: torch.Tensor, size: tuple[int, ...]) -> torch.Tensor:
    return x[(slice(None), slice(None), *(slice(0, s) for s in size))]


class _Double(nn.Sequential):
    def __init__(self, dims: int, a: int, b: int) -> None:
        conv, bn, _, _ = _layers(dims)
        super().__init__(conv(a, b, 3, padding=1, bias=False), bn(b), nn.ReLU(),
                         conv(b, b, 3, padding=1, bias=False), bn(b), nn.ReLU())


class UNet(nn.Module):
    """A U-Net (Çiçek et al. 2016 in 3D): three levels, a bottleneck, skip connections."""

    levels = 3

    def __init__(self, in_shape: tuple[int, ...], n_out: int, *, width: int = 8) -> None:
        super().__init__()
        dims = len(in_shape) - 1
        conv, _, pool, up = _layers(dims)
        chans = [width * 2**i for i in range(self.levels + 1)]
        self.down = nn.ModuleList()
        a = in_shape[0]
        for c in chans[:-1]:
            self.down.append(_Double(dims, a, c))
            a = c
        self.pool = pool(2)
        self.bottom = _Double(dims, chans[-2], chans[-1])
        self.ups = nn.ModuleList(up(chans[i + 1], chans[i], 2, stride=2) for i in reversed(range(self.levels)))
        self.dec = nn.ModuleList(_Double(dims, 2 * chans[i], chans[i]) for i in reversed(range(self.levels)))
        self.head = conv(chans[0], n_out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, size = _pad_to(x, 2**self.levels)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottom(x)
        for upconv, dec, skip in zip(self.ups, self.dec, reversed(skips)):
            x = dec(torch.cat([upconv(x), skip], dim=1))
        return _crop(self.head(x), size)


class AutoEncoder(nn.Module):
    """A convolutional autoencoder: three stride-2 stages down, three transposed stages up."""

    stages = 3

    def __init__(self, in_shape: tuple[int, ...], n_out: int, *, width: int = 8) -> None:
        super().__init__()
        dims = len(in_shape) - 1
        conv, bn, _, up = _layers(dims)
        chans = [in_shape[0]] + [width * 2**i for i in range(self.stages)]
        enc: list[nn.Module] = []
        for a, b in zip(chans[:-1], chans[1:]):
            enc += [conv(a, b, 3, stride=2, padding=1), bn(b), nn.LeakyReLU()]
        self.encoder = nn.Sequential(*enc)
        dec: list[nn.Module] = []
        rev = chans[::-1]
        for i, (a, b) in enumerate(zip(rev[:-1], rev[1:])):
            last = i == len(rev) - 2
            dec += [up(a, width if last else b, 2, stride=2)]
            dec += [] if last else [bn(b), nn.LeakyReLU()]
        self.decoder = nn.Sequential(*dec, nn.LeakyReLU(), conv(width, n_out, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x, size = _pad_to(x, 2**self.stages)
        return _crop(self.decoder(self.encoder(x)), size)


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry: how to build the network and which tasks it serves."""

    name: str
    build: Callable[..., nn.Module]
    tasks: tuple[str, ...]
    description: str


MODELS: dict[str, ModelSpec] = {
    "conv5fc3": ModelSpec("conv5fc3", Conv5FC3, ("classification", "regression"),
                          "ClinicaDL's Conv5_FC3 CNN"),
    "resnet": ModelSpec("resnet", ResNet, ("classification", "regression"), "a small ResNet"),
    "unet": ModelSpec("unet", UNet, ("segmentation",), "a U-Net"),
    "autoencoder": ModelSpec("autoencoder", AutoEncoder, ("reconstruction",), "a convolutional autoencoder"),
}
# which top-level submodules make the encoder (features) and the decoder (head) of each model: transfer learning
PARTS: dict[str, dict[str, tuple[str, ...]]] = {
    "conv5fc3": {"encoder": ("features",), "decoder": ("classifier",)},
    "resnet": {"encoder": ("stem", "stages"), "decoder": ("fc",)},
    "unet": {"encoder": ("down", "bottom"), "decoder": ("ups", "dec", "head")},
    "autoencoder": {"encoder": ("encoder",), "decoder": ("decoder",)},
}


def part_of(model: str, name: str) -> str | None:
    """``encoder``, ``decoder`` or ``None`` for parameter or module ``name`` of registry model ``model``."""
    top = name.split(".", 1)[0]
    for part, prefixes in PARTS.get(model, {}).items():
        if top in prefixes:
            return part
    return None


def build_model(name: str, task: str, in_shape: tuple[int, ...], n_out: int, *, width: int = 8) -> nn.Module:
    """Build registry model ``name`` for ``task`` on inputs of ``in_shape`` (channels first, no batch).

    Raises
    ------
    InputError
        An unknown name, or a model that does not serve ``task``.
    """
    spec = MODELS.get(name)
    if spec is None:
        raise InputError(None, field="--model", expected=" or ".join(MODELS), got=repr(name))
    if task not in spec.tasks:
        raise InputError(None, f"model '{name}' ({spec.description}) does not do {task}", field="--model",
                         expected=" or ".join(n for n, s in MODELS.items() if task in s.tasks))
    if width < 1:
        raise InputError(None, field="--width", expected="a positive integer", got=str(width))
    return spec.build(tuple(in_shape), n_out, width=width)
