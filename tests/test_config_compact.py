"""monitor/config/compact.py: equal parts of checks are one object, the values unchanged."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from monitor.config import model
from monitor.config.loader import load_config, load_config_text
from monitor.config.model import Config

ROOT = Path(__file__).resolve().parent.parent

ESTATE = """\
systems:
  - {id: his, name: HIS}
  - {id: lis, name: LIS}
checks:
  - {id: web1, system: his, type: http, url: "http://127.0.0.1:1/health"}
  - {id: web2, system: his, type: http, url: "http://127.0.0.1:2/health"}
  - id: web3
    system: lis
    type: http
    url: "http://127.0.0.1:3/health"
    tls: {verify: false}
    expect: {status: [200, 301], json: {ok: 1, up: 1.0, live: true, load: 0.0}}
  - id: web4
    system: lis
    type: http
    url: "http://127.0.0.1:4/health"
    tls: {verify: false}
    expect: {status: [200, 301], json: {ok: 1.0, up: 1, live: 1, load: -0.0}}
  - id: web5
    system: lis
    type: http
    url: "http://127.0.0.1:5/health"
    tls: {verify: false}
    expect: {status: [200, 301], json: {ok: 1, up: 1.0, live: true, load: 0.0}}
  - {id: db1, system: his, type: tcp, host: 10.0.0.1, port: 5432, interval: 1m}
  - {id: db2, system: lis, type: tcp, host: 10.0.0.1, port: 5432, interval: 60s}
  - {id: db3, system: lis, type: tcp, host: 10.0.0.2, port: 5433, timeout: 2s,
     latency: {warn: 500ms, crit: 1s}}
  - {id: db4, system: lis, type: tcp, host: 10.0.0.2, port: 5433, timeout: 2s,
     latency: {warn: 500ms, crit: 1000ms}}
"""


def _unshared(monkeypatch: pytest.MonkeyPatch, load: object) -> Config:
    with monkeypatch.context() as patch:
        patch.setattr(model, "share_equal_parts", lambda models: None)
        return load()  # type: ignore[operator, no-any-return]


def _same_values(plain: Config, shared: Config) -> None:
    assert len(plain.checks) == len(shared.checks)
    for a, b in zip(plain.checks, shared.checks, strict=True):
        assert type(a) is type(b)
        assert a == b
        assert repr(a) == repr(b)  # 1 and 1.0, 0.0 and -0.0 written as before
        assert a.model_dump() == b.model_dump()
        assert a.model_dump_json() == b.model_dump_json()
        assert a.model_fields_set == b.model_fields_set
        assert a.public_config() == b.public_config()
        assert a.secrets() == b.secrets()


def test_equal_parts_are_one_object_and_every_value_stays(
        monkeypatch: pytest.MonkeyPatch) -> None:
    plain = _unshared(monkeypatch, lambda: load_config_text(ESTATE, "h.yaml", {}))
    config = load_config_text(ESTATE, "h.yaml", {})
    _same_values(plain, config)
    web1, web2, web3, web4, web5 = (config.check(f"web{i}") for i in range(1, 6))
    db1, db2, db3, db4 = (config.check(f"db{i}") for i in range(1, 5))
    # default blocks, strings, numbers and key sets given: one object each
    assert web1.tls is web2.tls and web1.expect is web2.expect  # type: ignore[attr-defined]
    assert web1.system is web2.system is db1.system
    assert web1.type is web2.type and db1.type is db2.type
    assert db1.host is db2.host and db1.interval is db2.interval  # type: ignore[attr-defined]
    assert web1.__pydantic_fields_set__ is web2.__pydantic_fields_set__
    assert db3.latency is db4.latency  # type: ignore[attr-defined]  # 1s and 1000ms: the same float
    # equal blocks given in the config are shared too; different ones never
    assert web3.tls is web4.tls is web5.tls  # type: ignore[attr-defined]
    assert web3.tls is not web1.tls  # type: ignore[attr-defined]
    assert web3.expect is web5.expect  # type: ignore[attr-defined]
    # 1 / 1.0 / true and 0.0 / -0.0 are equal numbers but different values
    assert web3.expect is not web4.expect  # type: ignore[attr-defined]
    assert repr(web4.expect.json_fields) == (  # type: ignore[attr-defined]
        "{'ok': 1.0, 'up': 1, 'live': 1, 'load': -0.0}")
    assert web1.__pydantic_fields_set__ is not web3.__pydantic_fields_set__
    # each check's own caches stay its own
    assert web1.__pydantic_private__ is not web2.__pydantic_private__
    web1._fast = None  # type: ignore[attr-defined]
    assert web2._fast is False  # type: ignore[attr-defined]


def test_the_example_config_keeps_every_value(monkeypatch: pytest.MonkeyPatch) -> None:
    path = ROOT / "config.example.yaml"
    env = {"HISMON_TOKEN": "t", "WEBHOOK_SECRET": "s", "SMTP_PASSWORD": "p"}
    plain = _unshared(monkeypatch, lambda: load_config(path, env=copy.copy(env)))
    config = load_config(path, env=copy.copy(env))
    assert len(config.checks) > 10
    _same_values(plain, config)
