"""Why MNIST-style preprocessing: accuracy on digits "drawn" on a canvas, three ways, one model.

1000 MNIST test digits are drawn as a user would on the serve page: black ink on a white 280×280 canvas, at a
random size (90–280 px) and position. The same checkpoint (`experiment=fast`, or $MNISTLAB_SERVE_CKPT)
classifies them
- as the original 28×28 test images (the ceiling),
- after the reference scripts' preprocessing (invert, resize the whole canvas to 28×28) — the baseline,
- after `mnistlab.serving.preprocess` (invert, crop to the ink, 20 px box, center of mass).

Target: mnistlab's preprocessing within 1.5 points of the ceiling.
"""

from __future__ import annotations

import numpy as np
from common import check, data_dir, fast_checkpoint, row
from PIL import Image

COUNT = 1000
CANVAS = 280


def canvases(images: np.ndarray, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    drawn = []
    for image in images:
        size = int(rng.integers(90, CANVAS + 1))
        top, left = (int(rng.integers(0, CANVAS - size + 1)) for _ in range(2))
        canvas = Image.new("L", (CANVAS, CANVAS), 255)
        canvas.paste(Image.fromarray(255 - image).resize((size, size), Image.Resampling.BICUBIC), (left, top))
        drawn.append(canvas)
    return drawn


def reference_preprocess(canvas: Image.Image) -> np.ndarray:
    """A typical Streamlit front end: invert, resize the whole drawing to 28×28."""
    inverted = 255 - np.asarray(canvas.resize((28, 28), Image.Resampling.BILINEAR), dtype=np.float32)
    return (inverted / 255)[None]


def main() -> bool:
    from mnistlab.data.mnist import load_split
    from mnistlab.serving.inference import Predictor

    ckpt_path = fast_checkpoint()
    predictor = Predictor(str(ckpt_path))
    images, labels = load_split(data_dir() / "MNIST" / "raw", "test")
    images, labels = images[:COUNT, 0].numpy(), labels[:COUNT].numpy()
    drawn = canvases(images)

    def accuracy(arrays: list[np.ndarray]) -> float:
        predicted = [p.index for p in predictor.predict_arrays(arrays)]
        return 100 * float(np.mean(np.array(predicted) == labels))

    ceiling = accuracy([(image.astype(np.float32) / 255)[None] for image in images])
    naive = accuracy([reference_preprocess(canvas) for canvas in drawn])
    ours = accuracy([predictor.prepare(canvas) for canvas in drawn])
    print(f"  {COUNT} MNIST test digits drawn black-on-white on a {CANVAS}×{CANVAS} canvas, random size and place")
    row("original 28×28 test images (ceiling)", ceiling, "%")
    row("reference scripts' preprocessing: invert + resize to 28×28 (baseline)", naive, "%")
    row("mnistlab preprocessing (MNIST-style)", ours, "%")
    row("  errors removed vs the baseline", (ours - naive) / max(1e-9, 100 - naive) * 100, "%")
    return check("mnistlab within 1.5 points of the ceiling", ours >= ceiling - 1.5)


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
