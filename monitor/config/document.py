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
    reader = _Reader(doc)
    try:
        data, root_line, size = reader.read(_Loader(text))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        problem = str(getattr(exc, "problem", None) or exc).strip()
        if "nesting depth" in problem:
            problem = f"nested deeper than {MAX_DEPTH} levels"
        doc.problems = [Problem(file, mark.line + 1 if mark is not None else 1, "(yaml)",
                                problem)]
        return doc
    except RecursionError:  # only without libyaml, whose parser bounds the depth itself
        doc.problems = [Problem(file, 1, "(yaml)", f"nested deeper than {MAX_DEPTH} levels")]
        return doc
    if root_line == 0:  # no document at all
        doc.data = {}
        return doc
    if not isinstance(data, dict):
        doc.problems = [Problem(file, root_line, "(top level)",
                                "the config must be a YAML mapping")]
        return doc
    doc.text = text
    if not reader.deep and size > MAX_NODES:
        doc.problems.append(Problem(
            file, 1, "(yaml)", f"the document expands to more than {MAX_NODES:,} values "
                               "(aliases counted at each use): refused"))
        return doc
    if size == _RECURSIVE:
        doc.problems.append(Problem(file, reader.recursive, "(yaml)",
                                    "an alias inside its own anchor (a structure that "
                                    "contains itself): refused"))
        return doc
    by_line: dict[int, KeyPath] | None = None
    for line, message in reader.bad:
        if by_line is None:  # the deepest key written on that line
            by_line = {}
            for path, at in doc.lines.items():
                if len(path) >= len(by_line.get(at, ())):
                    by_line[at] = path
        where = format_path(by_line[line]) if line in by_line else "(yaml)"
        doc.problems.append(Problem(file, line, where, message))
    doc.data = data
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


_RECURSIVE = -2
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_INT = "tag:yaml.org,2002:int"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_NORMAL, _MERGING, _DUPLICATE, _MUTED = range(4)
"""What the value after a mapping's current key is: kept, merged (`<<`), the value of a
duplicate key (built, its first value kept, not checked further: as the key's problem says),
or the value of a key that is a list or mapping (ignored, like the key)."""


class _Anchor:
    __slots__ = ("built", "done", "line", "scalar", "size", "tag", "text", "value")

    def __init__(self, line: int) -> None:
        self.value: Any = None
        self.size, self.done, self.scalar, self.built = 1, False, False, False
        self.tag, self.text, self.line = "", "", line


class _Frame:
    """An open mapping or sequence."""

    __slots__ = (
        "anchor",
        "expect_key",
        "first",
        "is_map",
        "key",
        "key_line",
        "merged",
        "muted",
        "part",
        "size",
        "slot",
        "unwalked",
        "value",
    )

    def __init__(self, value: Any, is_map: bool, part: str | int | None, muted: bool,
                 unwalked: bool, anchor: _Anchor | None) -> None:
        self.value, self.is_map, self.part = value, is_map, part
        self.muted, self.unwalked, self.anchor = muted, unwalked, anchor
        self.merged: dict[str, Any] | None = None
        self.first: dict[str, int] = {}
        self.key: str | int = 0  # a mapping's current key; a sequence's next index
        self.slot, self.key_line, self.expect_key, self.size = _NORMAL, 0, True, 0


class _Reader:
    """YAML events → plain dicts, lists and scalars in one pass, with the document's checks.

    What composing a node graph, walking it and building from it did in three passes over
    ~100,000 nodes per 10,000 checks (about three quarters of a load), done as the parser
    emits events: duplicate keys and depth as written (an alias is not followed, so it is
    reported at its own line), the size every alias expands to (counted at each use, so an
    alias bomb is refused before anything depends on it; the data shares the anchor's object
    at each use, so building it costs no more than the text), tags and scalar values. Build
    problems are kept as (line, message) and named by key once the line map exists.
    """

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.scalars = yaml.constructor.SafeConstructor()
        self.anchors: dict[str, _Anchor] = {}
        self.bad: list[tuple[int, str]] = []
        self.deep = False
        """A node deeper than MAX_DEPTH was reported: nothing more is checked as written."""
        self.recursive = 0
        """The line of an alias used inside its own anchor, or 0."""
        self.stack: list[_Frame] = []
        self.tags: dict[str, str] = {}

    def read(self, parser: Any) -> tuple[Any, int, int]:
        """(data, line of the root node or 0 for an empty stream, expanded size)."""
        get = parser.get_event
        stack = self.stack
        root: Any = None
        root_line = root_size = 0
        scalar_event, alias_event = yaml.ScalarEvent, yaml.AliasEvent
        map_start, seq_start = yaml.MappingStartEvent, yaml.SequenceStartEvent
        map_end, seq_end = yaml.MappingEndEvent, yaml.SequenceEndEvent
        document_end, stream_end = yaml.DocumentEndEvent, yaml.StreamEndEvent
        resolve, tags = parser.resolve, self.tags
        documents = 0
        while True:
            event = get()
            kind = type(event)
            if kind is scalar_event:
                text = event.value
                tag = event.tag
                top = stack[-1] if stack else None
                if top is not None and top.is_map and top.expect_key:
                    merge = (tag == _MERGE or ((tag is None or tag == "!") and
                             event.implicit[0] and text == "<<"))
                    line = event.start_mark.line + 1
                    if event.anchor is not None:
                        entry = self._anchor(event)
                        entry.scalar, entry.done, entry.text, entry.line = True, True, text, line
                        entry.tag = _MERGE if merge else self._tag(event, resolve)
                    self._key(top, text, merge, line, 1)
                    continue
                if tag is None or tag == "!":
                    if event.implicit[0]:
                        tag = tags.get(text)
                        if tag is None:
                            tag = tags[text] = resolve(yaml.ScalarNode, text, event.implicit)
                    else:
                        tag = _STR
                line = event.start_mark.line + 1
                if top is None:
                    root_line = line
                elif not self.deep and len(stack) > MAX_DEPTH:
                    self._too_deep(top, line)
                if tag == _STR and text.isascii():
                    value: Any = text
                elif tag == _INT and text.isdigit() and len(text) <= MAX_INT_DIGITS and (
                        text[0] != "0" or len(text) == 1):
                    value = int(text)
                else:
                    value = self._scalar(tag, text, line, top is not None and self._muted(top))
                if event.anchor is not None:
                    entry = self._anchor(event)
                    entry.scalar = entry.done = entry.built = True
                    entry.value, entry.tag, entry.text, entry.line = value, tag, text, line
                if top is None:
                    root, root_size = value, 1
                else:
                    self._attach(top, value, 1)
            elif kind is map_start or kind is seq_start:
                is_map = kind is map_start
                tag = event.tag
                if tag is None or tag == "!":
                    tag = _MAP if is_map else _SEQ
                line = event.start_mark.line + 1
                value = {} if is_map else []
                top = stack[-1] if stack else None
                if top is None:
                    root_line, part, muted, unwalked = line, None, False, False
                elif top.is_map and top.expect_key:  # a key that is a list or mapping
                    if not self._muted(top) and not top.unwalked and not self.deep:
                        self.doc.report(self._path(top), "a key must be a plain value, not a "
                                        "list or mapping", line=line)
                    part, muted, unwalked = None, True, True
                else:
                    muted = self._muted(top)
                    unwalked = top.unwalked or (top.is_map and top.slot == _DUPLICATE)
                    part = ("<<" if top.slot == _MERGING else top.key) if top.is_map \
                        else top.key
                    if not self.deep and not muted and not unwalked and len(stack) > MAX_DEPTH:
                        self._too_deep(top, line)
                anchor = None
                if event.anchor is not None:
                    anchor = self._anchor(event)
                    anchor.value = value
                if tag != (_MAP if is_map else _SEQ) and not muted:
                    self.bad.append((line, f"unsupported YAML tag {tag}"))
                stack.append(_Frame(value, is_map, part, muted, unwalked, anchor))
            elif kind is map_end or kind is seq_end:
                frame = stack.pop()
                if frame.merged:
                    for key, item in frame.merged.items():
                        frame.value.setdefault(key, item)
                size = min(1 + frame.size, MAX_NODES + 1)
                if frame.anchor is not None:
                    frame.anchor.size, frame.anchor.done = size, True
                if stack:
                    self._attach(stack[-1], frame.value, size)
                else:
                    root, root_size = frame.value, size
            elif kind is alias_event:
                found = self.anchors.get(event.anchor)
                if found is None:
                    raise yaml.composer.ComposerError(None, None, "found undefined alias",
                                                      event.start_mark)
                entry = found
                if not entry.done:
                    self.recursive = self.recursive or event.start_mark.line + 1
                top = stack[-1] if stack else None
                if top is None:
                    root, root_size, root_line = entry.value, entry.size, \
                        event.start_mark.line + 1
                elif top.is_map and top.expect_key:
                    if entry.scalar:
                        self._key(top, entry.text, entry.tag == _MERGE, entry.line, 1)
                    else:
                        if not self._muted(top) and not top.unwalked and not self.deep:
                            self.doc.report(self._path(top), "a key must be a plain value, "
                                            "not a list or mapping", line=entry.line)
                        top.size += entry.size
                        top.slot, top.expect_key = _MUTED, False
                else:
                    if entry.scalar and not entry.built:  # written as a key, used as a value
                        entry.built = True
                        entry.value = self._scalar(entry.tag, entry.text, entry.line,
                                                   self._muted(top))
                    self._attach(top, entry.value, entry.size)
            elif kind is document_end:
                documents += 1
            elif kind is stream_end or event is None:
                break
            elif documents and kind is yaml.DocumentStartEvent:
                raise yaml.composer.ComposerError(
                    "expected a single document in the stream", None,
                    "but found another document", event.start_mark)
        return root, root_line, root_size if self.recursive == 0 else _RECURSIVE

    # ---- helpers --------------------------------------------------------------------

    def _anchor(self, event: Any) -> _Anchor:
        known = self.anchors.get(event.anchor)
        if known is not None:
            raise yaml.composer.ComposerError("found duplicate anchor; first occurrence", None,
                                              "second occurrence", event.start_mark)
        entry = self.anchors[event.anchor] = _Anchor(event.start_mark.line + 1)
        return entry

    @staticmethod
    def _tag(event: Any, resolve: Any) -> str:
        tag = event.tag
        if tag is None or tag == "!":
            return str(resolve(yaml.ScalarNode, event.value, event.implicit))
        return str(tag)

    @staticmethod
    def _muted(top: _Frame) -> bool:
        return top.muted or (top.is_map and top.slot == _MUTED)

    def _path(self, top: _Frame) -> KeyPath:
        """The path of the open container `top` (the last frame)."""
        return tuple(f.part for f in self.stack[1:])  # type: ignore[misc]

    def _too_deep(self, top: _Frame, line: int) -> None:
        if self._muted(top) or top.unwalked or (top.is_map and top.slot == _DUPLICATE):
            return
        part = ("<<" if top.slot == _MERGING else top.key) if top.is_map else top.key
        self.doc.report((*self._path(top), part), f"nested deeper than {MAX_DEPTH} levels",
                        line=line)
        self.deep = True

    def _key(self, top: _Frame, key: str, merge: bool, line: int, size: int) -> None:
        top.size += size
        top.expect_key = False
        top.key_line = line
        if merge:
            top.slot = _MERGING
            return
        first = top.first.get(key)
        if first is not None:
            if not top.muted and not top.unwalked and not self.deep:
                self.doc.report((*self._path(top), key),
                                f"duplicate key (first at line {first})", line=line)
            top.slot = _DUPLICATE
        else:
            top.first[key] = line
            top.slot = _NORMAL
        top.key = key

    def _attach(self, top: _Frame, value: Any, size: int) -> None:
        top.size += size
        if not top.is_map:
            top.value.append(value)
            top.key += 1  # type: ignore[operator]
            return
        if top.expect_key:  # a list or mapping as a key: ignored with its value
            top.slot, top.expect_key = _MUTED, False
            return
        slot = top.slot
        top.expect_key, top.slot = True, _NORMAL
        if slot == _NORMAL or slot == _DUPLICATE:
            top.value.setdefault(top.key, value)
        elif slot == _MERGING:
            if top.merged is None:
                top.merged = {}
            for source in (value if isinstance(value, list) else [value]):
                if not isinstance(source, dict):
                    if not top.muted:
                        self.bad.append((top.key_line, "a merge key (<<) needs a mapping or a "
                                                       "list of them"))
                    continue
                for key, item in source.items():
                    top.merged.setdefault(key, item)

    def _scalar(self, tag: str, text: str, line: int, muted: bool) -> Any:
        def bad(at: int, message: str) -> None:
            if not muted:
                self.bad.append((at, message))

        if tag not in _SCALARS:
            bad(line, f"unsupported YAML tag {tag}")
            return text
        if tag == _STR:
            if not text.isascii():
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    bad(line, "text is not valid Unicode (a lone surrogate)")
                    return ""
            return text
        if tag == _NULL:
            return None
        if tag == _BOOL:
            bool_value = self.scalars.bool_values.get(text.lower())
            if bool_value is not None:
                return bool_value
        if tag == _INT and sum(c.isdigit() for c in text) > MAX_INT_DIGITS:
            bad(line, f"number too large ({len(text)} digits)")
            return 0
        try:
            value = self.scalars.construct_object(yaml.ScalarNode(tag, text))
        except (ValueError, OverflowError, yaml.YAMLError) as exc:
            bad(line, f"invalid value {text[:40]!r}: {exc}"[:200])
            return None
        if isinstance(value, float) and not math.isfinite(value):
            bad(line, f"number out of range ({text[:40]})")
            return 0.0
        return value
