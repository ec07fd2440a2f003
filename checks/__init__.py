"""Every check type, in one literal map: adding a type is a module plus one line here."""

from __future__ import annotations

from typing import Annotated, Union, get_args

from pydantic import Field

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
from checks.passive import PassiveCheck
from checks.postgres import PostgresCheck
from checks.prometheus import PrometheusCheck
from checks.snmp import SnmpCheck
from checks.tcp import TcpCheck
from checks.tls import TlsCheck

AnyCheck = Annotated[
    Union[  # noqa: UP007 - one member a line reads as the registry
        HttpCheck,
        TcpCheck,
        TlsCheck,
        PostgresCheck,
        MysqlCheck,
        OracleCheck,
        MssqlCheck,
        CommandCheck,
        PrometheusCheck,
        DnsCheck,
        IcmpCheck,
        Hl7Check,
        DicomCheck,
        HeartbeatCheck,
        SnmpCheck,
        PassiveCheck,
    ],
    Field(discriminator="type"),
]
"""Any check configuration, told apart by its `type` key (what `Config.checks` holds)."""

CHECK_TYPES: dict[str, type[CheckBase]] = {
    get_args(cls.model_fields["type"].annotation)[0]: cls  # Literal["http"] -> "http"
    for cls in get_args(get_args(AnyCheck)[0])
}
"""Type name -> model, derived from the union above, in its order."""
