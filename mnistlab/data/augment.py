"""Train-time augmentation, batched on the device with kornia (no per-sample Python)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from mnistlab.core.errors import ConfigError
from mnistlab.core.fields import FIELDS, check

AUGMENT_KEYS = tuple(key.removeprefix("data.augment.") for key in FIELDS if key.startswith("data.augment."))


def build_augmentation(cfg: Mapping[str, Any] | None, input_shape: tuple[int, ...] = (1, 28, 28)) -> nn.Module | None:
    """A kornia pipeline from ``data.augment`` (every field 0/false = off), or None when all are off.

    rotation: ± degrees; translate: ± fraction of the image size; scale: ± fraction (0.1 → 0.9–1.1);
    shear: ± degrees; perspective: distortion scale, applied with probability ``perspective_p``;
    hflip: random horizontal flips (not for digits); crop_scale: random resized crop keeping that fraction
    of the area or more (square, resized back to the input size); color_jitter: brightness, contrast and
    saturation jitter of that strength; erasing: probability of erasing a random rectangle (2–33 % of the
    image, random erasing), applied last.
    """
    cfg = dict(cfg or {})
    unknown = set(cfg) - set(AUGMENT_KEYS)
    if unknown:
        raise ConfigError(f"data.augment has unknown key(s) {sorted(unknown)}; allowed: {', '.join(AUGMENT_KEYS)}")
    for key, value in cfg.items():
        check(f"data.augment.{key}", value)
    rotation, translate = float(cfg.get("rotation", 0)), float(cfg.get("translate", 0))
    scale, shear = float(cfg.get("scale", 0)), float(cfg.get("shear", 0))
    perspective, perspective_p = float(cfg.get("perspective", 0)), float(cfg.get("perspective_p", 0.5))
    crop_scale, jitter = float(cfg.get("crop_scale", 0)), float(cfg.get("color_jitter", 0))
    erasing = float(cfg.get("erasing", 0))

    import kornia.augmentation as K

    steps: list[nn.Module] = []
    if cfg.get("hflip"):
        steps.append(K.RandomHorizontalFlip())
    if crop_scale:
        steps.append(K.RandomResizedCrop((input_shape[1], input_shape[2]), scale=(crop_scale, 1.0), ratio=(1.0, 1.0)))
    if jitter:
        steps.append(K.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, p=1.0))
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
    if erasing:
        steps.append(K.RandomErasing(p=erasing))
    return nn.Sequential(*steps) if steps else None
