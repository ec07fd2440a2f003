"""What several command modules share: loading a config for a command, calling the API.

Its own module so `cli` (which registers every command) and the command modules it
registers never import each other.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def load_for_command(path: str) -> Any:
    from monitor.config.loader import ConfigError, load_config

    try:
        return load_config(path)
    except ConfigError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) in {path}", file=sys.stderr)
        raise SystemExit(2) from None


def api_client(args: argparse.Namespace) -> Any:
    import httpx

    token = args.token or os.environ.get("HISMON_API_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(base_url=args.url, headers=headers, timeout=10, trust_env=False)


def call_api(args: argparse.Namespace, method: str, path: str,
          body: dict[str, Any] | None = None) -> tuple[int, Any]:
    import httpx

    problem = not_unicode({"path": path, **(body or {})})
    if problem:
        print(f"hismon: {problem} is not valid UTF-8 (check the terminal's encoding); "
              "nothing was sent", file=sys.stderr)
        return 0, None
    try:
        with api_client(args) as client:
            response = client.request(method, path, json=body)
    except httpx.HTTPError as exc:
        print(f"cannot reach hismon at {args.url}: {exc}", file=sys.stderr)
        return 0, None
    try:
        data = response.json()
    except ValueError:
        data = {"error": response.text[:200]}
    return response.status_code, data


def not_unicode(values: dict[str, Any]) -> str | None:
    """The first argument that is not text: a non-UTF-8 byte arrives as a lone surrogate."""
    for name, value in values.items():
        for text in value if isinstance(value, list) else [value]:
            if isinstance(text, str):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError:
                    return "the incident id" if name == "path" else f"--{name}"
    return None


def refused(status: int, data: Any) -> int:
    if status:
        print(f"refused ({status}): {(data or {}).get('error', data)}", file=sys.stderr)
    return 1
