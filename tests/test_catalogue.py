"""A catalogue of bad inputs a user will type, through all seven commands: each ends with a non-zero status and
one line naming the key or file, never a traceback, and no file is lost or overwritten.

Every case is checked in this process (the command's own composition, checks and message, with training and
servers refused); one case per command is also run as a new process, for the exit status, stderr and no
traceback that every command shares (``mnistlab.core.errors.run_command``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from helpers import needs
from helpers.cli import assert_one_error_line, run_cli
from helpers.data import write_checkpoint
from helpers.inprocess import COMMANDS

GOOD_CKPT = "{ckpt}"  # replaced by a real checkpoint's path in the test
CASES: list[tuple[str, list[str], str]] = [
    # train: types and ranges of every group
    ("train", ["seed=abc"], "seed='abc' must be an integer"),
    ("train", ["seed=-1"], "seed=-1 must be an integer in [0, 4294967295]"),
    ("train", ["trainer.max_epochs=0"], "trainer.max_epochs=0 must be >= 1 (or -1 for no limit)"),
    ("train", ["trainer.max_epochs=abc"], "trainer.max_epochs='abc' must be an integer"),
    ("train", ["trainer.precision=8"], "trainer.precision=8 is not one of"),
    ("train", ["trainer.accelerator=quantum"], "trainer.accelerator='quantum' is not one of auto, cpu"),
    ("train", ["trainer.log_every_n_steps=0"], "trainer.log_every_n_steps=0 must be a positive integer"),
    ("train", ["trainer.limit_train_batches=-3"], "trainer.limit_train_batches=-3 must be a fraction"),
    ("train", ["trainer.gradient_clip_val=-1"], "trainer.gradient_clip_val=-1 must be >= 0"),
    ("train", ["trainer.deterministic=maybe"], "trainer.deterministic='maybe' must be true or false"),
    ("train", ["model.channels=abc"], "model.channels='abc' must be a list of positive integers"),
    ("train", ["model.channels=[0,64]"], "model.channels=[0, 64] must be a list of positive integers"),
    ("train", ["model.fc=[-1]"], "model.fc=[-1] must be a list of positive integers"),
    ("train", ["model=mlp", "model.hidden=7"], "model.hidden=7 must be a list of positive integers"),
    ("train", ["model.kernel_size=0"], "model.kernel_size=0 must be a positive integer"),
    ("train", ["model.name=resnet50"], "model.name='resnet50' is not a registered model; choose one of cnn"),
    ("train", ["+model.width=3"], "model.width is not a setting of model.name='cnn'; remove it"),
    ("train", ["model.norm=layer"], "model.norm='layer' is not one of none, batch"),
    ("train", ["model.dropout=1.5"], "model.dropout=1.5 must be in [0, 1)"),
    ("train", ["model.activation=swish"], "model.activation='swish' is not one of relu"),
    ("train", ["optim.name=lamb"], "optim.name='lamb' is not a registered optimizer; choose one of"),
    ("train", ["optim.lr=abc"], "optim.lr='abc' must be a number"),
    ("train", ["optim.lr=0"], "optim.lr=0 must be > 0"),
    ("train", ["optim.weight_decay=-1"], "optim.weight_decay=-1 must be >= 0"),
    ("train", ["optim=sgd", "optim.momentum=1.5"], "optim.momentum=1.5 must be in [0, 1)"),
    ("train", ["scheduler.name=cyclic"], "scheduler.name='cyclic' is not a registered scheduler"),
    ("train", ["scheduler=step", "scheduler.step_size=0"], "scheduler.step_size=0 must be a positive integer"),
    ("train", ["scheduler=step", "scheduler.gamma=-0.1"], "scheduler.gamma=-0.1 must be > 0"),
    ("train", ["scheduler.pct_start=1.5"], "scheduler.pct_start=1.5 must be in (0, 1)"),
    ("train", ["data.batch_size=0"], "data.batch_size=0 must be a positive integer"),
    ("train", ["data.batch_size=abc"], "data.batch_size='abc' must be an integer"),
    ("train", ["data.val_size=-5"], "data.val_size=-5 must be a number of samples >= 1 or a fraction in (0, 1)"),
    ("train", ["data.val_size=1.5"], "data.val_size=1.5 must be a number of samples >= 1 or a fraction in (0, 1)"),
    ("train", ["data.dataset=svhn"], "data.dataset='svhn' is not a registered dataset"),
    ("train", ["data.augment.rotation=abc"], "data.augment.rotation='abc' must be a number"),
    ("train", ["data.augment.translate=2"], "data.augment.translate=2 must be in [0, 1)"),
    ("train", ["+data.augment.blur=1"], "data.augment has unknown key(s) ['blur']"),
    ("train", ["data.num_folds=1"], "data.num_folds=1 and data.fold=0: need num_folds >= 2"),
    ("train", ["data.download=false", "data.data_dir=/nonexistent"], "MNIST not found in /nonexistent/MNIST/raw"),
    ("train", ["+data.colour=red"], "data.colour is not a setting of data.dataset='mnist'"),
    ("train", ["tune.lr_find=maybe"], "tune.lr_find='maybe' must be true or false"),
    ("train", ["tune.min_lr=0"], "tune.min_lr=0 must be > 0"),
    ("train", ["test=maybe"], "test='maybe' must be true or false"),
    ("train", ["speed.compile=yes"], "speed.compile='yes' must be true or false"),
    ("train", ["ckpt_path=/nonexistent.ckpt"], "ckpt_path=/nonexistent.ckpt does not exist"),
    ("train", ["ckpt_path={tmp}"], "is a folder; name the checkpoint file"),
    ("train", ["resume=/nonexistent"], "resume=/nonexistent is not a run dir"),
    ("train", ["resume={tmp}/broken"], "overrides.yaml must be a list of overrides"),
    # devices and FIFOs: refused before anything opens them (a FIFO's open blocks, /dev/zero never ends)
    ("train", ["resume=/dev/zero"], "resume=/dev/zero is not a folder (a file, device or FIFO)"),
    ("train", ["rerun={tmp}/fifo.ckpt"], "fifo.ckpt is not a folder (a file, device or FIFO)"),
    ("train", ["ckpt_path=/dev/zero"], "ckpt_path=/dev/zero is not a regular file"),
    ("evaluate", ["ckpt_path=/dev/zero"], "ckpt_path=/dev/zero is not a regular file"),
    ("evaluate", ["ckpt_path={tmp}/fifo.ckpt"], "fifo.ckpt is not a regular file"),
    ("predict", ["ckpt_path={tmp}/fifo.ckpt", "inputs={tmp}/digit.png"], "fifo.ckpt is not a regular file"),
    ("export", ["ckpt_path=/dev/zero"], "ckpt_path=/dev/zero is not a regular file"),
    ("predict", ["ckpt_path={ckpt}", "inputs={tmp}/fifo.ckpt"], "fifo.ckpt is not a regular file (a device or FIFO)"),
    # a config group's choice cannot be null
    ("train", ["callbacks=null"], "callbacks=null does not choose a preset of the callbacks group; choose one of"),
    ("train", ["~callbacks"], "~callbacks removed the callbacks group, which mnistlab-train needs; choose one of"),
    ("train", ["~trainer"], "~trainer removed the trainer group, which mnistlab-train needs"),
    ("evaluate", ["ckpt_path={ckpt}", "data.root=x"], "data.root is not a key of mnistlab-evaluate's config yet; set"),
    ("evaluate", ["ckpt_path={ckpt}", "trainer=null"], "trainer=null does not choose a preset of the trainer group"),
    ("train", ["model=resnet50"], "model='resnet50' is not a preset; did you mean model=resnet? choose one of cnn"),
    # Hydra's own composition errors (run_hydra_command); more of them in-process below
    ("train", ["trainer.limit_train_batchs=5"], "did you mean trainer.limit_train_batches?"),
    # your own images
    ("train", ["data=folder", "data.root=/nonexistent"], "data.root=/nonexistent is not a folder"),
    ("train", ["data=folder", "data.root={tmp}/one_class"], "holds 1 class with images (cat); a classifier needs"),
    ("train", ["data=csv", "data.csv={tmp}/pictures.csv"], "has no label column (its columns: file, kind)"),
    ("train", ["data=folder", "data.root={tmp}", "data.image_size=0"], "data.image_size=0 must be an integer in"),
    ("train", ["data=folder", "data.root={tmp}", "data.channels=2"], "data.channels=2 is not one of 1, 3"),
    # evaluate
    ("evaluate", [], "ckpt_path is required"),
    ("evaluate", ["ckpt_path=/nonexistent.ckpt"], "ckpt_path=/nonexistent.ckpt does not exist"),
    ("evaluate", ["ckpt_path={tmp}/garbage.ckpt"], "is not a readable mnistlab checkpoint"),
    ("evaluate", [f"ckpt_path={GOOD_CKPT}", "trainer.precision=7"], "trainer.precision=7 is not one of"),
    ("evaluate", [f"ckpt_path={GOOD_CKPT}", "optim=sgd"], "mnistlab-evaluate has no optim group; its groups: paths"),
    # evaluate, predict: stored data settings pass the command line's declarations
    ("evaluate", ["ckpt_path={tmp}/folds.ckpt"], "stores an invalid data setting: data.num_folds=1000000000 must be"),
    ("evaluate", ["ckpt_path={tmp}/canvases.ckpt"], "data setting: data.num_canvases.train=1000000000 must be"),
    ("evaluate", ["ckpt_path={tmp}/seed_text.ckpt"], "data setting: data.permutation_seed='abc' must be an integer"),
    ("evaluate", ["ckpt_path={tmp}/seed_huge.ckpt"], "data.permutation_seed=1208925819614629174706176 must be an"),
    ("evaluate", ["ckpt_path={tmp}/val_text.ckpt"], "stores an invalid data setting: data.val_size='5000' must be"),
    ("evaluate", ["ckpt_path={tmp}/device.ckpt"], "data.on_device='cuda:7' must be auto, true or false"),
    ("predict", ["ckpt_path={tmp}/seed_huge.ckpt", "inputs={tmp}/digit.png"], "data.permutation_seed=120892581961"),
    (
        "evaluate",
        [f"ckpt_path={GOOD_CKPT}", "trainer=gpux"],
        "trainer='gpux' is not a preset; did you mean trainer=gpu?",
    ),
    # predict
    ("predict", ["inputs={tmp}/digit.png"], "ckpt_path is required"),
    ("predict", [f"ckpt_path={GOOD_CKPT}"], "inputs is required"),
    ("predict", [f"ckpt_path={GOOD_CKPT}", "inputs={tmp}", "output=xml"], "output='xml' is not one of text, json"),
    ("predict", [f"ckpt_path={GOOD_CKPT}", "inputs={tmp}", "backend=tensorflow"], "backend='tensorflow' is not one"),
    ("predict", [f"ckpt_path={GOOD_CKPT}", "inputs={tmp}", "batch_size=0"], "batch_size=0 must be a positive integer"),
    ("predict", [f"ckpt_path={GOOD_CKPT}", "inputs={tmp}", "preprocess=sharpen"], "preprocess='sharpen' is not one"),
    ("predict", [f"ckpt_path={GOOD_CKPT}", "inputs=/nonexistent.png"], "/nonexistent.png does not exist"),
    ("predict", [f"ckpt_path={GOOD_CKPT}", "inputs={tmp}", "max_decoded_mb=0"], "max_decoded_mb=0 must be > 0"),
    (
        "predict",
        ["backend=onnx", "onnx_path=/nonexistent.onnx", "inputs={tmp}"],
        "onnx_path=/nonexistent.onnx does not",
    ),
    # serve
    ("serve", [f"ckpt_path={GOOD_CKPT}", "port=abc"], "port='abc' must be an integer"),
    ("serve", [f"ckpt_path={GOOD_CKPT}", "port=70000"], "port=70000 must be an integer in [0, 65535]"),
    ("serve", [f"ckpt_path={GOOD_CKPT}", "workers=0"], "workers=0 must be a positive integer"),
    ("serve", [f"ckpt_path={GOOD_CKPT}", "log_level=loud"], "log_level='loud' is not one of"),
    ("serve", [f"ckpt_path={GOOD_CKPT}", "max_upload_mb=0"], "max_upload_mb=0 must be > 0"),
    ("serve", [f"ckpt_path={GOOD_CKPT}", "header_timeout_s=0"], "header_timeout_s=0 must be in (0, 3600] seconds"),
    ("serve", [f"ckpt_path={GOOD_CKPT}", "max_connections_per_client=0"], "max_connections_per_client=0 must be a"),
    ("serve", [], "ckpt_path is required"),
    # export
    ("export", [f"ckpt_path={GOOD_CKPT}", "format=tflite"], "format='tflite' is not one of onnx, torchscript"),
    ("export", [f"ckpt_path={GOOD_CKPT}", "tolerance=abc"], "tolerance='abc' must be a number"),
    ("export", [f"ckpt_path={GOOD_CKPT}", "output={tmp}"], "is a folder; name the file to write in it"),
    ("export", [f"ckpt_path={GOOD_CKPT}", f"output={GOOD_CKPT}"], "is the checkpoint itself"),
    ("export", [], "ckpt_path is required"),
    # scratch
    ("scratch", ["scratch.model=svm"], "scratch.model='svm' is not one of softmax, mlp"),
    ("scratch", ["scratch.lr=0"], "scratch.lr=0 must be > 0"),
    ("scratch", ["scratch.epochs=abc"], "scratch.epochs='abc' must be an integer"),
    ("scratch", ["data.batch_size=0"], "data.batch_size=0 must be a positive integer"),
    # report
    ("report", ["/nonexistent"], "/nonexistent is not a multirun dir"),
    ("report", ["{tmp}/garbage.ckpt"], "garbage.ckpt is not a multirun dir"),
]

BAD_STORED_DATA = {  # checkpoints whose stored data settings no command line would pass
    "folds": {"num_folds": 10**9},
    "canvases": {"dataset": "mnist_detection", "num_canvases": {"train": 10**9, "val": 10, "test": 10}},
    "seed_text": {"permute_pixels": True, "permutation_seed": "abc"},
    "seed_huge": {"permute_pixels": True, "permutation_seed": 2**80},
    "val_text": {"val_size": "5000"},
    "device": {"on_device": "cuda:7"},
}


@pytest.fixture(scope="module")
def place(tmp_path_factory) -> Path:
    """A folder with a good checkpoint, a garbage one, an image, and a run dir whose overrides are malformed."""
    root = tmp_path_factory.mktemp("catalogue")
    write_checkpoint(root / "good.ckpt")
    for name, data in BAD_STORED_DATA.items():
        write_checkpoint(root / f"{name}.ckpt", data=data)
    (root / "garbage.ckpt").write_bytes(b"not a checkpoint" * 100)
    from PIL import Image

    Image.new("L", (28, 28), 0).save(root / "digit.png")
    os.mkfifo(root / "fifo.ckpt")  # nobody ever writes into it: opening it to read would block
    (root / "one_class" / "cat").mkdir(parents=True)
    Image.new("RGB", (20, 20), (200, 100, 0)).save(root / "one_class" / "cat" / "tabby.png")
    (root / "pictures.csv").write_text("file,kind\ndigit.png,seven\n")
    broken = root / "broken"
    (broken / ".hydra").mkdir(parents=True)
    (broken / "checkpoints").mkdir()
    (broken / "checkpoints" / "last.ckpt").write_bytes(b"")
    (broken / ".hydra" / "overrides.yaml").write_text("model: cnn\n")
    return root


def _fingerprint(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


# the one case per command run as the user runs it: a new process, its exit status and stderr
END_TO_END = {
    "train": ["trainer.max_epochs=0"],
    "evaluate": [f"ckpt_path={GOOD_CKPT}", "trainer=gpux"],  # a Hydra composition error
    "predict": [f"ckpt_path={GOOD_CKPT}", "inputs=/nonexistent.png"],
    "serve": [f"ckpt_path={GOOD_CKPT}", "port=70000"],
    "export": [f"ckpt_path={GOOD_CKPT}", f"output={GOOD_CKPT}"],  # would overwrite its own input
    "scratch": ["scratch.model=svm"],
    "report": ["{tmp}/garbage.ckpt"],
}


def test_the_catalogue_is_large():
    commands = {c for c, _, _ in CASES}
    assert len(CASES) >= 60 and commands == set(COMMANDS) == set(END_TO_END)
    assert all([command, args] in [[c, a] for c, a, _ in CASES] for command, args in END_TO_END.items())


def _case(command: str, args: list[str], expected: str) -> object:
    """Serving and ONNX cases run where their extra is installed (the error is the extra's otherwise)."""
    marks = []
    if command == "serve":
        marks = [needs("fastapi", "uvicorn", "multipart", "fastapi_offline")]
    elif "backend=onnx" in args:
        marks = [needs("onnxruntime")]
    return pytest.param(command, args, expected, marks=marks, id=f"{command} {' '.join(args)}")


def _filled(command: str, args: list[str], expected: str, place: Path, tmp_path: Path) -> tuple[list[str], str]:
    ckpt = str(place / "good.ckpt")
    args = [a.replace(GOOD_CKPT, ckpt).replace("{tmp}", str(place)) for a in args]
    if command in ("train", "evaluate", "scratch"):
        args.append(f"hydra.run.dir={tmp_path / 'run'}")
    return args, expected.replace(GOOD_CKPT, ckpt)


@pytest.mark.parametrize(("command", "args", "expected"), [_case(*c) for c in CASES])
def test_bad_input_is_one_line(command, args, expected, place, tmp_path, command_error):
    """Every case in this process: the command's checks, its message, nothing read changed or lost."""
    before = _fingerprint(place)
    args, expected = _filled(command, args, expected, place, tmp_path)
    message = command_error(command, *args)
    assert expected in message, message
    assert _fingerprint(place) == before  # nothing read was changed or lost


@pytest.mark.parametrize(
    ("command", "args", "expected"), [_case(c, a, e) for c, a, e in CASES if END_TO_END.get(c) == a]
)
def test_bad_input_ends_the_command_with_one_line_and_status_2(command, args, expected, place, tiny_data, tmp_path):
    """One case per command as a user meets it: one ``error:`` line on stderr, exit status 2, no traceback, no
    file lost."""
    before = _fingerprint(place)
    args, expected = _filled(command, args, expected, place, tmp_path)
    result = run_cli(f"mnistlab.{command}", *args, data_dir=tiny_data, cwd=tmp_path, check=False, timeout=120)
    assert_one_error_line(result, expected)
    assert _fingerprint(place) == before


# Hydra's composition errors, explained in-process (the subprocess cases above check the exit status and stderr)
COMPOSITION: list[tuple[str, list[str], str]] = [
    (
        "train",
        ["trainer.limit_train_batchs=5"],
        "trainer.limit_train_batchs is not a key of mnistlab-train's config; did you mean trainer.limit_train_batches?",
    ),
    ("train", ["optim=sgd", "optim.momentom=0.9"], "did you mean optim.momentum?"),
    ("train", ["traner=gpu"], "did you mean trainer?"),
    ("train", ["optim=adamx"], "optim='adamx' is not a preset; did you mean optim=adam? choose one of adam, adamw"),
    ("train", ["seed=[1"], "seed=[1 does not parse: "),
    ("train", ["+seed=3"], "Could not append to config. An item is already at 'seed'."),
    ("evaluate", ["optim=sgd"], "mnistlab-evaluate has no optim group; its groups: paths, trainer"),
    ("evaluate", ["trainer=gpux"], "trainer='gpux' is not a preset; did you mean trainer=gpu?"),
    ("scratch", ["scratch.modle=mlp"], "did you mean scratch.model?"),
    ("predict", ["batch_sise=3"], "batch_sise is not a key of mnistlab-predict's config; did you mean batch_size?"),
    ("export", ["formt=onnx"], "did you mean format?"),
    ("serve", ["prot=80"], "did you mean port?"),
    ("predict", ["zzz=1"], "zzz is not a key of mnistlab-predict's config; add a new key with +zzz=…"),
]


@pytest.mark.parametrize(("config", "overrides", "expected"), COMPOSITION, ids=[" ".join(o) for _, o, _ in COMPOSITION])
def test_hydra_composition_errors_name_the_closest_key(config, overrides, expected):
    from hydra import compose, initialize_config_dir

    from mnistlab.core.composition import explain
    from mnistlab.core.config import CONFIG_DIR

    with pytest.raises(Exception) as raised, initialize_config_dir(config_dir=CONFIG_DIR, version_base="1.3"):
        compose(config, overrides)
    message = explain(raised.value, config, overrides)
    assert message is not None and "\n" not in message and expected in message, message
