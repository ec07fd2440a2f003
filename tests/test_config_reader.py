"""The one-pass YAML reader (monitor/config/document.py): what the composed node graph gave.

The reader builds the data from the parser's events, checking duplicates, depth and the
expanded size as it goes; these pin the YAML features whose handling moved with it
(anchors and aliases as keys and values, merges, tags, documents) and the hostile shape the
old three-pass reader hung on (an anchor that contains its own alias).
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from monitor.config.document import read_text


@contextmanager
def bounded(seconds: int = 10) -> Iterator[None]:
    def expired(_signum: int, _frame: Any) -> None:
        raise AssertionError(f"read_text did not return within {seconds}s")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def problems(text: str) -> list[str]:
    with bounded():
        return [str(p) for p in read_text(text, "h.yaml").problems]


def data(text: str) -> Any:
    with bounded():
        doc = read_text(text, "h.yaml")
    assert doc.problems == []
    return doc.data


@pytest.mark.parametrize("text", ["a: &x [*x]\n", "a: &x {b: *x}\n", "a:\n  - &x {b: [1, *x]}\n"])
def test_an_anchor_that_contains_itself_is_refused_at_the_alias(text: str) -> None:
    found = problems(text)
    assert len(found) == 1 and found[0].startswith("h.yaml:") and "(yaml)" in found[0]
    assert "contains itself" in found[0]


def test_aliases_share_their_anchor_and_keys_keep_their_text() -> None:
    got = data("a: &x {b: [1, 2]}\nc: *x\n&k 10: one\nd: *k\ne: [&n 007, *n]\n")
    assert got["a"] is got["c"] and got["a"] == {"b": [1, 2]}
    assert got["10"] == "one" and got["d"] == 10  # a key stays text; used as a value, a number
    assert got["e"] == [7, 7]  # 007 is YAML 1.1 octal, as PyYAML reads it


def test_merges_keep_explicit_keys_first_and_merged_keys_after() -> None:
    got = data("a: &a {x: 1, y: 1}\nb: &b {y: 2, z: 2}\nc: {<<: [*a, *b], x: 9}\n")
    assert got["c"] == {"x": 9, "y": 1, "z": 2} and list(got["c"]) == ["x", "y", "z"]
    assert problems("a: [1]\n<<: [1]\n") == [
        "h.yaml:2: <<[0]: a merge key (<<) needs a mapping or a list of them"]


def test_problems_name_file_line_and_key() -> None:
    assert problems("a: 1\nb:\n  c: 1\n  c: 2\n") == [
        "h.yaml:4: b.c: duplicate key (first at line 3)"]
    assert problems("a:\n  b: !!binary aGk=\n") == [
        "h.yaml:2: a.b: unsupported YAML tag tag:yaml.org,2002:binary"]
    assert problems("a: 1\nb: *nowhere\n") == ["h.yaml:2: (yaml): found undefined alias"]
    assert problems("a: &x 1\nb: &x 2\n") == ["h.yaml:2: (yaml): second occurrence"]
    assert problems("a: 1\n---\nb: 2\n") == ["h.yaml:2: (yaml): but found another document"]
    assert problems("? [a]\n: 1\n") == [
        "h.yaml:1: (top level): a key must be a plain value, not a list or mapping"]
    assert problems("- 1\n") == ["h.yaml:1: (top level): the config must be a YAML mapping"]
    deep = "a: " + "[" * 70 + "]" * 70 + "\n"
    assert problems(deep) == ["h.yaml:1: a" + "[0]" * 64 + ": nested deeper than 64 levels"]


def test_an_empty_file_is_an_empty_mapping() -> None:
    assert data("") == {} and data("# nothing yet\n") == {}


def test_an_environment_reference_written_as_an_escape_is_still_replaced() -> None:
    """Files with no `${` in their text skip the walk for references; an escaped `$` does
    not appear as `${` in the text, and must not be skipped."""
    from monitor.config.loader import load_config_text

    text = 'site: {name: "\\u0024{SITE_NAME}", timezone: UTC}\n'
    assert load_config_text(text, "h.yaml", {"SITE_NAME": "North"}).site.name == "North"
    assert load_config_text("site: {name: x}\n", "h.yaml", {}).site.name == "x"
