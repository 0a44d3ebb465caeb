"""MNIST-style preprocessing shared by predict and serve: inversion, crop, 20 px box, center of mass."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import REAL_DATA
from helpers.images import png_bytes, png_claiming, seven
from PIL import Image, ImageDraw, ImageOps
from scipy.ndimage import binary_erosion, gaussian_filter

from mnistlab.serving.preprocess import (
    BadImageError,
    ImageTooLargeError,
    center_of_mass,
    find_ink,
    image_files,
    open_image,
    prepare,
    resolve_style,
)

MNIST = (1, 28, 28)


def test_center_of_mass_is_centered_and_the_digit_fits_20_pixels():
    array = prepare(seven(), MNIST, "mnist")[0]
    assert array.shape == (28, 28) and array.dtype == np.float32
    row, col = center_of_mass(array)
    assert abs(row - 13.5) <= 1 and abs(col - 13.5) <= 1  # the image's center
    assert abs(row - 14) <= 0.75 and abs(col - 14) <= 0.75  # MNIST's: pixel (14, 14)
    rows, cols = np.nonzero(array > 0.05)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (20, 21, 22)  # 20 px + resampling fringe
    assert array.min() == 0 and array.max() == pytest.approx(1, abs=0.02)
    assert np.all(array[:, :2] == 0) and np.all(array[:2] == 0)  # background stays black


def test_inversion_is_detected_both_ways():
    dark_on_light = prepare(seven(ink=0, paper=255), MNIST, "mnist")
    light_on_dark = prepare(seven(ink=255, paper=0), MNIST, "mnist")
    np.testing.assert_allclose(dark_on_light, light_on_dark, atol=1e-5)
    # a grey, low-contrast photo of paper (ink 60, paper 200) gives the same digit: background removed, ink stretched
    photo = prepare(seven(ink=60, paper=200), MNIST, "mnist")
    np.testing.assert_allclose(photo, dark_on_light, atol=0.02)


def test_transparent_canvas_and_colour_inputs_read_as_the_same_digit():
    reference = prepare(seven(), MNIST, "mnist")
    strokes = np.asarray(seven(ink=255, paper=0))  # alpha = where the ink is
    transparent = Image.fromarray(np.dstack([np.zeros_like(strokes)] * 3 + [strokes]), "RGBA")  # black ink, no paper
    np.testing.assert_allclose(prepare(transparent, MNIST, "mnist"), reference, atol=1e-5)
    blue_ink = Image.merge("RGB", [seven(ink=0), seven(ink=0), seven(ink=255)])
    assert np.corrcoef(prepare(blue_ink, MNIST, "mnist").ravel(), reference.ravel())[0, 1] > 0.99


def test_jpeg_and_bmp_decode_like_png():
    reference = prepare(open_image(png_bytes(seven())), MNIST, "mnist")
    np.testing.assert_allclose(prepare(open_image(png_bytes(seven(), "BMP")), MNIST, "mnist"), reference, atol=1e-6)
    jpeg = prepare(open_image(png_bytes(seven(), "JPEG")), MNIST, "mnist")
    assert np.abs(jpeg - reference).mean() < 0.01


@pytest.mark.skipif(not (REAL_DATA / "MNIST" / "raw").is_dir(), reason=f"no real MNIST in {REAL_DATA}")
def test_a_200px_black_on_white_mnist_digit_comes_back_as_the_original():
    """MNIST digits are already 20 px boxes centered by mass: preprocessing an enlarged, inverted copy must give
    back (nearly) the original 28×28 image."""
    from mnistlab.data.mnist import load_split

    images, _ = load_split(REAL_DATA / "MNIST" / "raw", "test")
    errors, correlations = [], []
    for original in images[:50, 0].numpy():
        big = Image.fromarray(255 - original).resize((200, 200), Image.Resampling.BICUBIC)
        prepared = prepare(open_image(png_bytes(big)), MNIST, "mnist")[0]
        errors.append(np.abs(prepared - original / 255).mean())
        correlations.append(np.corrcoef(prepared.ravel(), original.ravel())[0, 1])
    # measured: mean |error| 0.024, mean correlation 0.95 (a one-pixel shift would give ~0.75 and 0.06)
    assert np.mean(errors) < 0.035 and np.mean(correlations) > 0.9 and min(correlations) > 0.6


def test_styles_for_other_datasets():
    assert resolve_style("auto", "mnist", MNIST) == "mnist"
    assert resolve_style("auto", "fashion_mnist", MNIST) == "fit"
    assert resolve_style("auto", None, (3, 32, 32)) == "resize"
    fit = prepare(seven(), MNIST, "fit")[0]
    rows, cols = np.nonzero(fit > 0.05)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 >= 27  # fills the frame
    photo = Image.fromarray(np.random.default_rng(0).integers(0, 255, (90, 160, 3), dtype=np.uint8))
    rgb = prepare(photo, (3, 64, 64), "resize")
    assert rgb.shape == (3, 64, 64) and rgb.min() >= 0 and rgb.max() <= 1
    with pytest.raises(Exception, match="preprocess='nope' is not one of auto, mnist, fit, resize"):
        resolve_style("nope", "mnist", MNIST)


def pen_seven(size: tuple[int, int], offset: tuple[int, int], width: int = 4) -> tuple[np.ndarray, tuple]:
    """A 7 drawn with a thin pen (coverage in [0, 1]) and its box (left, top, right, bottom)."""
    strokes = Image.new("L", size, 0)
    draw = ImageDraw.Draw(strokes)
    x, y = offset
    draw.line([(x, y), (x + 110, y), (x + 40, y + 160)], fill=255, width=width, joint="curve")
    coverage = np.asarray(strokes, dtype=np.float32) / 255
    rows, cols = np.nonzero(coverage)
    return coverage, (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


def phone_photo(coverage: np.ndarray, band: tuple[int, int] = (150, 300), seed: int = 0) -> Image.Image:
    """Dark ink on tinted, grainy paper lit from the left (the right edge at 60 %), a diagonal shadow band
    (where ``band[0] < row - column < band[1]``) and a speck of dust far from the digit, saved as a JPEG: what
    a phone gives of a sheet."""
    rng = np.random.default_rng(seed)
    height, width = coverage.shape
    rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
    paper = 0.85 + 0.04 * gaussian_filter(rng.standard_normal((height, width)), 12) * 12
    paper += rng.normal(0, 0.03, (height, width))
    light = 1 - 0.4 * cols / width
    shadow = ((rows - cols) > band[0]) & ((rows - cols) < band[1])
    light *= 1 - 0.4 * gaussian_filter(shadow.astype(np.float32), 8)
    ink = coverage.copy()
    ink[380:387, 60:67] = 1  # a speck of dust
    gray = (paper * (1 - ink) + 0.15 * ink) * light
    rgb = np.clip(gray[..., None] * np.array([1.0, 0.9, 0.75]) * 255, 0, 255).astype(np.uint8)
    return open_image(png_bytes(Image.fromarray(rgb), "JPEG"))


def iou(a: tuple, b: tuple) -> float:
    inner = max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return inner / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inner)


def stroke_px(array: np.ndarray) -> float:
    """Mean stroke width of a 28×28 digit: twice the area over the outline, at half intensity."""
    mask = array > 0.5
    return 2 * mask.sum() / (mask & ~binary_erosion(mask)).sum()


@pytest.mark.parametrize("inverted", [False, True], ids=["dark-ink", "chalk-on-board"])
def test_a_photographed_digit_is_found_on_uneven_paper(inverted):
    """The crop box is the digit's, not the shadow's, the speck's or the whole sheet's; the thin pen comes out
    as MNIST's 2-3 px stroke, centred, and reads as the same 7 drawn on a clean canvas."""
    coverage, true_box = pen_seven((640, 480), (420, 60))
    image = phone_photo(coverage)
    if inverted:
        image = ImageOps.invert(image)
    found = find_ink(np.asarray(image.convert("L"), dtype=np.float32) / 255)
    assert iou(found.box, true_box) > 0.7, (found.box, true_box)
    array = prepare(image, MNIST, "mnist")[0]
    row, col = center_of_mass(array)
    assert abs(row - 14) <= 1 and abs(col - 14) <= 1
    rows, cols = np.nonzero(array > 0.2)
    assert max(rows.max() - rows.min(), cols.max() - cols.min()) + 1 in (19, 20, 21, 22)
    assert 1.8 <= stroke_px(array) <= 4  # MNIST's: 2.6
    clean = Image.fromarray((255 * (1 - coverage)).astype(np.uint8))  # the same pen on white paper
    reference = prepare(clean, MNIST, "mnist")[0]
    shifted = (np.roll(array, (dy, dx), (0, 1)) for dy in (-1, 0, 1) for dx in (-1, 0, 1))  # rounding of the mass
    assert max(np.corrcoef(a.ravel(), reference.ravel())[0, 1] for a in shifted) > 0.9


def test_a_shadow_through_the_digit_and_a_large_photo():
    """A shadow band crossing the digit itself, in a 12 Mpx photo (searched at a lower resolution)."""
    coverage, true_box = pen_seven((640, 480), (200, 150))
    image = phone_photo(coverage, band=(-100, 50), seed=1).resize((4000, 3000), Image.Resampling.BILINEAR)
    found = find_ink(np.asarray(image.convert("L"), dtype=np.float32) / 255)
    scaled = tuple(v * 4000 / 640 for v in true_box)
    assert iou(found.box, scaled) > 0.7, (found.box, scaled)
    array = prepare(image, MNIST, "mnist")[0]
    row, col = center_of_mass(array)
    assert abs(row - 14) <= 1 and abs(col - 14) <= 1 and 1.8 <= stroke_px(array) <= 4


def test_a_speck_is_ignored_on_a_clean_canvas():
    reference = prepare(seven(), MNIST, "mnist")
    dusty = seven()
    ImageDraw.Draw(dusty).ellipse([(20, 250), (26, 256)], fill=0)  # a 6 px dot far from the 7
    np.testing.assert_allclose(prepare(dusty, MNIST, "mnist"), reference, atol=1e-6)


def test_paper_without_ink_is_blank_even_when_grainy_and_shaded():
    empty = np.asarray(phone_photo(np.zeros((480, 640), np.float32)).convert("L")).copy()
    empty[380:387, 60:67] = empty[370:377, 60:67]  # no speck either: nothing but paper
    tinted = Image.new("RGB", (300, 200), (200, 190, 150))  # even paper, as before: blank
    for paper in (Image.fromarray(empty), tinted):
        with pytest.raises(BadImageError, match="no digit found"):
            prepare(paper, MNIST, "mnist")


@pytest.mark.parametrize(
    ("data", "error", "message"),
    [
        (b"", BadImageError, "the upload is empty"),
        (b"hello, I am text", BadImageError, "not a readable image"),
        (png_bytes(seven())[:400], BadImageError, "not a readable image"),  # truncated
        (png_claiming(50_000, 50_000), ImageTooLargeError, "too large to decode; at most 16,000,000 pixels"),
        (png_claiming(6000, 5000), ImageTooLargeError, "6000×5000 pixels; at most 16,000,000 pixels"),
        (png_bytes(Image.new("L", (64, 64), 255)), BadImageError, "the image is blank"),
    ],
    ids=["empty", "text", "truncated", "bomb", "huge", "blank"],
)
def test_bad_images_raise_one_clear_error(data, error, message):
    with pytest.raises(error, match=message) as caught:
        prepare(open_image(data), MNIST, "mnist")
    assert caught.value.status_code == (413 if error is ImageTooLargeError else 400)


def test_image_files_walks_folders_and_names_what_is_missing(tmp_path):
    (tmp_path / "sub").mkdir()
    for name in ("b.png", "a.JPG", "sub/c.bmp", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in image_files([str(tmp_path)])] == ["a.JPG", "b.png", "c.bmp"]
    with pytest.raises(Exception, match=r"missing\.png does not exist"):
        image_files([str(tmp_path / "missing.png")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(Exception, match="holds no image files"):
        image_files([str(tmp_path / "empty")])
