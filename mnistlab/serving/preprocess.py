"""Turn a real image (a photo, a scan, a canvas drawing) into what the model was trained on.

Predictions on drawn digits are right only when the input looks like MNIST: white ink on
black, the digit scaled into a 20×20 box, padded to 28×28 and placed by its center of mass. ``predict``,
``serve`` and the browser page all go through :func:`prepare`, so the three see the same 28×28 input.
A phone photo of a sheet needs more than a canvas: the paper's uneven light, tint, grain and shadows are
estimated and subtracted before the ink is thresholded (:func:`find_ink`), and a thin pen line is widened to
MNIST's thick stroke, which the model has only ever seen.

Output is float32 in [0, 1], shape ``(C, H, W)``; the model normalizes it itself (its train statistics are
in the checkpoint), so nothing here knows a dataset's mean or std.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image
from scipy.ndimage import (
    binary_erosion,
    center_of_mass,  # (row, column) of the intensity-weighted mean, in pixel indices
    find_objects,
    gaussian_filter,
    grey_closing,
    grey_dilation,
    grey_opening,
    label,
    maximum_filter,
    median_filter,
)

from mnistlab.core.errors import DataError
from mnistlab.core.fields import check

# decoding is shared with the training data: served pixels are the training pixels
from mnistlab.data.decode import DEFAULT_MAX_DECODED_MB as DEFAULT_MAX_DECODED_MB
from mnistlab.data.decode import DEFAULT_MAX_PIXELS as DEFAULT_MAX_PIXELS
from mnistlab.data.decode import IMAGE_SUFFIXES as IMAGE_SUFFIXES
from mnistlab.data.decode import BadImageError as BadImageError
from mnistlab.data.decode import ImageTooLargeError as ImageTooLargeError
from mnistlab.data.decode import open_image as open_image


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


WORK_SIDE = 800  # photos are searched for ink at this longest side: enough for a 20 px digit, fast at 12 Mpx
BACKGROUND_SIDE = 200  # the paper (lighting, shadows) is estimated at this longest side: it is smooth
MNIST_STROKE = 2.6 / 20  # MNIST's stroke width (2 × area / outline at half intensity) over its 20 px box
SPECK = 0.03  # an ink blob under this fraction of the largest is dust or noise, wherever it is


def _shrink(gray: np.ndarray, side: int) -> np.ndarray:
    """Area-averaged downscale to at most ``side`` px on the longer side (thin strokes keep their ink mass)."""
    scale = side / max(gray.shape)
    if scale >= 1:
        return gray
    height, width = (max(1, round(n * scale)) for n in gray.shape)
    return np.asarray(Image.fromarray(gray).resize((width, height), Image.Resampling.BOX), dtype=np.float32)


def _grow(small: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    return np.asarray(Image.fromarray(small).resize(shape[::-1], Image.Resampling.BILINEAR), dtype=np.float32)


def otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut between two levels that maximizes the spread between their means."""
    top = float(values.max())
    if top <= 0:
        return 0.0
    counts = np.bincount(np.minimum((values.ravel() * (bins / top)).astype(np.int32), bins - 1), minlength=bins)
    edges = np.linspace(0.0, top, bins + 1)
    centers = (edges[:-1] + edges[1:]) / 2
    below = np.cumsum(counts)[:-1].astype(np.float64)
    above = counts.sum() - below
    mass = np.cumsum(counts * centers)[:-1]
    spread = (
        below
        * above
        * (mass / np.maximum(below, 1) - (mass[-1] + counts[-1] * centers[-1] - mass) / np.maximum(above, 1)) ** 2
    )
    return float(edges[1 + int(np.argmax(spread))])


def stroke_width(mask: np.ndarray) -> float:
    """Mean stroke width in px: twice the area over the outline (a stroke of width w and length L has area wL
    and an outline of 2L pixels)."""
    outline = int((mask & ~binary_erosion(mask)).sum())
    return 2 * int(mask.sum()) / outline if outline else 0.0


def _ink_residual(work: np.ndarray) -> tuple[np.ndarray, bool]:
    """How far each pixel is from the paper towards the ink (>= 0 on ink), and whether the paper is uneven.

    Paper that is even all along the border (a drawing, a scan, a clean canvas: nine border pixels in ten
    within 0.03 of their median) is one level, that median. Otherwise (lighting, a shadow, a tint that varies)
    the paper is what a grey closing leaves of the image: a maximum then a minimum over windows of a thirtieth
    of the image erase every dark stroke narrower than that and keep larger shapes, the edges of a shadow
    included (an opening does the same for light strokes). The ink's polarity is the side on which the image
    departs most from a local median of the paper (which, unlike the closing and the opening, does not take
    the paper inside a loop for a light stroke), so a dim photo or a shadowed border does not flip it.
    """
    border = np.concatenate([work[0], work[-1], work[:, 0], work[:, -1]])
    level = float(np.median(border))
    uneven = float(np.percentile(np.abs(border - level), 90)) > 0.03
    if uneven:
        coarse = _shrink(work, 64)
        median = median_filter(coarse, max(3, round(max(coarse.shape) / 10)) | 1, mode="nearest")
        departure = work - _grow(median, work.shape)
    else:
        departure = work - level
    cut = 4 * _spread(departure)  # departures beyond the paper's noise
    dark_ink = np.clip(-departure - cut, 0, None).sum() > np.clip(departure - cut, 0, None).sum()
    if not uneven:
        return (-departure if dark_ink else departure), uneven
    small = _shrink(work, BACKGROUND_SIDE)
    window = max(3, round(max(small.shape) / 30)) | 1
    # padded first: a closing is exact on monotone edges, the border's included, only when the filters see
    # beyond the image (scipy extends each filter's output, not its input)
    padded = np.pad(small, window, mode="edge")
    inner = (slice(window, -window), slice(window, -window))
    if dark_ink:  # relative to the paper's brightness: ink in a shadow is as dark, relatively, as in the light
        paper = np.maximum(_grow(grey_closing(padded, window)[inner], work.shape), 0.05)
        return (paper - work) / paper, uneven
    return work - _grow(grey_opening(padded, window)[inner], work.shape), uneven


class Ink(NamedTuple):
    """The digit found in an image: white ink on black cropped to it, its stroke width in px of that crop,
    and where the crop lies in the image, (left, top, right, bottom) in the image's pixels."""

    image: np.ndarray
    stroke: float
    box: tuple[int, int, int, int]


def find_ink(gray: np.ndarray) -> Ink:
    """The digit as white ink on black, cropped to its strokes (big photos are searched at ``WORK_SIDE`` px).

    The paper's level is subtracted (see ``_ink_residual``), Otsu's threshold splits ink from paper, and only
    the digit's blobs are kept: specks (dust, noise, a stray dot far from the digit), the paper's blotches (no
    pixel above a second Otsu cut) and, on uneven paper, what is left of a shadow's edge (a blob reaching the
    image's border across most of it) are dropped. The crop box is MNIST's: every pixel above 20 % of the
    ink's level connected to those blobs. Ink is stretched so that its level is 1 (the peak on clean paper,
    the 95th percentile of the strokes on noisy paper, whose noise is subtracted first).
    """
    work = _shrink(gray.astype(np.float32), WORK_SIDE)
    residual, uneven = _ink_residual(work)
    if float(residual.max()) < 0.1:
        raise BadImageError("no digit found: the image is blank (no ink differs from the background)")
    noise = _spread(residual)
    if noise > 0.01:  # paper grain, sensor or JPEG noise: judge ink on a lightly smoothed image, above 3 sigma
        residual = gaussian_filter(residual, 1.0, truncate=2.0)
        noise = _spread(residual)
    else:
        noise = 0.0  # a drawing or a clean scan: every bit of ink counts
    ink = np.clip(residual - 3 * noise, 0.0, None)
    strokes = ink > max(otsu(ink), 0.05 * float(ink.max()))
    labels, count = label(strokes, np.ones((3, 3), bool))
    sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    boxes = find_objects(labels)
    height, width = work.shape
    # on noisy paper a blob must also hold ink above a second Otsu cut, among the pixels above the first: the
    # paper's darker blotches pass the first, a pen's stroke passes both
    seeded = set(np.unique(labels[ink > otsu(ink[strokes])]).tolist()) if noise else set(range(1, count + 1))
    candidates = []
    for index, (rows, cols) in enumerate(boxes, start=1):
        touches = rows.start == 0 or cols.start == 0 or rows.stop == height or cols.stop == width
        long = (rows.stop - rows.start) > 0.6 * height or (cols.stop - cols.start) > 0.6 * width
        if index in seeded and not (uneven and touches and long and count > 1):
            candidates.append(index)
    if not candidates:
        raise BadImageError("no digit found: the image is blank (no ink differs from the background)")
    largest = max(candidates, key=lambda i: sizes[i - 1])
    top, left, bottom, right = _box(boxes[largest - 1])
    kept = {largest}
    growing = True
    while growing:  # pieces of a broken stroke near the digit join it; specks far from it do not
        growing = False
        gap_allowed = 0.3 * max(bottom - top, right - left)
        for index in candidates:
            if index in kept or sizes[index - 1] < SPECK * sizes[largest - 1]:
                continue
            t, lf, b, r = _box(boxes[index - 1])
            gap = max(top - b, t - bottom, left - r, lf - right, 0)
            if gap <= gap_allowed or sizes[index - 1] >= 0.3 * sizes[largest - 1]:
                kept.add(index)
                top, left, bottom, right = min(top, t), min(left, lf), max(bottom, b), max(right, r)
                growing = True
    kept_ids = np.array(sorted(kept))
    width_px = stroke_width(np.isin(labels[top:bottom, left:right], kept_ids))
    reach = 2 * max(1, round(width_px)) + 1
    # MNIST's crop: the faint edge of the strokes (above 20 % of the level) belongs to the digit; on noisy
    # paper only within a stroke's width of them, or the paper's grain would join it all up (and only that
    # neighbourhood need be looked at)
    if noise:
        top, left = max(0, top - reach), max(0, left - reach)
        bottom, right = min(height, bottom + reach), min(width, right + reach)
    else:
        top, left, bottom, right = 0, 0, height, width
    ink, labels = ink[top:bottom, left:right], labels[top:bottom, left:right]
    digit = np.isin(labels, kept_ids)
    level = float(np.percentile(ink[digit], 95) if noise else ink[digit].max())  # no noise: the peak, as MNIST
    if level + 3 * noise < 0.1 or level < 3 * noise:  # faint, or the "strokes" are the paper's own grain
        raise BadImageError("no digit found: the image is blank (no ink differs from the background)")
    faint = ink > 0.2 * level
    if noise:
        faint &= maximum_filter(digit, reach)
    pieces, _ = label(faint, np.ones((3, 3), bool))
    support = np.isin(pieces, np.unique(pieces[digit & faint])) & faint
    rows, cols = np.nonzero(support)
    crop = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
    near = maximum_filter(support[crop], reach)  # the antialiased rim, not specks
    scale_y, scale_x = gray.shape[0] / height, gray.shape[1] / width
    box = (
        round((left + crop[1].start) * scale_x),
        round((top + crop[0].start) * scale_y),
        round((left + crop[1].stop) * scale_x),
        round((top + crop[0].stop) * scale_y),
    )
    return Ink(np.clip(ink[crop] / level, 0.0, 1.0) * near, width_px, box)


def _spread(values: np.ndarray) -> float:
    """The paper's noise: a robust standard deviation (1.4826 × the median absolute deviation), on a sample."""
    sample = values[::3, ::3]
    return 1.4826 * float(np.median(np.abs(sample - np.median(sample))))


def _box(box: tuple[slice, slice]) -> tuple[int, int, int, int]:
    return box[0].start, box[1].start, box[0].stop, box[1].stop


def _resize(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Antialiased resize of a float image (PIL's mode F keeps the precision of the ink)."""
    resized = Image.fromarray(array.astype(np.float32)).resize((width, height), Image.Resampling.LANCZOS)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def _thicken(ink: np.ndarray, height: int, width: int, stroke: float) -> np.ndarray:
    """A pen's thin line as MNIST's thick, soft stroke: the crop at 4× the final size, its strokes widened by
    a disk to MNIST's width there, then the usual antialiased resize."""
    big_h, big_w = 4 * height, 4 * width
    scale = big_h / ink.shape[0]
    big = np.asarray(Image.fromarray(ink).resize((big_w, big_h), Image.Resampling.BOX), dtype=np.float32)
    target = MNIST_STROKE * 4 * max(height, width)
    radius = max(0, round((target - stroke * scale) / 2))
    if radius:
        yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
        big = grey_dilation(big, footprint=(yy**2 + xx**2) <= radius**2 + radius)
    if big.max() <= 0:
        return np.zeros((height, width), np.float32)  # vanished: the caller reports it
    strong = big[big > 0.3 * float(big.max())]
    big = np.clip(big / float(np.percentile(strong, 90)), 0.0, 1.0)  # the ink thinned by the downscale, back to 1
    return _resize(big, height, width)


def mnist_style(gray: np.ndarray, size: int = 28, box: int = 20, by_mass: bool = True) -> np.ndarray:
    """MNIST's own recipe: crop to the ink, longest side to ``box`` px (aspect kept), pad to ``size``×``size``
    with the center of mass at the center (``by_mass=False``: the bounding box at the center). Strokes that
    would come out much thinner than MNIST's (a pen on a photographed sheet) are widened first."""
    ink, stroke, _ = find_ink(gray)
    scale = box / max(ink.shape)
    height, width = (max(1, round(n * scale)) for n in ink.shape)
    if by_mass and stroke * scale < 0.6 * MNIST_STROKE * box:  # digits only: MNIST's stroke is the target
        digit = _thicken(ink, height, width, stroke)
    else:
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
    """Natural images (CIFAR-10, Tiny-ImageNet, the user's own): shorter side to the model's size, then a
    center crop. A square model's input is made by the very code that decoded its training images
    (``mnistlab.data.decode.square``: 16-bit scaled, alpha dropped, palettes expanded), so it sees the same
    pixels a training image of the same file gave."""
    from mnistlab.data.decode import square, to_8bit

    if height == width:
        return square(image, height, channels).astype(np.float32) / 255
    image = to_8bit(image).convert("RGB" if channels == 3 else "L")
    scale = max(height / image.height, width / image.width)
    size = (max(width, round(image.width * scale)), max(height, round(image.height * scale)))
    image = image.resize(size, Image.Resampling.BILINEAR)
    left, top = (size[0] - width) // 2, (size[1] - height) // 2
    array = np.asarray(image.crop((left, top, left + width, top + height)), dtype=np.float32) / 255
    return array.reshape(height, width, channels).transpose(2, 0, 1)


# gray data sets of light objects cut out on black (MNIST's digits, Fashion-MNIST's clothes, canvases of MNIST
# digits): a real image must be cut out so too. Every other data set (colour ones, and the user's own images:
# folder, csv, hf, gray or not) was trained on whole images resized, so a real image is resized alike.
CENTERED_STYLES = {"mnist": "mnist", "fashion_mnist": "fit", "mnist_detection": "fit"}


def resolve_style(style: str, dataset: str | None, input_shape: tuple[int, int, int]) -> str:
    """``auto``: MNIST's recipe for digits, ``fit`` (bounding box centered, no 20 px box) for Fashion-MNIST and
    digit canvases, ``resize`` for every other data set (colour images, the user's own images even when gray).
    A checkpoint that names no data set is an MNIST one if gray."""
    if check("preprocess", style) != "auto":
        return style
    if input_shape[0] == 3:
        return "resize"
    if dataset is None:
        return "mnist"
    return CENTERED_STYLES.get(dataset, "resize")


def prepare(image: Image.Image, input_shape: tuple[int, int, int], style: str = "mnist") -> np.ndarray:
    """The model's input for one image: float32 ``(C, H, W)`` in [0, 1] (``style`` as from ``resolve_style``)."""
    channels, height, width = input_shape
    try:
        if style == "resize":
            return resize_crop(image, channels, height, width)
        # a big photo is averaged down in PIL first, ten times cheaper than in float (ink is found at WORK_SIDE)
        if image.mode in ("L", "RGB") and max(image.size) >= 2 * WORK_SIDE:
            image = image.reduce(max(image.size) // WORK_SIDE)
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
        elif path.exists():  # a device or FIFO: reading it would never end, or block
            raise DataError(f"{item} is not a regular file (a device or FIFO): pass image files or folders")
        else:
            raise DataError(f"{item} does not exist: pass image files or folders, e.g. inputs=[a.png,digits/]")
    return files
