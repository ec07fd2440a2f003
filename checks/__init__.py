"""Every check type, in one literal map: adding a type is a module plus one line here."""

from __future__ import annotations

from checks.base import CheckBase
from checks.command import CommandCheck
from checks.dicom import DicomCheck
from checks.dns import DnsCheck
from checks.heartbeat import HeartbeatCheck
from checks.hl7 import Hl7Check
from checks.http import HttpCheck
from checks.icmp import IcmpCheck
from checks.mssql import MssqlCheck
from checks.mysql import MysqlCheck
from checks.oracle import OracleCheck
from checks.postgres import PostgresCheck
from checks.prometheus import PrometheusCheck
from checks.tcp import TcpCheck
from checks.tls import TlsCheck

CHECK_TYPES: dict[str, type[CheckBase]] = {
    "http": HttpCheck,
    "tcp": TcpCheck,
    "tls": TlsCheck,
    "postgres": PostgresCheck,
    "mysql": MysqlCheck,
    "oracle": OracleCheck,
    "mssql": MssqlCheck,
    "command": CommandCheck,
    "prometheus": PrometheusCheck,
    "dns": DnsCheck,
    "icmp": IcmpCheck,
    "hl7": Hl7Check,
    "dicom": DicomCheck,
    "heartbeat": HeartbeatCheck,
}
