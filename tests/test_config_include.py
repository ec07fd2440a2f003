"""Config at hospital scale (SPEC §14): included files, hosts, check templates, apply rules.

Every problem names its own file and its index within that file; duplicates name both places.
"""

from __future__ import annotations

import asyncio
import textwrap
from pathlib import Path

import httpx
import pytest

from monitor.config.loader import ConfigError, load_config
from tests.conftest import HttpTarget, free_port

MAIN = """\
site: {name: T, timezone: UTC, language: en}
include: [conf.d/*.yaml]
systems:
  - {id: his, name: HIS}
checks:
  - {id: web, system: his, type: tcp, host: 127.0.0.1, port: 80}
"""


def write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root / "main.yaml"


def problems(root: Path, files: dict[str, str]) -> list[str]:
    main = write(root, files)
    with pytest.raises(ConfigError) as caught:
        load_config(main, env={})
    return [str(p).replace(f"{root}/", "") for p in caught.value.problems]


def test_globs_are_read_in_sorted_order_and_nested_includes_follow(tmp_path: Path) -> None:
    main = write(tmp_path, {
        "main.yaml": MAIN,
        "conf.d/b.yaml": "checks:\n  - {id: b, system: his, type: tcp, host: 127.0.0.1, port: 2}\n",
        "conf.d/a.yaml": "include: [more/x.yaml]\n"
                         "checks:\n  - {id: a, system: his, type: tcp, host: 127.0.0.1, port: 1}\n",
        "conf.d/more/x.yaml": "systems:\n  - {id: lis, name: LIS}\n",
    })
    config = load_config(main, env={})
    assert [c.id for c in config.checks] == ["web", "a", "b"]
    assert [s.id for s in config.systems] == ["his", "lis"]
    assert config.files == [str(main), *(str(tmp_path / f) for f in (
        "conf.d/a.yaml", "conf.d/more/x.yaml", "conf.d/b.yaml"))]
    assert str(tmp_path / "conf.d") in config.watch_paths


def test_a_problem_names_its_own_file_line_and_index(tmp_path: Path) -> None:
    found = problems(tmp_path, {
        "main.yaml": MAIN,
        "conf.d/pacs.yaml": """\
            systems:
              - {id: pacs, name: PACS}
            checks:
              - {id: p1, system: pacs, type: tcp, host: 127.0.0.1, port: 104}
              - id: p2
                system: pacs
                type: tcp
                host: 127.0.0.1
                port: 99999
            """,
    })
    assert found == ["conf.d/pacs.yaml:9: checks[1].port: Input should be less than or equal "
                     "to 65535"], found


def test_an_id_defined_in_two_files_names_both_places(tmp_path: Path) -> None:
    found = problems(tmp_path, {
        "main.yaml": MAIN,
        "conf.d/a.yaml": "checks:\n  - {id: x, system: his, type: tcp, host: 127.0.0.1, port: 1}\n"
                         "  - {id: web, system: his, type: tcp, host: 127.0.0.1, port: 2}\n",
    })
    assert found == ['conf.d/a.yaml:3: checks[1].id: duplicate id "web" (also checks[0]), '
                     "first at main.yaml:6"], found


def test_include_cycles_missing_files_and_main_only_keys(tmp_path: Path) -> None:
    found = problems(tmp_path, {
        "main.yaml": MAIN.replace("[conf.d/*.yaml]", "[conf.d/*.yaml, missing.yaml, none/*.yaml]"),
        "conf.d/a.yaml": "include: [../main.yaml]\nserver: {listen: '127.0.0.1:1'}\n",
    })
    assert "conf.d/a.yaml:1: include[0]: include cycle: main.yaml -> conf.d/a.yaml -> " \
        "main.yaml" in found, found
    assert any('no such file "missing.yaml"' in p for p in found)
    assert any(p.startswith("conf.d/a.yaml:2: server: allowed only in the main file")
               for p in found), found


def test_a_glob_that_matches_nothing_is_only_a_note(tmp_path: Path) -> None:
    main = write(tmp_path, {"main.yaml": MAIN})
    config = load_config(main, env={})
    assert [c.id for c in config.checks] == ["web"]
    assert config.notes == [f'{main}:2: include[0]: "conf.d/*.yaml" matched no file']


def test_a_role_in_two_files_is_an_error(tmp_path: Path) -> None:
    found = problems(tmp_path, {
        "main.yaml": MAIN + "notifiers:\n  - {id: n, type: webhook, url: 'http://127.0.0.1:9/'}\n"
                            "roles:\n  it: [n]\n",
        "conf.d/a.yaml": "roles:\n  it: [n]\n  other: [n]\n",
    })
    assert found == ["conf.d/a.yaml:2: roles.it: defined twice (first at main.yaml:10)"], found


SERVERS = """\
hosts:
  - {id: app1, address: 127.0.0.11, system: his, tags: [linux, app]}
  - {id: db1, address: 127.0.0.21, name: Database one, system: his, tags: [linux, db]}
  - {id: win1, address: 127.0.0.31, system: his, tags: [windows]}
check_templates:
  - {id: ping, type: icmp, host: "{host.address}", name: "{host.name} ping"}
  - id: ssh
    type: tcp
    host: "{host.address}"
    port: 22
apply:
  - {template: ping, to: {tags: []}}
  - {template: ssh, to: {tags: [linux]}, interval: 60s}
  - {template: ssh, to: {tags: [linux], hosts: [db1]}, port: 2222}
"""


def test_apply_rules_make_checks_from_templates(tmp_path: Path) -> None:
    main = write(tmp_path, {"main.yaml": MAIN, "conf.d/servers.yaml": SERVERS.replace(
        "  - {template: ssh, to: {tags: [linux], hosts: [db1]}, port: 2222}\n", "")})
    config = load_config(main, env={})
    ids = [c.id for c in config.checks]
    assert ids == ["web", "app1-ping", "db1-ping", "win1-ping", "app1-ssh", "db1-ssh"]
    ssh = config.check("db1-ssh")
    assert (ssh.host, ssh.port, ssh.interval, ssh.system) == ("127.0.0.21", 22, 60.0, "his")
    assert config.check("db1-ping").name == "Database one ping"
    assert config.check("app1-ping").name == "app1 ping"  # no name: the id


def test_two_rules_making_the_same_check_name_both(tmp_path: Path) -> None:
    found = problems(tmp_path, {"main.yaml": MAIN, "conf.d/servers.yaml": SERVERS})
    assert found == ['conf.d/servers.yaml:14: apply[2]: makes check "db1-ssh", also made by '
                     "conf.d/servers.yaml:13 apply[1]"], found


def test_a_bad_generated_check_is_reported_at_the_template_and_names_its_id(
        tmp_path: Path) -> None:
    found = problems(tmp_path, {"main.yaml": MAIN, "conf.d/servers.yaml": SERVERS.replace(
        "    port: 22\n", "    port: 22\n    colour: red\n").replace(
        "  - {template: ssh, to: {tags: [linux], hosts: [db1]}, port: 2222}\n",
        "  - {template: ping, to: {hosts: [nope]}}\n")})
    assert "conf.d/servers.yaml:11: checks[app1-ssh].colour: unknown key" in found, found
    assert "conf.d/servers.yaml:11: checks[db1-ssh].colour: unknown key" in found, found
    assert 'conf.d/servers.yaml:15: apply[2].to.hosts[0]: unknown host "nope"' in found, found


def test_use_starts_a_written_check_from_a_template(tmp_path: Path) -> None:
    main = write(tmp_path, {"main.yaml": MAIN + "  - {id: gw, use: ssh, system: his, "
                                                "host: 127.0.0.99, port: 2022}\n",
                            "conf.d/servers.yaml": SERVERS.split("apply:")[0]})
    config = load_config(main, env={})
    gw = config.check("gw")
    assert (gw.type, gw.host, gw.port) == ("tcp", "127.0.0.99", 2022)
    found = problems(tmp_path, {"main.yaml": MAIN + "  - {id: gw, use: ssh, system: his}\n"
                                                    "  - {id: g2, use: nothing, system: his}\n"})
    assert any(p.startswith("main.yaml:7: checks[1].host: {host.…} placeholders") for p in found)
    assert any(p.startswith('main.yaml:8: checks[2].use: unknown check template "nothing"')
               for p in found), found


@pytest.mark.slow
async def test_a_changed_included_file_reloads_the_daemon(http_target: HttpTarget,
                                                          daemon_factory) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    main = (f"site: {{name: T, timezone: UTC, language: en}}\n"
            f'server: {{listen: "127.0.0.1:{port}", api_tokens: [t]}}\n'
            'state: {url: "sqlite:///./state.db"}\n'
            "include: [conf.d/*.yaml]\n"
            "systems:\n  - {id: his, name: HIS}\n"
            f"checks:\n  - {{id: web, system: his, type: http, url: '{http_target.url}'}}\n")
    daemon = await daemon_factory(main, port)
    conf_d = daemon.config_path.parent / "conf.d"
    conf_d.mkdir()
    async with httpx.AsyncClient(base_url=daemon.url, trust_env=False) as api:
        async def ids() -> set[str]:
            return {c["id"] for c in (await api.get("/api/v1/checks")).json()["checks"]}

        async def until(expected: set[str]) -> None:
            for _ in range(100):  # 20 s at most
                if await ids() == expected:
                    return
                await asyncio.sleep(0.2)
            assert await ids() == expected

        extra = conf_d / "extra.yaml"  # a new file matching the glob is picked up
        extra.write_text(f"checks:\n  - {{id: port, system: his, type: tcp, host: 127.0.0.1, "
                         f"port: {http_target.port}}}\n")
        await until({"web", "port"})
        extra.write_text(f"checks:\n  - {{id: port2, system: his, type: tcp, host: 127.0.0.1, "
                         f"port: {http_target.port}}}\n")
        await until({"web", "port2"})
    assert "config_reloaded" in daemon.log()
    assert daemon.terminate() == 0


def test_odd_host_tags_are_a_problem_not_a_crash(tmp_path: Path) -> None:
    """Found by the fuzzer: a list inside a host's tags crashed the rule matching."""
    found = problems(tmp_path, {"main.yaml": MAIN, "conf.d/servers.yaml": SERVERS.replace(
        "tags: [windows]", "tags: [[windows]]")})
    assert any(p.startswith("conf.d/servers.yaml:4: hosts[2].tags[0]:") for p in found), found
    assert not any("could not check" in p for p in found), found
