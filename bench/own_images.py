"""A folder of the user's own JPEGs: mnistlab's folder loader against torchvision's ImageFolder + DataLoader.

N (``--n``, default 4000) 64×64 RGB JPEGs in 10 class folders are written to a temp dir (seeded: the same files
every run). The same model (mnistlab's registered ``linear``, softmax regression at 3×64×64, 10 classes;
``--model mlp`` or ``--model cnn`` for more compute a step), the same optimizer (SGD, momentum 0.9), the same
batch size (64) and the same training loop are fed by
- (a) mnistlab: ``data=folder``'s DataModule. Its first setup decodes every file once, in threads, into a uint8
  cache (the first-run decode rate is printed); each epoch then slices batches of that uint8 tensor and turns
  them into floats on the device (``on_after_batch_transfer``, as ``mnistlab-train`` does);
- (b) torchvision: ``ImageFolder`` with ``Resize(64)`` + ``ToTensor()``, ``DataLoader(num_workers=2,
  persistent_workers=True, shuffle=True)``: every epoch decodes every file again.

Both run in a plain loop, not through Lightning: Lightning's per-step cost is the same whichever loader feeds
it (``cnn_throughput`` measures mnistlab's Lightning path), so a plain loop isolates what differs, the data path.
Epochs alternate between (a) and (b), a-b then b-a, so that a slow spell of this shared machine hits both;
epoch 1 of (a) includes building the cache, epochs 2..k are compared. Then one epoch of each loader with no
model (the data path alone), and a second setup of (a) on the same folder (the cache is found). On a GPU
(``--device``; cuda when there is one) (a)'s split is moved there once, as ``data.on_device=auto`` does, and
(b) pins its batches.

Target: (a) >= 3x faster per epoch after the first. What is compared is the data path, so the default model
costs less a step than decoding the JPEGs does; the more a model computes, the more its own time hides either
loader: on this CPU the MLP (one hidden layer of 128) still shows most of the difference, and the CNN's few ms
an image at 64×64 dwarf both (on a GPU they do not). The data-path-alone ratio is printed to tell the two apart.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from common import check, row
from PIL import Image
from torch import nn

CLASSES = 10
SIZE = 64
BATCH = 64


def write_images(root: Path, n: int, seed: int = 0) -> None:
    """``n`` JPEGs, 64×64 RGB, in ``root/train/<class>/``: noise plus a bright square whose place is the class;
    and one per class in ``root/val/`` and ``root/test/``, so that mnistlab's train split is all ``n`` (it
    carves nothing) and ImageFolder reads the same ``root/train``."""
    rng = np.random.default_rng(seed)
    for split, count in (("train", n), ("val", CLASSES), ("test", CLASSES)):
        for label in range(CLASSES):
            (root / split / f"class_{label}").mkdir(parents=True)
        for i in range(count):
            label = i % CLASSES
            pixels = rng.integers(0, 120, size=(SIZE, SIZE, 3), dtype=np.uint8)
            row_, col = divmod(label, 5)
            pixels[8 + row_ * 28 : 28 + row_ * 28, 4 + col * 12 : 16 + col * 12] = 230
            Image.fromarray(pixels).save(root / split / f"class_{label}" / f"{i:05d}.jpg", quality=90)


class Normalized(nn.Module):
    """The network behind a fixed normalization, as mnistlab's models normalize inside (same for both sides)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net((images - 0.5) / 0.25)


def make_model(name: str, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
    from mnistlab.models.registry import create_model

    torch.manual_seed(0)
    model = Normalized(create_model({"name": name}, (3, SIZE, SIZE), CLASSES)).to(device)
    return model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, batches, device: torch.device) -> tuple[float, int]:
    """Seconds for one epoch over ``batches`` (float images in [0, 1], labels), and the images seen."""
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    seen = 0
    start = time.perf_counter()
    for images, labels in batches:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()
        optimizer.step()
        seen += len(labels)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, seen


def data_epoch(batches, device: torch.device) -> float:
    """Seconds to go through one epoch of batches with no model: the data path alone."""
    start = time.perf_counter()
    for images, _ in batches:
        float(images.to(device, non_blocking=True)[0, 0, 0, 0])  # each batch where the model would read it
    return time.perf_counter() - start


def mnistlab_batches(dm, device: torch.device):
    """The DataModule's train loader, each batch made float on the device as Lightning's hook does. On a GPU
    the split is moved there once, as ``data.on_device=auto`` does under a Trainer (here there is none)."""
    from mnistlab.data.loader import TensorBatchLoader

    if device.type == "cpu":
        loader = dm.train_dataloader()
    else:
        images, labels = dm.splits["train"]
        if images.device != device:
            images, labels = dm.splits["train"] = (images.to(device), labels.to(device))
        loader = TensorBatchLoader(images, labels, BATCH, shuffle=True, seed=dm.seed)
    for epoch_batch in loader:
        yield dm.on_after_batch_transfer(epoch_batch, 0)


def folder_module(root: Path, cache: Path):
    from mnistlab.data.folder import FolderDataModule  # imported (with Lightning) before any timing: see main

    dm = FolderDataModule(
        root=str(root), data_dir=str(cache), image_size=SIZE, channels=3, batch_size=BATCH, eval_batch_size=256
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def torchvision_loader(root: Path, device: torch.device):
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms

    transform = transforms.Compose([transforms.Resize(SIZE), transforms.ToTensor()])
    dataset = datasets.ImageFolder(str(root / "train"), transform)
    pin = device.type == "cuda"
    return DataLoader(dataset, batch_size=BATCH, shuffle=True, num_workers=2, persistent_workers=True, pin_memory=pin)


def main(n: int = 4000, epochs: int = 3, device_name: str = "auto", model: str = "linear") -> bool:
    import mnistlab.data.folder  # noqa: F401  (Lightning's import is no part of the decode time)

    device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if device_name == "auto" else device_name)
    work = Path(tempfile.mkdtemp(prefix="mnistlab-own-images-"))
    try:
        root, cache = work / "images", work / "cache"
        start = time.perf_counter()
        write_images(root, n)
        print(
            f"{n} JPEGs {SIZE}×{SIZE} RGB in {CLASSES} classes written in {time.perf_counter() - start:.1f} s; "
            f"{model} at 3×{SIZE}×{SIZE}, SGD momentum, batch {BATCH}, torch {torch.__version__}, "
            f"{torch.get_num_threads()} threads, {device}"
        )
        ours_model, ours_opt = make_model(model, device)
        theirs_model, theirs_opt = make_model(model, device)
        ours, theirs = [], []
        loader = torchvision_loader(root, device)
        dm = None
        for epoch in range(1, epochs + 1):  # alternated, a-b then b-a: a trend in the machine's load hits both
            if dm is None:
                start = time.perf_counter()
                dm = folder_module(root, cache)
                decode = time.perf_counter() - start
                row("(a) first run: decode every file into the cache", (n + 2 * CLASSES) / decode, "img/s")
                row("(a) first run: cache build", decode, "s")
            for side in ("a", "b") if epoch % 2 else ("b", "a"):
                if side == "a":
                    seconds, seen = train_epoch(ours_model, ours_opt, mnistlab_batches(dm, device), device)
                    ours.append(seconds + (decode if epoch == 1 else 0.0))
                else:
                    seconds, seen = train_epoch(theirs_model, theirs_opt, loader, device)
                    theirs.append(seconds)
                assert seen == n, (side, seen, n)
            row(f"epoch {epoch}: (a) mnistlab folder loader{' + cache build' if epoch == 1 else ''}", ours[-1], "s")
            row(f"epoch {epoch}: (b) torchvision ImageFolder, 2 workers", theirs[-1], "s")
        data_ours, data_theirs = [], []
        for _ in range(2):  # the data path alone, no model: what the loaders cost by themselves
            data_ours.append(data_epoch(mnistlab_batches(dm, device), device))
            data_theirs.append(data_epoch(loader, device))
        row("(a) data path alone, one epoch (best of 2)", min(data_ours), "s")
        row("(b) data path alone, one epoch (best of 2)", min(data_theirs), "s")
        row("b/a data path alone", min(data_theirs) / min(data_ours), "x")
        start = time.perf_counter()
        folder_module(root, cache)  # a second run of the same folder: the cache is read, nothing decoded
        row("(a) second run: cache found, loaded", time.perf_counter() - start, "s")
        later_ours, later_theirs = ours[1:] or ours, theirs[1:] or theirs
        mean_ours, mean_theirs = float(np.mean(later_ours)), float(np.mean(later_theirs))
        span = f"epochs 2..{epochs}" if epochs > 1 else "epoch 1"
        row(f"(a) mean epoch, {span}", mean_ours, "s")
        row(f"(b) mean epoch, {span}", mean_theirs, "s")
        row(f"(a) {span}", n / mean_ours, "img/s")
        row(f"(b) {span}", n / mean_theirs, "img/s")
        row(f"b/a epoch time, {span}", mean_theirs / mean_ours, "x")
        row("b/a epoch time, epoch 1 (a builds its cache)", theirs[0] / ours[0], "x")
        return check(f"mnistlab >= 3x faster per epoch after the first ({span})", mean_theirs / mean_ours >= 3)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="number of images (default 4000)")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each side (default 3)")
    parser.add_argument("--device", default="auto", help="cpu, cuda (default: cuda when there is one)")
    parser.add_argument("--model", default="linear", help="a registered model name (default linear)")
    args = parser.parse_args()
    raise SystemExit(0 if main(args.n, args.epochs, args.device, args.model) else 1)
