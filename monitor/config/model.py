"""The configuration model: every key of SPEC §2, validated by pydantic, unknown keys refused.

Check and notifier types come from the registries in `checks/` and `notifiers/`, so the
model never needs editing when a type is added.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Sequence
from typing import Annotated, Any, Literal, Protocol, TypeVar, get_args

from pydantic import (
    Field,
    PositiveInt,
    PrivateAttr,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from checks import AnyCheck
from checks.base import CheckBase
from monitor.config.compact import share_equal_parts
from monitor.config.i18n import Localized
from monitor.core.durations import Duration
from monitor.core.strict import Strict
from monitor.core.types import MessageKind
from monitor.people.model import Person, Schedule
from notifiers import AnyNotifier
from notifiers.base import NotifierBase


class _Identified(Protocol):
    @property
    def id(self) -> str: ...


_T = TypeVar("_T", bound=_Identified)

Language = Literal["zh", "en"]
Id = Annotated[str, Field(min_length=1, pattern=r"^[A-Za-z0-9_.:-]+$")]


class Campus(Localized, Strict):
    """A site of the hospital: `{id, name}`, the name a string or `{zh, en}` (SPEC §7)."""

    LOCALIZED = ("name",)
    id: str = Field(min_length=1)
    """Any text, as before `{id, name}` existed (`北院` is a valid campus id)."""
    name: str

    @model_validator(mode="before")
    @classmethod
    def _plain_id(cls, value: Any) -> Any:
        """`campuses: [main, north]` still works: a plain string is both id and name."""
        if isinstance(value, str):
            return {"id": value, "name": value}
        if not isinstance(value, dict):
            raise PydanticCustomError("string_type", "Input should be a valid string")
        return value


class Site(Strict):
    name: str = "hismon"
    timezone: str = "UTC"
    language: Language = "zh"
    campuses: list[Campus] = Field(default_factory=list)
    it_contact: str | None = None
    """How clinical staff and vendors reach IT (phone, extension); shown in messages."""

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f'unknown time zone "{value}"') from None
        return value

    @property
    def tz(self) -> dt.tzinfo:
        return zoneinfo.ZoneInfo(self.timezone)

    @property
    def campus_ids(self) -> list[str]:
        return [c.id for c in self.campuses]


class Server(Strict):
    listen: str = Field(default="127.0.0.1:9464", pattern=r"^(\[[0-9a-fA-F:]+\]|[^:\s]+):\d{1,5}$")
    api_tokens: list[str] = Field(default_factory=list)
    public_url: str | None = Field(default=None, pattern=r"^https?://[^\s/]+")
    """Where people reach hismon; only then do messages carry links (SPEC §13.2)."""
    link_ttl: Duration = 86400.0
    """How long an acknowledgement link stays valid (it also ends when the incident does)."""
    header_timeout: Annotated[Duration, Field(ge=1, le=300)] = 10.0
    """A request must arrive whole within this time, or its connection is closed."""
    max_connections: int | None = Field(default=None, ge=8, le=100_000)
    """HTTP connections at once; default and ceiling: what the descriptor limit leaves."""

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)

    @property
    def base_url(self) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        return f"http://{self.listen}"


class StateConfig(Strict):
    url: str = Field(default="sqlite:///./hismon-state.db", pattern=r"^(sqlite|postgresql)://")


class ClusterConfig(Strict):
    """`cluster: {shards: auto, replicas: N}` (SPEC 9): checks follow the live members."""

    shards: Literal["auto"] = "auto"
    replicas: int = Field(default=1, ge=1, le=16)
    """How many live members probe each check (at least its `vantage_quorum`)."""
    member_id: str | None = Field(default=None, min_length=1, max_length=200)
    """Stable across restarts, so a restart does not move checks; default HOSTNAME:PORT."""


class Flapping(Strict):
    """Nagios method: percent state change over the last 21 results, with hysteresis."""

    high: float = Field(default=20.0, gt=0, le=100)
    low: float = Field(default=5.0, ge=0, le=100)
    max_hold: Duration = 600.0
    """A flapping outage is held back at most this long from its start, then escalated."""

    @model_validator(mode="after")
    def _hysteresis(self) -> Flapping:
        if self.low >= self.high:
            raise ValueError("low must be below high")
        return self


class Defaults(Strict):
    interval: Duration = 30.0
    timeout: Duration = 5.0
    retry_interval: Duration = 5.0
    confirm: PositiveInt = 3
    recover: PositiveInt = 2
    flapping: Flapping = Field(default_factory=Flapping)
    dependency_settle: Duration | None = None
    """How long a dependent's own alerts wait for its roots (SPEC 4); None: the longest time
    to confirm among the checks of the systems it depends on, at least 5 s."""


class Alerting(Strict):
    group_window: Duration = 0.0
    """Messages of one kind to one recipient falling due within this long of the first are
    sent as one (SPEC 6, grouping); 0 sends each at once. Fixed from the first message due,
    so it adds at most its own length to the time to the first notification."""


class Department(Localized, Strict):
    LOCALIZED = ("name",)
    id: Id
    name: str
    campus: str | None = None
    notify: list[str] = Field(default_factory=list)
    language: Language | None = None


class Vendor(Localized, Strict):
    LOCALIZED = ("name",)
    name: str
    notify: list[str] = Field(default_factory=list)
    response_sla: Duration | None = None
    contact: str | None = None


class System(Localized, Strict):
    LOCALIZED = ("name", "downtime_procedure", "still_works")
    id: Id
    name: str
    criticality: Literal["critical", "high", "normal"] = "normal"
    departments: list[str] = Field(default_factory=list)
    depends_on: list[str] = Field(default_factory=list)
    vendor: Vendor | None = None
    plan: str | None = None
    downtime_procedure: str | None = None
    still_works: str | None = None


class Step(Strict):
    after: Duration | None = None
    every: Duration | None = None
    times: PositiveInt | None = None
    """With `every`: N sends in all (SPEC §13.1)."""
    notify: list[str] = Field(min_length=1)
    message: MessageKind
    unless: Literal["acknowledged"] | None = None

    @model_validator(mode="after")
    def _timing(self) -> Step:
        if self.after is None and self.every is None:
            raise ValueError("a step needs `after`, `every` or both")
        if self.every is not None and self.every <= 0:
            raise ValueError("`every` must be longer than 0s")
        if self.times is not None and self.every is None:
            raise ValueError("`times` needs `every` (N sends, `every` apart)")
        return self


class Plan(Strict):
    id: Id
    early_warning: list[str] = Field(default_factory=list)
    steps: list[Step] = Field(default_factory=list)
    on_recovery: list[str] = Field(default_factory=list)
    backfill_reminder: Duration | None = None
    """Once, this long after recovery, to departments not done back-filling (SPEC §13.3)."""


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[str, ...] = get_args(Weekday)


class Recurrence(Strict):
    """A repeating window in the site's time zone: `{days: [sun], start: "02:00", end: "04:00"}`.

    An `end` earlier than `start` crosses midnight. No `days` means every day.
    """

    days: list[Weekday] = Field(default_factory=lambda: list(get_args(Weekday)))
    start: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")
    end: str = Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")

    @model_validator(mode="after")
    def _not_empty(self) -> Recurrence:
        if self.start == self.end:
            raise ValueError("start and end must differ")
        return self


class Maintenance(Localized, Strict):
    LOCALIZED = ("reason",)
    systems: list[str] = Field(min_length=1)
    start: dt.datetime | None = None
    end: dt.datetime | None = None
    recurring: Recurrence | None = None
    reason: str
    announce: list[Duration] = Field(default_factory=list)

    @model_validator(mode="after")
    def _ordered(self) -> Maintenance:
        if self.recurring is not None:
            if self.start is not None or self.end is not None:
                raise ValueError("a window has either start/end or recurring, not both")
            return self
        if self.start is None or self.end is None:
            raise ValueError("a window needs start and end (or recurring)")
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("start and end need a UTC offset, e.g. 2026-12-01T22:00:00+08:00")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


class Host(Strict):
    """A server or device that `apply` rules make checks for (SPEC §14)."""

    id: Id
    address: str = Field(min_length=1)
    name: str | None = None
    system: str | None = None
    tags: list[str] = Field(default_factory=list)


CheckConfig = AnyCheck
NotifierConfig = AnyNotifier


class Config(Strict):
    site: Site = Field(default_factory=Site)
    server: Server = Field(default_factory=Server)
    state: StateConfig = Field(default_factory=StateConfig)
    cluster: ClusterConfig | None = None
    self_alerts: list[str] = Field(default_factory=list)
    """Who hears `monitor_degraded`/`monitor_ok` about hismon itself (SPEC 9)."""
    defaults: Defaults = Field(default_factory=Defaults)
    alerting: Alerting = Field(default_factory=Alerting)
    roles: dict[str, list[str]] = Field(default_factory=dict)
    departments: list[Department] = Field(default_factory=list)
    systems: list[System] = Field(default_factory=list)
    checks: list[CheckConfig] = Field(default_factory=list)
    notifiers: list[NotifierConfig] = Field(default_factory=list)
    people: list[Person] = Field(default_factory=list)
    schedules: list[Schedule] = Field(default_factory=list)
    plans: list[Plan] = Field(default_factory=list)
    maintenance: list[Maintenance] = Field(default_factory=list)
    templates: dict[Language, dict[MessageKind, str]] = Field(default_factory=dict)
    hosts: list[Host] = Field(default_factory=list)
    check_templates: list[dict[str, Any]] = Field(default_factory=list)
    """Kept as written; the loader expands them (with `apply`) into `checks`."""
    apply: list[dict[str, Any]] = Field(default_factory=list)
    _indexes: dict[str, dict[str, Any]] = PrivateAttr(default_factory=dict)
    _files: list[str] = PrivateAttr(default_factory=list)
    _watch: list[str] = PrivateAttr(default_factory=list)
    _notes: list[str] = PrivateAttr(default_factory=list)

    @property
    def files(self) -> list[str]:
        """Every file this config was read from, the main file first (SPEC §14)."""
        return list(self._files)

    @property
    def watch_paths(self) -> list[str]:
        """Files and glob directories whose change means a reload."""
        return list(self._watch)

    @property
    def notes(self) -> list[str]:
        """What `validate` says without failing, e.g. a glob that matched no file."""
        return list(self._notes)

    @model_validator(mode="after")
    def _inherit_defaults(self) -> Config:
        """Fill each check's unset timing keys from `defaults`, so the scheduler sees one value."""
        defaults = [(key, getattr(self.defaults, key))
                    for key in ("interval", "timeout", "retry_interval", "confirm", "recover")]
        for check in self.checks:
            fields = check.__dict__  # what object.__setattr__ would write, without the calls
            for key, value in defaults:
                if fields[key] is None:
                    fields[key] = value
        return self

    @model_validator(mode="after")
    def _share_equal_parts(self) -> Config:
        """Equal parts of checks (default `tls:`, the same system or host) kept once: ~1 KiB
        per check at 10,000 (monitor/config/compact.py)."""
        share_equal_parts(self.checks)
        return self

    @model_validator(mode="after")
    def _site_language_texts(self) -> Config:
        """`{zh, en}` fields hold the site language's text; readers pick theirs (i18n.text)."""
        language = self.site.language
        items: list[Localized] = [*self.site.campuses, *self.departments, *self.maintenance]
        for system in self.systems:
            items.append(system)
            if system.vendor is not None:
                items.append(system.vendor)
        for item in items:
            item.use_language(language)
        return self

    # Lookups the daemon uses on every decision; built once per loaded config.
    def system(self, system_id: str) -> System:
        return self._index("systems", self.systems)[system_id]

    def department(self, department_id: str) -> Department:
        return self._index("departments", self.departments)[department_id]

    def notifier(self, notifier_id: str) -> NotifierBase:
        return self._index("notifiers", self.notifiers)[notifier_id]

    def plan(self, plan_id: str) -> Plan:
        return self._index("plans", self.plans)[plan_id]

    def person(self, person_id: str) -> Person:
        return self._index("people", self.people)[person_id]

    def schedule(self, schedule_id: str) -> Schedule:
        return self._index("schedules", self.schedules)[schedule_id]

    def check(self, check_id: str) -> CheckBase:
        return self._index("checks", self.checks)[check_id]

    def has_system(self, system_id: str) -> bool:
        """False for a system removed by a reload while its incident is still stored."""
        return system_id in self._index("systems", self.systems)

    def checks_of(self, system_id: str) -> list[CheckBase]:
        by_system = self._indexes.get("checks_by_system")
        if by_system is None:
            by_system = {}
            for check in self.checks:
                by_system.setdefault(check.system, []).append(check)
            self._indexes["checks_by_system"] = by_system
        return list(by_system.get(system_id, []))

    def _index(self, name: str, items: Sequence[_T]) -> dict[str, _T]:
        cache = self._indexes
        if name not in cache:
            cache[name] = {item.id: item for item in items}
        return cache[name]

    def dependencies(self, system_id: str) -> list[str]:
        """Every system this one depends on, directly or further down, nearest first."""
        seen: list[str] = []
        queue = list(self.system(system_id).depends_on)
        while queue:
            current = queue.pop(0)
            if current in seen or current == system_id:
                continue
            seen.append(current)
            queue.extend(self.system(current).depends_on)
        return seen
