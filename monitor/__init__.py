"""hismon: health checks and incident alerting for hospital information systems."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("hismon")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0+source"
