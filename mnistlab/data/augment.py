"""Train-time augmentation, batched on the device with kornia (no per-sample Python)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from mnistlab.errors import ConfigError

AUGMENT_KEYS = ("rotation", "translate", "scale", "shear", "perspective", "perspective_p", "hflip")


def build_augmentation(cfg: Mapping[str, Any] | None) -> nn.Module | None:
    """A kornia pipeline from ``data.augment`` (every field 0/false = off), or None when all are off.

    rotation: ± degrees; translate: ± fraction of the image size; scale: ± fraction (0.1 → 0.9–1.1);
    shear: ± degrees; perspective: distortion scale, applied with probability ``perspective_p``;
    hflip: random horizontal flips (not for digits).
    """
    cfg = dict(cfg or {})
    unknown = set(cfg) - set(AUGMENT_KEYS)
    if unknown:
        raise ConfigError(f"data.augment has unknown key(s) {sorted(unknown)}; allowed: {', '.join(AUGMENT_KEYS)}")
    rotation, translate = float(cfg.get("rotation", 0)), float(cfg.get("translate", 0))
    scale, shear = float(cfg.get("scale", 0)), float(cfg.get("shear", 0))
    perspective, perspective_p = float(cfg.get("perspective", 0)), float(cfg.get("perspective_p", 0.5))
    for key, value, high in [("translate", translate, 1), ("scale", scale, 1), ("perspective", perspective, 1)]:
        if not 0 <= value < high:
            raise ConfigError(f"data.augment.{key}={value} must be in [0, {high})")
    if not 0 <= perspective_p <= 1:
        raise ConfigError(f"data.augment.perspective_p={perspective_p} must be in [0, 1]")

    import kornia.augmentation as K

    steps: list[nn.Module] = []
    if cfg.get("hflip"):
        steps.append(K.RandomHorizontalFlip())
    if rotation or translate or scale or shear:
        steps.append(
            K.RandomAffine(
                degrees=rotation,
                translate=(translate, translate) if translate else None,
                scale=(1 - scale, 1 + scale) if scale else None,
                shear=shear or None,
                p=1.0,
            )
        )
    if perspective:
        steps.append(K.RandomPerspective(distortion_scale=perspective, p=perspective_p))
    return nn.Sequential(*steps) if steps else None
