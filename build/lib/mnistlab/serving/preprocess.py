"""Turn a real image (a photo, a scan, a canvas drawing) into what the model was trained on.

Predictions on drawn digits are right only when the input looks like MNIST: white ink on
black, the digit scaled into a 20×20 box, padded to 28×28 and placed by its center of mass. ``predict``,
``serve`` and the browser page all go through :func:`prepare`, so the three see the same 28×28 input.

Output is float32 in [0, 1], shape ``(C, H, W)``; the model normalizes it itself (its train statistics are
in the checkpoint), so nothing here knows a dataset's mean or std.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError
from scipy.ndimage import center_of_mass  # (row, column) of the intensity-weighted mean, in pixel indices

from mnistlab.core.errors import DataError
from mnistlab.core.fields import check

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DEFAULT_MAX_PIXELS = 16_000_000  # 4000×4000: far beyond any digit, far below a decompression bomb
DEFAULT_MAX_DECODED_MB = 64  # what decoding may allocate: 4000×4000 RGBA, or 16-bit gray at 32 MB
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")  # the formats promised; no other PIL plugin is reached
BYTES_PER_BAND = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}


class BadImageError(DataError):
    """The bytes are not a usable image (empty, corrupt, not an image, blank): HTTP 400."""

    status_code = 400


class ImageTooLargeError(BadImageError):
    """The image declares more pixels than allowed (a decompression bomb, or just absurd): HTTP 413."""

    status_code = 413


def open_image(
    source: bytes | str | Path, max_pixels: int = DEFAULT_MAX_PIXELS, max_decoded_mb: float = DEFAULT_MAX_DECODED_MB
) -> Image.Image:
    """Decode an image of a promised format, refusing absurd dimensions and decoded sizes before a single
    pixel is decoded.

    PIL reads only the header in ``Image.open``; the checks therefore cost nothing even for a 50 000×50 000
    PNG of a few kilobytes.
    """
    if isinstance(source, bytes):
        if not source:
            raise BadImageError("the upload is empty")
        stream: io.BytesIO | Path = io.BytesIO(source)
    else:
        stream = Path(source)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"the image is {width}×{height} pixels; at most {max_pixels:,} pixels are accepted"
                )
            decoded_mb = width * height * len(image.getbands()) * BYTES_PER_BAND.get(image.mode, 1) / 2**20
            if decoded_mb > max_decoded_mb:
                raise ImageTooLargeError(
                    f"the image would take {decoded_mb:.0f} MB to decode ({width}×{height} {image.mode}); "
                    f"at most {max_decoded_mb:g} MB are accepted"
                )
            if width == 0 or height == 0:
                raise BadImageError("the image has no pixels")
            image.load()
            image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(
            f"the image is too large to decode; at most {max_pixels:,} pixels are accepted"
        ) from None
    except FileNotFoundError:
        raise BadImageError(f"{source} does not exist") from None
    except Exception as err:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError… on bad bytes
        name = "the upload" if isinstance(source, bytes) else str(source)
        if isinstance(err, UnidentifiedImageError):
            reason = "not a PNG, JPG, BMP, GIF, WebP or TIFF file"
        else:
            reason = f"corrupt or truncated: {type(err).__name__}: {str(err)[:120]}"
        raise BadImageError(f"{name} is not a readable image ({reason})") from None
    return image


def to_gray(image: Image.Image) -> np.ndarray:
    """Luminance in [0, 1]. Transparent pixels become the background: a canvas with a transparent background
    and dark strokes reads as dark ink on white, one with light strokes as light ink on black."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        alpha = np.asarray(rgba.getchannel("A"), dtype=np.float32) / 255
        gray = np.asarray(rgba.convert("L"), dtype=np.float32) / 255
        opaque = alpha > 0.5
        ink_is_dark = opaque.any() and float(gray[opaque].mean()) < 0.5
        background = 1.0 if ink_is_dark else 0.0
        return gray * alpha + background * (1 - alpha)
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        values = np.asarray(image, dtype=np.float32)
        if not np.isfinite(values).all():
            raise BadImageError("the image has pixels that are not finite numbers (NaN or infinity)")
        span = float(values.max() - values.min())
        return (values - values.min()) / span if span > 0 else np.zeros_like(values)
    return np.asarray(image.convert("L"), dtype=np.float32) / 255


def ink_on_black(gray: np.ndarray) -> np.ndarray:
    """White ink on a black background, as in MNIST: inverted when the border (the background) is light,
    then the background level subtracted and the ink stretched to a peak of 1."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    background = float(np.median(border))
    if background > 0.5:
        gray, background = 1.0 - gray, 1.0 - background
    ink = np.clip(gray - background, 0.0, None)
    peak = float(ink.max())
    if peak < 0.1:
        raise BadImageError("no digit found: the image is blank (no ink differs from the background)")
    return ink / peak


def _resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased resize of a float image (PIL's mode F keeps the precision of the ink)."""
    resized = Image.fromarray(array.astype(np.float32)).resize((width, height), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def mnist_style(gray: np.ndarray, size: int = 28, box: int = 20, by_mass: bool = True) -> np.ndarray:
    """MNIST's own recipe: crop to the ink, longest side to ``box`` px (aspect kept), pad to ``size``×``size``
    with the center of mass at the center (``by_mass=False``: the bounding box at the center)."""
    ink = ink_on_black(gray)
    rows, cols = np.nonzero(ink > 0.2)
    ink = ink[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1]
    scale = box / max(ink.shape)
    height, width = (max(1, round(n * scale)) for n in ink.shape)
    digit = _resize(ink, height, width)
    if digit.max() <= 0:  # a one-pixel speck can vanish in resampling
        raise BadImageError("no digit found: the ink is too faint or too small")
    if by_mass:  # MNIST put the center of mass at pixel (14, 14) of 28×28 (measured: mean 14.1, 14.1)
        (cy, cx), middle = center_of_mass(digit), size / 2
    else:
        (cy, cx), middle = ((height - 1) / 2, (width - 1) / 2), (size - 1) / 2
    top, left = round(middle - cy), round(middle - cx)
    # paste into a canvas padded by `box` on every side, so a lopsided digit's shift never falls off
    canvas = np.zeros((size + 2 * box, size + 2 * box), dtype=np.float32)
    canvas[top + box : top + box + height, left + box : left + box + width] = digit
    return canvas[box : box + size, box : box + size]


def resize_crop(image: Image.Image, channels: int, height: int, width: int) -> np.ndarray:
    """Natural images (CIFAR-10, Tiny-ImageNet): shorter side to the model's size, then a center crop."""
    image = image.convert("RGB" if channels == 3 else "L")
    scale = max(height / image.height, width / image.width)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    array = np.asarray(image.crop((left, top, left + width, top + height)), dtype=np.float32) / 255
    return array.reshape(height, width, channels).transpose(2, 0, 1)


def resolve_style(style: str, dataset: str | None, input_shape: tuple[int, int, int]) -> str:
    """``auto``: MNIST's recipe for digits, ``fit`` (bounding box centered, no 20 px box) for other gray
    28×28 data such as Fashion-MNIST, ``resize`` for colour images."""
    if check("preprocess", style) != "auto":
        return style
    if input_shape[0] == 3:
        return "resize"
    return "mnist" if dataset in (None, "mnist") else "fit"


def prepare(image: Image.Image, input_shape: tuple[int, int, int], style: str = "mnist") -> np.ndarray:
    """The model's input for one image: float32 ``(C, H, W)`` in [0, 1] (``style`` as from ``resolve_style``)."""
    channels, height, width = input_shape
    try:
        if style == "resize":
            return resize_crop(image, channels, height, width)
        gray = to_gray(image)
    except (ValueError, OSError) as err:  # modes PIL cannot convert (LAB, HSV, …)
        raise BadImageError(f"cannot read a {image.mode} image as gray or RGB ({err})") from None
    if style == "mnist":
        gray = mnist_style(gray, size=height, box=round(height * 20 / 28))
    else:  # fit
        gray = mnist_style(gray, size=height, box=height, by_mass=False)
    if gray.shape != (height, width):
        gray = _resize(gray, height, width)
    return np.repeat(gray[None], channels, axis=0)


def image_files(inputs: list[str]) -> list[Path]:
    """Files named directly, and the images found (recursively, sorted) in folders."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise DataError(f"{item} holds no image files ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{item} does not exist: pass image files or folders, e.g. inputs=[a.png,digits/]")
    return files
