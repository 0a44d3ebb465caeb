"""The configuration reference, generated from the code so that it cannot drift from it.

Every YAML file under ``mnistlab/conf`` (each key with the comments written beside and above it) and every
checked field of ``mnistlab/core/fields.py`` (its type and range) becomes one page. ``mkdocs build`` runs this
file through the mkdocs-gen-files plugin (the page exists only in the built site); ``tests/test_docs.py`` calls
``render()`` to check that no key is missing; ``python docs/gen_reference.py OUT.md`` writes it to a file.

The YAML is read as text and parsed into nodes (``yaml.compose``: no object is built, no interpolation resolved,
nothing imported): a config file is data here, never code.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from mnistlab.core.fields import COMMANDS as CHECKED
from mnistlab.core.fields import IGNORED, KINDS, Field

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "mnistlab" / "conf"
PAGE = "reference/configuration.md"
# the configs a command starts from (conf/<command>.yaml); every other folder of conf/ is a config group
COMMANDS = ("train", "evaluate", "predict", "serve", "export", "scratch")


@dataclass
class Knob:
    """One key of a YAML file: its full dotted path in the composed config, the value as written, its comment."""

    path: str
    value: str
    comment: str


@dataclass
class ConfigFile:
    """One YAML file: where it sits in the composed config, what its header says, what it composes and sets."""

    name: str  # relative to conf/, without .yaml: model/cnn
    package: str  # the dotted prefix of its keys in the composed config ("" for the global package)
    header: list[str]
    defaults: list[Knob] = field(default_factory=list)
    knobs: list[Knob] = field(default_factory=list)


def _comment_after(line: str, start: int) -> str:
    """The ``# comment`` of ``line`` at or after column ``start`` (a ``#`` outside quotes, after a space)."""
    quote = ""
    for i in range(start, len(line)):
        char = line[i]
        if quote:
            if char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[i + 1 :].strip()
    return ""


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def _header(lines: list[str]) -> tuple[list[str], int]:
    """The file's leading comment lines (without ``# @package``) and how many lines they span."""
    header: list[str] = []
    n = 0
    for line in lines:
        if not _is_comment(line):
            break
        n += 1
        text = line.lstrip()[1:]
        text = text[1:] if text.startswith(" ") else text
        if not text.startswith("@package"):
            header.append(text.rstrip())
    return header, n


def _comment_above(lines: list[str], row: int, header_end: int) -> str:
    """The comment lines right above line ``row`` (none across a blank line or into the file's header)."""
    above: list[str] = []
    i = row - 1
    while i >= header_end and _is_comment(lines[i]):
        above.insert(0, lines[i].strip()[1:].strip())
        i -= 1
    return " ".join(above)


def _scalar_text(node: yaml.Node, text: str) -> str:
    if isinstance(node, yaml.ScalarNode) and node.style in ("|", ">"):
        return "(a block of text)"
    written = text[node.start_mark.index : node.end_mark.index]
    return " ".join(written.split()) or "null"


def _walk(node: yaml.MappingNode, prefix: str, lines: list[str], text: str, header_end: int, out: list[Knob]) -> None:
    for key_node, value_node in node.value:
        key = str(key_node.value)
        path = f"{prefix}.{key}" if prefix else key
        row = key_node.start_mark.line
        block = isinstance(value_node, yaml.MappingNode | yaml.SequenceNode) and not value_node.flow_style
        if block:  # `key:   # comment` then the collection's lines
            beside = _comment_after(lines[row], key_node.end_mark.column)
            value = "" if isinstance(value_node, yaml.MappingNode) else _scalar_text(value_node, text)
        else:
            end = value_node.end_mark
            beside = _comment_after(lines[end.line], end.column) if end.line < len(lines) else ""
            value = _scalar_text(value_node, text)
        comment = " ".join(c for c in (_comment_above(lines, row, header_end), beside) if c)
        out.append(Knob(path, value, comment))
        if isinstance(value_node, yaml.MappingNode):
            _walk(value_node, path, lines, text, header_end, out)


def _defaults(node: yaml.SequenceNode, lines: list[str], text: str) -> list[Knob]:
    """The defaults list: each entry as ``group: option`` (or ``_self_``) with its comment."""
    entries = []
    for item in node.value:
        pairs = item.value if isinstance(item, yaml.MappingNode) else [(item, None)]
        for key_node, value_node in pairs:
            end = (value_node or key_node).end_mark  # a scalar's own end (a mapping's is the next item's start)
            comment = _comment_after(lines[end.line], end.column) if end.line < len(lines) else ""
            value = "" if value_node is None else _scalar_text(value_node, text)
            entries.append(Knob(str(key_node.value), value, comment))
    return entries


def package_of(name: str, header: str) -> str:
    """Where a file's keys land in the composed config, as Hydra decides: ``# @package`` when the file says,
    else the group's path (model/cnn → model, hydra/launcher/slurm → hydra.launcher); a command's own config
    is global."""
    match = re.search(r"^#\s*@package\s+(\S+)", header, re.MULTILINE)
    group = name.rpartition("/")[0].replace("/", ".")
    if match:
        package = match.group(1)
        return "" if package == "_global_" else group if package == "_group_" else package
    return group


def read(path: Path) -> ConfigFile:
    """One YAML file of conf/ as its knobs, read as text (nothing is built or resolved)."""
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    name = path.relative_to(CONF).with_suffix("").as_posix()
    header, header_end = _header(lines)
    config = ConfigFile(name, package_of(name, text), header)
    root = yaml.compose(text, Loader=yaml.SafeLoader)
    if root is None:
        return config
    if not isinstance(root, yaml.MappingNode):
        raise ValueError(f"{path}: the top level is not a mapping of keys")
    knobs: list[Knob] = []
    top = yaml.MappingNode(root.tag, [(k, v) for k, v in root.value if k.value != "defaults"])
    for key_node, value_node in root.value:
        if key_node.value == "defaults" and isinstance(value_node, yaml.SequenceNode):
            config.defaults = _defaults(value_node, lines, text)
    _walk(top, config.package, lines, text, header_end, knobs)
    config.knobs = knobs
    return config


def config_files() -> list[ConfigFile]:
    return [read(path) for path in sorted(CONF.rglob("*.yaml"))]


# -- Markdown -----------------------------------------------------------------------------------------------------

_ESCAPE = {"\\": "\\\\", "*": "\\*", "_": "\\_", "[": "\\[", "]": "\\]", "<": "&lt;", ">": "&gt;", "&": "&amp;"}


def prose(text: str, table: bool = False) -> str:
    """A comment as Markdown: its `code spans` kept, everything else escaped (a comment is text, not markup)."""
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: all of it is text
        parts = [text.replace("`", "'")]
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(code(part))
        else:
            out.append("".join(_ESCAPE.get(c, c) for c in part))
    result = "".join(out)
    return result.replace("|", "\\|") if table else result


def code(text: str) -> str:
    """``text`` as a code span (a pipe inside one does not split a table cell in Python-Markdown)."""
    fence = "``" if "`" in text else "`"
    return f"{fence} {text} {fence}" if fence == "``" else f"`{text}`"


def describe(declared: Field) -> str:
    """A field's type and range in words, from its declaration."""
    if declared.kind == "choice":
        return "one of " + ", ".join(code(c) for c in declared.choices)
    words = KINDS[declared.kind][1]
    allowed = declared.allowed.removeprefix("must be ")
    if allowed.startswith(("an integer", "a positive integer")):  # the range says the type already
        words = allowed
    elif allowed:
        words += ", " + allowed
    return prose(words, table=True)


def anchor(name: str) -> str:
    return "conf-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _header_markdown(header: list[str]) -> list[str]:
    """A file's header comment: its prose as a paragraph, its indented lines (commands) as a code block."""
    out: list[str] = []
    paragraph: list[str] = []
    commands: list[str] = []

    def flush() -> None:
        if paragraph:
            out.extend([prose(" ".join(paragraph)), ""])
            paragraph.clear()
        if commands:
            out.extend(["```bash", *commands, "```", ""])
            commands.clear()

    for line in header:
        if line.startswith("  "):
            if paragraph:
                flush()
            commands.append(line[2:].rstrip())
        elif line.strip():
            if commands:
                flush()
            paragraph.append(line.strip())
        else:
            flush()
    flush()
    return out


def _file_section(config: ConfigFile, fields: dict[str, Field], level: str) -> list[str]:
    group, _, option = config.name.rpartition("/")
    title = f"`{group}={option}`" if group else f"`conf/{config.name}.yaml`"
    out = [f"{level} {title} {{#{anchor(config.name)}}}", ""]
    if group:
        where = f"keys under `{config.package}`" if config.package else "keys from the top of the config"
        out.extend([f"`conf/{config.name}.yaml`, {where}", ""])
    out.extend(_header_markdown(config.header))
    if config.defaults:
        composed = []
        for entry in config.defaults:
            item = f"`{entry.path}: {entry.value}`" if entry.value else f"`{entry.path}`"
            composed.append(f"- {item}" + (f": {prose(entry.comment)}" if entry.comment else ""))
        out.extend(["Composes:", "", *composed, ""])
    if config.knobs:
        out.extend(["| key | value | type and range | what it is |", "|---|---|---|---|"])
        for knob in config.knobs:
            declared = fields.get(knob.path)
            kind = describe(declared) if declared is not None else ""
            value = code(knob.value) if knob.value else ""
            out.append(f"| {code(knob.path)} | {value} | {kind} | {prose(knob.comment, table=True)} |")
        out.append("")
    return out


def render() -> str:
    """The whole configuration reference page."""
    # a command's own file is checked by its own fields (`output` is a format for predict, a path for export);
    # the groups' keys are dotted paths, declared alike by every command that composes them
    grouped = {f.key: f for command in ("train", "evaluate", "scratch") for f in CHECKED[command]}
    files = config_files()
    by_group: dict[str, list[ConfigFile]] = {}
    for config in files:
        group = config.name.rpartition("/")[0]
        if group:
            by_group.setdefault(group, []).append(config)
    out = [
        "# Configuration reference",
        "",
        "<!-- generated by docs/gen_reference.py from mnistlab/conf and mnistlab/core/fields.py: edit those -->",
        "",
        "Every key of every config file, with the comment written beside it in the YAML, and the type and range "
        "that every command checks before it reads or trains anything (`mnistlab/core/fields.py`). This page is "
        "generated from the code each time the documentation is built, so it lists what the installed version "
        "accepts.",
        "",
        "Any key can be set on the command line as `key=value` (`optim.lr=0.01`), a preset of a group is chosen "
        "as `group=option` (`model=cnn_bn`), and `mnistlab-train --help` prints the composed config. Values "
        "such as `${paths.data_dir}` are Hydra interpolations, resolved when a run starts; `???` must be given "
        "(a preset gives it); `null` means unset.",
        "",
        "## Commands",
        "",
        "Each command starts from its own file in `conf/`.",
        "",
    ]
    for config in files:
        if config.name in COMMANDS:
            out.extend(_file_section(config, {f.key: f for f in CHECKED[config.name]}, "###"))
    out.extend(["## Config groups", ""])
    out.append(
        "A group is a folder of `conf/`; its files are its options. `hydra/launcher=basic` (one job at a time) "
        "and `hydra/launcher=joblib` (local parallel jobs) come with Hydra and its joblib plugin."
    )
    out.append("")
    out.extend(["| group | options |", "|---|---|"])
    for group, configs in sorted(by_group.items()):
        links = ", ".join(f"[`{c.name.rpartition('/')[2]}`](#{anchor(c.name)})" for c in configs)
        out.append(f"| `{group}` | {links} |")
    out.append("")
    for group, configs in sorted(by_group.items()):
        out.extend([f"### `{group}` {{#{anchor('group-' + group)}}}", ""])
        for config in configs:
            out.extend(_file_section(config, grouped, "####"))
    others = [c for c in files if c.name not in COMMANDS and "/" not in c.name]
    if others:
        out.extend(["## Other files", ""])
        for config in others:
            out.extend(_file_section(config, grouped, "###"))
    out.extend(
        [
            "## Checked values, per command",
            "",
            "What each command checks, key by key, before it reads or trains anything: a value of another type "
            "or out of range stops it with one line naming the key, the value and what is allowed (exit status "
            "2). `null` is always allowed (unset). Keys a preset does not set, such as "
            "`trainer.limit_train_batches`, are listed here too.",
            "",
        ]
    )
    for command, declared in CHECKED.items():
        out.extend([f"### `mnistlab-{command}` {{#{anchor('checked-' + command)}}}", ""])
        out.extend(["| key | type and range |", "|---|---|"])
        out.extend(f"| {code(f.key)} | {describe(f)} |" for f in declared)
        out.append("")
    if IGNORED:
        out.extend(["Settings a model takes but has no use for, with the one value a config may give them:", ""])
        for model, settings in IGNORED.items():
            for key, (allowed, why) in settings.items():
                out.append(f"- `model={model}`: `model.{key}` must stay `{allowed}` ({prose(why)})")
        out.append("")
    return "\n".join(out)


def _write_for_mkdocs() -> None:
    import mkdocs_gen_files

    with mkdocs_gen_files.open(PAGE, "w") as page:
        page.write(render())


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python docs/gen_reference.py OUT.md")
    Path(sys.argv[1]).write_text(render(), encoding="utf-8")
elif __name__ == "<run_path>":  # mkdocs-gen-files runs this file with runpy
    _write_for_mkdocs()
