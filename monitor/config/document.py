"""Read one YAML file into plain data plus the line of every key, refusing hostile documents.

A config is typed by hand, copied between Windows and Linux and sometimes generated, so this
reader refuses what PyYAML alone would accept silently or choke on (SPEC §10):

- a key given twice in one mapping (PyYAML keeps the last one: a whole block of checks gone);
  YAML merge keys (`<<`) are allowed and are not duplicates;
- documents that expand beyond a bounded size (alias bombs), counted on the composed node
  graph with each alias counted at every use, before anything is expanded;
- nesting deeper than a config ever needs, integers of thousands of digits, `.inf`/`.nan`,
  text that is not UTF-8 (with a hint for GBK, what Chinese Windows PCs save by default).

Every problem is a `Problem` with the file and line; nothing here raises anything else.
"""

from __future__ import annotations

import codecs
import math
from dataclasses import dataclass, field
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]

MAX_BYTES = 64 * 1024 * 1024
"""Largest config file read (a 50,000-check config is about 10 MiB)."""
MAX_NODES = 5_000_000
"""Most YAML nodes a document may expand to, aliases counted at each use (SPEC §10); a
50,000-check config of realistic checks has about 1.5 million."""
MAX_DEPTH = 64
"""Deepest nesting accepted; the deepest real config key is about 8 levels down."""
MAX_INT_DIGITS = 30

_Loader: type[Any] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_MERGE = "tag:yaml.org,2002:merge"
_STR = "tag:yaml.org,2002:str"
_SCALARS = {
    "tag:yaml.org,2002:null", "tag:yaml.org,2002:bool", "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float", "tag:yaml.org,2002:timestamp", _STR,
}


@dataclass(frozen=True, slots=True)
class Problem:
    file: str
    line: int
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.path}: {self.message}"


def format_path(path: KeyPath) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


@dataclass
class Document:
    """One file's data, the line of each key and list item, and what was wrong with it."""

    file: str
    data: Any = None
    problems: list[Problem] = field(default_factory=list)
    text: str | None = field(default=None, repr=False)
    """The YAML as read, kept so that the line map can be made when a problem needs it."""
    _lines: dict[KeyPath, int] | None = field(default=None, repr=False)

    @property
    def lines(self) -> dict[KeyPath, int]:
        """The line of every key and list item, made on first use.

        Only a problem needs a line, so a config that loads cleanly never makes the map:
        at 10,000 checks it is ~100,000 path tuples built and dropped at every start and
        reload. Made here from `text`, which parsed once already.
        """
        if self._lines is None:
            self._lines = {}
            if self.text is not None:
                node = yaml.compose(self.text, Loader=_Loader)
                if node is not None:
                    _walk(Document(self.file), node, self._lines)
        return self._lines

    def line_of(self, path: KeyPath) -> int:
        for end in range(len(path), -1, -1):
            line = self.lines.get(path[:end])
            if line is not None:
                return line
        return 1

    def report(self, path: KeyPath, message: str, line: int | None = None) -> None:
        self.problems.append(Problem(self.file, line or self.line_of(path),
                                     format_path(path), message))


def decode(raw: bytes) -> tuple[str | None, int, str]:
    """UTF-8 text (BOM dropped), or None with the line and a message that says what to do."""
    if raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8):]
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) or raw[:2].count(0) == 1:
        return None, 1, "saved as UTF-16; save the file as UTF-8"
    try:
        return raw.decode("utf-8"), 0, ""
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        try:
            raw.decode("gbk")
        except UnicodeDecodeError:
            return None, line, f"not UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
        return None, line, "not UTF-8; saved as GBK? Save the file as UTF-8"


def read_text(text: str, file: str) -> Document:
    """Parse YAML text into a Document; `problems` is non-empty when the data is unusable."""
    doc = Document(file)
    try:
        node = yaml.compose(text, Loader=_Loader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = str(getattr(exc, "problem", None) or exc).strip()
        if "nesting depth" in problem:
            problem = f"nested deeper than {MAX_DEPTH} levels"
        doc.report((), problem, line=mark.line + 1 if mark is not None else 1)
        doc.problems[-1] = Problem(file, doc.problems[-1].line, "(yaml)", problem)
        return doc
    except RecursionError:  # only without libyaml, whose parser bounds the depth itself
        doc.problems.append(Problem(file, 1, "(yaml)", f"nested deeper than {MAX_DEPTH} levels"))
        return doc
    if node is None:
        doc.data = {}
        return doc
    if not isinstance(node, yaml.MappingNode):
        doc.problems.append(Problem(file, node.start_mark.line + 1, "(top level)",
                                    "the config must be a YAML mapping"))
        return doc
    doc.text = text
    walked = _walk(doc, node)
    if walked is None:
        return doc
    size = walked if walked != _UNCOUNTED else _expanded_size(node)
    if size > MAX_NODES:
        doc.problems.append(Problem(
            file, 1, "(yaml)", f"the document expands to more than {MAX_NODES:,} values "
                               "(aliases counted at each use): refused"))
        return doc
    doc.data = _Builder(doc).build(node)
    return doc


_UNCOUNTED = -1


def _walk(doc: Document, root: yaml.Node,
          lines: dict[KeyPath, int] | None = None) -> int | None:
    """Check duplicate keys and depth over the document as written (aliases not followed:
    an alias is reported at its own line), and record lines into `lines` if given.

    None when too deep to go on. Otherwise the number of values the document expands to,
    when this walk knows it: with no alias and nothing reported, every node was visited once,
    so it is the node count (what `_expanded_size` would find, without a second pass over
    ~100,000 nodes at 10,000 checks); `_UNCOUNTED` when there were aliases or problems.
    """
    seen: set[int] = set()
    nodes, aliased, problems = 0, False, len(doc.problems)
    stack: list[tuple[yaml.Node, KeyPath, int]] = [(root, (), 0)]
    if lines is not None:
        lines[()] = root.start_mark.line + 1
    while stack:
        node, path, depth = stack.pop()
        if depth > MAX_DEPTH:
            doc.report(path, f"nested deeper than {MAX_DEPTH} levels",
                       line=node.start_mark.line + 1)
            return False
        if id(node) in seen:
            aliased = True
            continue  # an alias: its target was walked where it was written
        seen.add(id(node))
        nodes += 1
        if isinstance(node, yaml.MappingNode):
            nodes += len(node.value)  # the keys: each a scalar, or a problem reported below
            first: dict[str, int] = {}
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if key_node.tag == _MERGE:
                    if lines is not None:
                        for merged in _merged_keys(value_node):
                            lines.setdefault((*path, merged), line)
                    stack.append((value_node, (*path, "<<"), depth + 1))
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    doc.report(path, "a key must be a plain value, not a list or mapping",
                               line=line)
                    continue
                key = str(key_node.value)
                key_path = (*path, key)
                if key in first:
                    doc.report(key_path, f"duplicate key (first at line {first[key]})", line=line)
                    continue
                first[key] = line
                if lines is not None:
                    lines[key_path] = line
                stack.append((value_node, key_path, depth + 1))
        elif isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                if lines is not None:
                    lines[(*path, index)] = item.start_mark.line + 1
                stack.append((item, (*path, index), depth + 1))
    if aliased or len(doc.problems) != problems:
        return _UNCOUNTED
    return nodes


def _merged_keys(node: yaml.Node) -> list[str]:
    maps = node.value if isinstance(node, yaml.SequenceNode) else [node]
    return [str(k.value) for m in maps if isinstance(m, yaml.MappingNode)
            for k, _ in m.value if isinstance(k, yaml.ScalarNode)]


def _expanded_size(root: yaml.Node) -> int:
    """Values the document holds once every alias is expanded, without expanding any."""
    sizes: dict[int, int] = {}
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if id(node) in sizes:
            continue
        children: list[yaml.Node]
        if isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        elif isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        else:
            sizes[id(node)] = 1
            continue
        if done:
            sizes[id(node)] = min(1 + sum(sizes.get(id(c), 0) for c in children),
                                  MAX_NODES + 1)
        else:
            stack.append((node, True))
            stack.extend((c, False) for c in children if id(c) not in sizes)
    return sizes[id(root)]


class _Builder:
    """Node graph → plain dicts, lists and scalars; an alias shares the object of its anchor."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.scalars = yaml.constructor.SafeConstructor()
        self.built: dict[int, Any] = {}
        self.by_line: dict[int, KeyPath] | None = None

    def build(self, root: yaml.Node) -> Any:
        # Depth is at most MAX_DEPTH here (checked by _walk), so recursion is safe.
        return self._node(root)

    def _node(self, node: yaml.Node) -> Any:
        known = self.built.get(id(node), self)
        if known is not self:
            return known
        value: Any
        if isinstance(node, yaml.MappingNode):
            value = {}
            self.built[id(node)] = value
            self._mapping(node, value)
        elif isinstance(node, yaml.SequenceNode):
            value = []
            self.built[id(node)] = value
            if node.tag != "tag:yaml.org,2002:seq":
                self._bad(node, f"unsupported YAML tag {node.tag}")
            value.extend(self._node(item) for item in node.value)
        else:
            value = self._scalar(node)
            self.built[id(node)] = value
        return value

    def _mapping(self, node: yaml.MappingNode, into: dict[str, Any]) -> None:
        if node.tag != "tag:yaml.org,2002:map":
            self._bad(node, f"unsupported YAML tag {node.tag}")
        merged: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if key_node.tag == _MERGE:
                sources = value_node.value if isinstance(value_node, yaml.SequenceNode) \
                    else [value_node]
                for source in sources:
                    data = self._node(source)
                    if not isinstance(data, dict):
                        self._bad(key_node, "a merge key (<<) needs a mapping or a list of them")
                        continue
                    for key, value in data.items():
                        merged.setdefault(key, value)
            elif isinstance(key_node, yaml.ScalarNode):
                into.setdefault(str(key_node.value), self._node(value_node))
        for key, value in merged.items():
            into.setdefault(key, value)

    def _scalar(self, node: yaml.Node) -> Any:
        text = str(node.value)
        if node.tag not in _SCALARS:
            self._bad(node, f"unsupported YAML tag {node.tag}")
            return text
        if node.tag == _STR:
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    self._bad(node, "text is not valid Unicode (a lone surrogate)")
                    return ""
            return text
        if node.tag == "tag:yaml.org,2002:int" and sum(c.isdigit() for c in text) > MAX_INT_DIGITS:
            self._bad(node, f"number too large ({len(text)} digits)")
            return 0
        try:
            value = self.scalars.construct_object(node)
        except (ValueError, OverflowError, yaml.YAMLError) as exc:
            self._bad(node, f"invalid value {text[:40]!r}: {exc}"[:200])
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self._bad(node, f"number out of range ({text[:40]})")
            return 0.0
        return value

    def _bad(self, node: yaml.Node, message: str) -> None:
        line = node.start_mark.line + 1
        if self.by_line is None:
            self.by_line = {}
            for path, at in self.doc.lines.items():  # the deepest key written on that line
                if len(path) >= len(self.by_line.get(at, ())):
                    self.by_line[at] = path
        where = format_path(self.by_line[line]) if line in self.by_line else "(yaml)"
        self.doc.problems.append(Problem(self.doc.file, line, where, message))
