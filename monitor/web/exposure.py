"""Whether the HTTP side would be open to the network with no token (SPEC §10: safe defaults).

`hismon run` refuses such a config unless `--insecure` is given: on a hospital network,
pages and the API name systems, people and incidents, and a heartbeat can be faked.
"""

from __future__ import annotations

import ipaddress

from monitor.config.model import Server


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and `localhost`; a wildcard (0.0.0.0, ::) or any name is not."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def insecure_listen(server: Server) -> str | None:
    """The one line that says why starting is refused, or None when it is safe."""
    host, _ = server.host_port
    if is_loopback(host) or any(server.api_tokens):
        return None
    return (f"refusing to listen on {server.listen} without server.api_tokens: pages and "
            "API would be open to the network with no token; set server.api_tokens, listen "
            "on 127.0.0.1, or pass --insecure")
