"""Image bytes → uint8 arrays of one size and channel count, safely (pixel and memory budgets checked from the
header, before a pixel is decoded) and fast (threads over chunks; PIL releases the GIL while it decodes and
resizes). Training data and served images go through the same decoding, so a model sees the same pixels.
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from mnistlab.core.errors import DataError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
DEFAULT_MAX_PIXELS = 16_000_000  # 4000×4000: far beyond any training image, far below a decompression bomb
DEFAULT_MAX_DECODED_MB = 256  # what one image may take to decode and prepare: any 16 Mpx image fits (~210 MB)
REDUCED_SIDE = 1600  # a larger image is averaged down to this longest side as it is decoded
PREPARE_BYTES_PER_PIXEL = 28  # serving's preprocessing copies of the reduced image (measured: up to 24 B/px)
# modes Image.reduce averages only through a full-size copy (bytes per pixel of that copy): alpha premultiplied
# (PIL does it inside reduce), palettes and bits expanded, 16-bit widened to 32
REDUCE_COPY_BYTES = {"RGBA": 4, "LA": 4, "PA": 8, "P": 4, "1": 1, "I;16": 4, "I;16B": 4, "I;16L": 4}
FORMATS = ("PNG", "JPEG", "BMP", "GIF", "WEBP", "TIFF")  # the formats promised; no other PIL plugin is reached
BYTES_PER_BAND = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I": 4, "F": 4}
GRAY_MODES = ("1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F")


class BadImageError(DataError):
    """The bytes are not a usable image (empty, corrupt, not an image, blank): HTTP 400."""

    status_code = 400


class ImageTooLargeError(BadImageError):
    """The image declares more pixels than allowed (a decompression bomb, or just absurd): HTTP 413."""

    status_code = 413


def open_image(
    source: bytes | str | Path,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_decoded_mb: float = DEFAULT_MAX_DECODED_MB,
    draft: tuple[int, int] | None = None,
    bomb_warnings: bool = True,
) -> Image.Image:
    """Decode an image of a promised format, refusing absurd dimensions and decoded sizes before a single
    pixel is decoded; larger than ``REDUCED_SIDE`` it is averaged down as it is decoded; EXIF rotation applied.
    ``draft``: a JPEG may be decoded at a reduced scale no smaller than this size (several times faster, but
    other pixels than a whole decode: training does not use it, as predict and serve do not).
    ``bomb_warnings=False`` leaves PIL's warning filters alone (they are process-wide, not thread-safe);
    ``max_pixels`` must then stay under PIL's own limit, which it does by default.

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
        with warnings.catch_warnings() if bomb_warnings else contextlib.nullcontext():
            if bomb_warnings:
                warnings.simplefilter("error", Image.DecompressionBombWarning)
            image: Image.Image = Image.open(stream, formats=FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLargeError(
                    f"the image is {width}×{height} pixels; at most {max_pixels:,} pixels are accepted"
                )
            if width == 0 or height == 0:
                raise BadImageError("the image has no pixels")
            if draft is not None:
                if image.format == "JPEG":
                    image.draft(image.mode, draft)
            elif max(width, height) > REDUCED_SIDE:  # a JPEG decodes at 1/2, 1/4 or 1/8 scale straight away
                scale = REDUCED_SIDE / max(width, height)
                image.draft(None, (max(1, round(width * scale)), max(1, round(height * scale))))
            cost_mb = memory_needed(image) / 2**20
            if cost_mb > max_decoded_mb:
                raise ImageTooLargeError(
                    f"the image would take {cost_mb:.0f} MB to decode and prepare ({width}×{height} {image.mode}); "
                    f"at most {max_decoded_mb:g} MB are accepted"
                )
            image.load()
            image = _reduced(image)
            image = ImageOps.exif_transpose(image)  # phone photos store their rotation in EXIF
    except BadImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageTooLargeError(
            f"the image is too large to decode; at most {max_pixels:,} pixels are accepted"
        ) from None
    except FileNotFoundError:
        raise BadImageError(f"{source!s} does not exist") from None
    except Exception as err:  # PIL raises UnidentifiedImageError, OSError, SyntaxError, ValueError… on bad bytes
        name = "the upload" if isinstance(source, bytes) else str(source)
        if isinstance(err, UnidentifiedImageError):
            reason = "not a PNG, JPG, BMP, GIF, WebP or TIFF file"
        else:
            reason = f"corrupt or truncated: {type(err).__name__}: {str(err)[:120]}"
        raise BadImageError(f"{name} is not a readable image ({reason})") from None
    return image


def _factor(image: Image.Image) -> int:
    return -(-max(image.size) // REDUCED_SIDE)  # ceil


def memory_needed(image: Image.Image) -> int:
    """Bytes that decoding and preparing ``image`` take at most, from its header (its size after ``draft``):
    the decoded pixels, the copy reducing makes, the reduced image and preprocessing's copies of it."""
    width, height = image.size
    decoded = width * height * len(image.getbands()) * BYTES_PER_BAND.get(image.mode, 1)
    factor = _factor(image)
    copy = width * height * REDUCE_COPY_BYTES.get(image.mode, 0) if factor > 1 else 0
    reduced = -(-width // factor) * -(-height // factor)
    return decoded + copy + reduced * (4 + PREPARE_BYTES_PER_PIXEL)


def _reduced(image: Image.Image) -> Image.Image:
    """``image`` box-averaged to at most ``REDUCED_SIDE`` px on its longer side, in its own mode (16-bit stays
    16-bit, transparency stays), so that preprocessing never copies a 16 Mpx image in float."""
    factor = _factor(image)
    if factor <= 1:
        return image
    mode = image.mode
    if mode.startswith("I;16"):
        return image.convert("I").reduce(factor).convert(mode)
    if mode in ("1", "P", "PA"):
        transparent = mode == "PA" or "transparency" in image.info
        image = image.convert("RGBA" if transparent else ("L" if mode == "1" else "RGB"))
    return image.reduce(factor)


def to_8bit(image: Image.Image) -> Image.Image:
    """16/32-bit and float gray → 8-bit L by a fixed scale (not per image: brightness stays comparable)."""
    if image.mode not in ("I", "I;16", "I;16B", "I;16L", "F"):
        return image
    values: np.ndarray = np.asarray(image, dtype=np.float64)
    if image.mode == "F" and np.nanmax(values, initial=0) <= 1:
        values = values * 255
    elif image.mode.startswith("I;16") or np.nanmax(values, initial=0) > 255:
        values = values / 257  # 0..65535 → 0..255
    return Image.fromarray(np.nan_to_num(values).clip(0, 255).round().astype(np.uint8), "L")


def square(image: Image.Image, size: int, channels: int) -> np.ndarray:
    """uint8 ``(channels, size, size)``: shorter side scaled to ``size``, center crop (what serving's ``resize``
    style does to a photo); alpha dropped, palettes expanded."""
    image = to_8bit(image).convert("RGB" if channels == 3 else "L")
    if image.size != (size, size):
        scale = size / min(image.size)
        width, height = (max(size, round(side * scale)) for side in image.size)
        left, top = (width - size) // 2, (height - size) // 2
        box = (left / scale, top / scale, (left + size) / scale, (top + size) / scale)
        image = image.resize((size, size), Image.Resampling.BILINEAR, box=box, reducing_gap=3.0)
    array = np.asarray(image, dtype=np.uint8)
    return array.reshape(size, size, channels).transpose(2, 0, 1)


def header(data: bytes) -> tuple[int, int, bool]:
    """(width, height, gray) from the header alone (EXIF rotation considered); OSError for unreadable bytes."""
    with Image.open(io.BytesIO(data), formats=FORMATS) as image:
        width, height = image.size
        if image.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # rotated by 90°: sides swap
            width, height = height, width
        return width, height, image.mode in GRAY_MODES


def workers() -> int:
    """Decoding threads: the CPUs this process may use, at most 16."""
    return max(1, min(16, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def decode_into(
    out: np.ndarray,
    count: int,
    read: Callable[[Sequence[int]], list[bytes | None]],
    size: int,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    chunk: int = 256,
    on_bytes: Callable[[int, bytes], None] | None = None,
) -> dict[int, str]:
    """Decode items ``0..count-1`` (their bytes from ``read(indices)``; None: missing) into ``out[i]``
    (uint8, ``(count, C, size, size)``), in threads over chunks. Returns {index: why} for the bad ones;
    ``on_bytes(i, data)`` sees every item's bytes (for a content hash)."""
    channels = out.shape[1]
    bad: dict[int, str] = {}

    def run(start: int) -> None:
        indices = range(start, min(start + chunk, count))
        for i, data in zip(indices, read(indices), strict=True):
            if data is None:
                bad[i] = "the file cannot be read"
                continue
            if on_bytes is not None:
                on_bytes(i, data)
            if not data:
                bad[i] = "the file is empty (0 bytes)"
                continue
            try:
                # no JPEG draft here: predict and serve decode the whole image, and a JPEG decoded at a reduced
                # DCT scale differs from it by up to 40 % of the range at edges (the model would see other pixels)
                image = open_image(data, max_pixels, bomb_warnings=False)
                out[i] = square(image, size, channels)
            except BadImageError as err:
                bad[i] = str(err).removeprefix("the upload is ")
            except Exception as err:  # a decoder's failure past the header checks
                bad[i] = f"corrupt or truncated: {type(err).__name__}: {str(err)[:120]}"

    with ThreadPoolExecutor(workers()) as pool:
        list(pool.map(run, range(0, count, chunk)))
    return bad
