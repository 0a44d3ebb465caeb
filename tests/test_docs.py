"""The documentation tells the truth: the configuration reference lists every key of every config file with the
type and range the commands check, the README's links lead somewhere, and the tutorials' commands run as
written (on tiny data) and leave what the pages say they leave.

The strict MkDocs build (broken links and references) is a CI step of its own: `make docs-build`."""

from __future__ import annotations

import html
import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import pytest
from helpers import REPO, needs
from helpers.cli import FAST, free_port, wait_for_port
from omegaconf import OmegaConf

DOCS = REPO / "docs"
TUTORIALS = DOCS / "tutorials"
CONF = REPO / "mnistlab" / "conf"


def _generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", DOCS / "gen_reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def reference() -> str:
    return _generator().render()


# -- the configuration reference ----------------------------------------------------------------------------------


def _paths(node: object, prefix: str) -> list[str]:
    """Every key path of a loaded YAML mapping, nested ones included (read without resolving anything)."""
    out = []
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            out.append(path)
            out.extend(_paths(value, path))
    return out


def _section(page: str, anchor: str) -> str:
    """The text of the section whose heading carries ``{#anchor}``, up to the next heading of its level or above."""
    match = re.search(rf"^(#+) .*\{{#{re.escape(anchor)}\}}$", page, re.MULTILINE)
    assert match, f"no section {anchor} in the reference"
    level = len(match.group(1))
    rest = page[match.end() :]
    end = re.search(rf"^#{{1,{level}}} ", rest, re.MULTILINE)
    return rest[: end.start()] if end else rest


def _rows(section: str) -> dict[str, str]:
    """The table rows of a section, by their first cell's key."""
    rows = {}
    for line in section.splitlines():
        match = re.match(r"^\| `([^`]+)` \|(.*)$", line)
        if match:
            rows[match.group(1)] = match.group(2)
    return rows


CONFIG_FILES = sorted(CONF.rglob("*.yaml"))


def test_every_key_of_every_config_file_is_in_the_reference(reference: str) -> None:
    """A key added to any YAML of conf/ shows up in the reference with its full path, in its file's section."""
    assert len(CONFIG_FILES) > 50
    missing = []
    for path in CONFIG_FILES:
        name = path.relative_to(CONF).with_suffix("").as_posix()
        text = path.read_text()
        loaded = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        assert isinstance(loaded, dict)
        group = name.rpartition("/")[0]
        # Hydra's package: the group's path, unless the file says `# @package _global_`
        package = "" if "# @package _global_" in text else group.replace("/", ".")
        section = _section(reference, "conf-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-"))
        rows = _rows(section)
        defaults = loaded.pop("defaults", [])
        for key in _paths(loaded, package):
            if key not in rows:
                missing.append(f"{name}: {key}")
        for entry in defaults:  # what the file composes: each group and choice, or _self_
            if isinstance(entry, str):
                shown = f"`{entry}`"
            else:
                shown = "".join(f"`{k}: {'null' if v is None else v}`" for k, v in entry.items())
            if shown not in section:
                missing.append(f"{name}: defaults entry {shown}")
    assert not missing, "not in the generated reference:\n" + "\n".join(missing)


def test_the_reference_states_each_checked_range_as_declared(reference: str) -> None:
    """Each command's checked keys are listed, and every row of a checked key states its declaration: all its
    choices, or the range the error message gives."""
    from mnistlab.core.fields import COMMANDS

    for command, declared in COMMANDS.items():
        rows = _rows(_section(reference, f"conf-checked-{command}"))
        for f in declared:
            assert f.key in rows, f"mnistlab-{command}: {f.key} is not listed"
            row = html.unescape(rows[f.key]).replace("\\", "")
            for choice in f.choices:
                assert f"`{choice}`" in row, (command, f.key, row)
            words = f.allowed.removeprefix("must be ").removeprefix("an integer ").removeprefix("a ")
            assert words in row, (command, f.key, f.allowed, row)
    # the same declarations where the keys are set, with the comment written beside them
    cnn = _rows(_section(reference, "conf-model-cnn"))
    assert "`none`, `batch`" in cnn["model.norm"] and "BatchNorm2d after each conv" in cnn["model.norm"]
    assert "in [0, 1)" in html.unescape(cnn["model.dropout"]).replace("\\", "")
    export = _rows(_section(reference, "conf-export"))
    assert "`text`" not in export["output"]  # export's output is a path, predict's a format: each its own


# -- the README ---------------------------------------------------------------------------------------------------


def test_the_readme_is_short_and_its_links_lead_to_files() -> None:
    text = (REPO / "README.md").read_text()
    assert len(text.splitlines()) <= 150
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if "://" not in link]
    assert len(local) > 10
    assert [link for link in local if not (REPO / link).exists()] == []


def test_the_readme_tour_is_made_of_tutorial_commands() -> None:
    """The README's commands are the tutorials' own, so the tutorials' test runs them too."""
    readme = [b for b in _blocks(REPO / "README.md") if b.commands[0][0] != "make"]
    tutorials = [argv for page in sorted(TUTORIALS.glob("*.md")) for b in _blocks(page) for argv in b.commands]
    commands = [argv for block in readme for argv in block.commands]
    assert len(commands) >= 5
    assert [shlex.join(argv) for argv in commands if argv not in tutorials] == []


# -- the tutorials' commands --------------------------------------------------------------------------------------

MARKER = re.compile(r"^<!--\s*docs-test:\s*(.*?)\s*-->$")
MODES = ("run", "server", "client", "skip")
# a tutorial's budgets, scaled down to tiny data: these overrides replace the page's own or are added
TINY = dict(o.split("=", 1) for o in FAST) | {
    "trainer.limit_train_batches": "4",
    "trainer.limit_val_batches": "1",
    "trainer.limit_test_batches": "1",
}
TRIALS_DIVISOR = 5  # a search of N trials runs N // 5 (at least 2): 10 then 15 become 2 then 3


@dataclass
class Block:
    """A ```bash block of a tutorial and what its marker says: how to treat it, the files it must leave, the text
    its output must hold."""

    where: str
    mode: str
    commands: list[list[str]]
    creates: list[str] = field(default_factory=list)
    prints: list[str] = field(default_factory=list)


def _blocks(page: Path) -> list[Block]:
    lines = page.read_text().splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        if lines[i].strip() != "```bash":
            i += 1
            continue
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = MARKER.match(before)
        parts = [p.strip() for p in marker.group(1).split(";")] if marker else ["unmarked"]
        block = Block(f"{page.name}:{i + 1}", parts[0].split(",")[0].strip(), [])
        for part in parts[1:] if block.mode != "skip" else []:  # a skip's reason is free text
            key, _, value = part.partition(" ")
            if key == "creates":
                block.creates = [v.strip() for v in value.split(",")]
            elif key == "prints":
                block.prints.append(value.strip())
            else:
                raise AssertionError(f"{block.where}: unknown marker part {part!r}")
        end = lines.index("```", i + 1)
        text = "\n".join(lines[i + 1 : end]).replace("\\\n", " ")
        block.commands = [c for c in (shlex.split(line, comments=True) for line in text.splitlines()) if c]
        blocks.append(block)
        i = end + 1
    return blocks


# the pages whose commands run, each with the extras it needs (scaling-out.md needs a cluster, a GPU or a
# database for all but its joblib sweep, which tests/test_joblib_sweep.py covers)
PAGES = {
    "ablation.md": [],
    "search.md": [needs("optuna")],
    "production.md": [needs("fastapi", "uvicorn", "multipart", "onnx", "onnxscript", "onnxruntime")],
}


def test_every_tutorial_command_block_says_how_it_is_tested() -> None:
    running = []
    for page in sorted(TUTORIALS.glob("*.md")):
        blocks = _blocks(page)
        assert blocks, page
        for block in blocks:
            assert block.mode in MODES, f"{block.where}: a ```bash block needs a <!-- docs-test: … --> marker"
            assert block.commands, block.where
        if any(b.mode != "skip" for b in blocks):
            running.append(page.name)
    assert sorted(running) == sorted(PAGES)  # a new tutorial's commands are run too


def _tiny(argv: list[str]) -> list[str]:
    """A tutorial's mnistlab-train command line on tiny data: TINY's keys replaced or added, fewer trials."""
    out = []
    for token in argv:
        key, eq, value = token.partition("=")
        if eq and key in TINY:
            continue
        if eq and key == "hydra.sweeper.n_trials":
            token = f"{key}={max(2, int(value) // TRIALS_DIVISOR)}"
        out.append(token)
    return out + [f"{k}={v}" for k, v in TINY.items()]


def _command(argv: list[str], base_url: str | None) -> list[str]:
    if argv[0] == "mnistlab-train":
        argv = _tiny(argv)
    if argv[0].startswith("mnistlab-"):  # the console script installed beside this interpreter
        script = Path(sys.executable).parent / argv[0]
        return (
            [str(script), *argv[1:]]
            if script.exists()
            else [sys.executable, "-m", argv[0].replace("-", "."), *argv[1:]]
        )
    if argv[0] == "curl":
        if shutil.which("curl") is None:
            pytest.skip("curl is not installed")
        assert base_url, "a client block with no server before it"
        return [a.replace("http://127.0.0.1:8000/", base_url) for a in argv]
    raise AssertionError(f"the test does not know how to run {argv[0]!r}")


def _wait_for_port(process: subprocess.Popen, port: int, log: Path) -> None:
    try:
        wait_for_port(process, port)
    except RuntimeError:
        raise AssertionError(f"the server did not start:\n{log.read_text()[-3000:]}") from None


def _digits(folder: Path) -> None:
    """A few digit images of the kinds the production tutorial names (a 7 in PNG, a 1 in BMP)."""
    from helpers.images import seven
    from PIL import Image, ImageDraw

    folder.mkdir()
    seven().save(folder / "seven.png")
    one = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(one).line([(100, 30), (100, 170)], fill=0, width=14)
    one.save(folder / "one.bmp")


@pytest.mark.parametrize("page", [pytest.param(name, marks=marks) for name, marks in PAGES.items()])
def test_the_tutorial_commands_run_as_written(page: str, tiny_data: Path, tmp_path: Path) -> None:
    """Each page's blocks in order, from one folder, as a reader would type them: every command exits 0, and
    leaves the files and prints the lines its marker names."""
    env = {**os.environ, "MNISTLAB_DATA_DIR": str(tiny_data), "PYTHONUNBUFFERED": "1"}
    _digits(tmp_path / "digits")
    server: subprocess.Popen | None = None
    base_url = None
    try:
        for block in _blocks(TUTORIALS / page):
            if block.mode == "skip":
                continue
            if block.mode == "server":
                assert server is None and len(block.commands) == 1, block.where
                port = free_port()
                log = tmp_path / "server.log"
                with log.open("w") as out:
                    server = subprocess.Popen(
                        [*_command(block.commands[0], None), f"port={port}"],
                        cwd=tmp_path,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                _wait_for_port(server, port, log)
                base_url = f"http://127.0.0.1:{port}/"
                continue
            output = ""
            for argv in block.commands:
                result = subprocess.run(
                    _command(argv, base_url), cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
                )
                shown = f"{block.where}: {shlex.join(argv)} exited {result.returncode}\n{result.stdout[-3000:]}"
                assert result.returncode == 0, shown + result.stderr[-5000:]
                output += result.stdout + result.stderr
            for path in block.creates:
                assert (tmp_path / path).exists(), f"{block.where}: {path} was not written"
            for text in block.prints:
                assert text in output, f"{block.where}: {text!r} not in the output:\n{output[-3000:]}"
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
