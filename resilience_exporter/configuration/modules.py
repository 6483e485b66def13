"""`modules:`: the `/probe` modules, each a target template with `{address}` placeholders and
the access rules that say which addresses it may probe."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import Field, field_validator

from resilience_exporter.configuration.models import StrictModel
from resilience_exporter.configuration.targets import Defaults, TargetConfig, with_defaults

ADDRESS_PLACEHOLDER = "{address}"


class ModuleAccess(StrictModel):
    """Which addresses a module may probe: hosts by CIDR, IP or name glob, and ports."""

    allow: list[str] = Field(min_length=1)
    allow_ports: list[int] = Field(default_factory=list)

    @field_validator("allow")
    @classmethod
    def _patterns(cls, patterns: list[str]) -> list[str]:
        for pattern in patterns:
            if "/" in pattern:
                try:
                    ipaddress.ip_network(pattern, strict=False)
                except ValueError:
                    raise ValueError(f"{pattern!r} is not a CIDR network") from None
            elif not re.fullmatch(r"[A-Za-z0-9*?.:\-\[\]]+", pattern):
                raise ValueError(f"{pattern!r} is not an IP, CIDR or host name pattern")
        return patterns

    @field_validator("allow_ports")
    @classmethod
    def _ports(cls, ports: list[int]) -> list[int]:
        if any(not 0 < p < 65536 for p in ports):
            raise ValueError("ports are 1-65535")
        return ports

    def admits(self, host: str, port: int) -> bool:
        if self.allow_ports and port not in self.allow_ports:
            return False
        bare = host.strip("[]")
        try:
            ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(bare)
        except ValueError:
            ip = None
        for pattern in self.allow:
            if "/" in pattern:
                if ip is not None and ip in ipaddress.ip_network(pattern, strict=False):
                    return True
            elif ip is not None:
                try:
                    if ip == ipaddress.ip_address(pattern.strip("[]")):
                        return True
                except ValueError:
                    continue
            elif fnmatch.fnmatchcase(bare.lower(), pattern.lower()):
                return True
        return False


def fill_template(template: Any, address: str) -> Any:
    if isinstance(template, dict):
        return {k: fill_template(v, address) for k, v in template.items()}
    if isinstance(template, list):
        return [fill_template(v, address) for v in template]
    if isinstance(template, str):
        return template.replace(ADDRESS_PLACEHOLDER, address)
    return template


@dataclass(frozen=True, slots=True)
class ProbeModule:
    """A /probe module: a target template with `{address}` placeholders, validated at load
    time with a stand-in address, and who it admits."""

    name: str
    kind: str
    access: ModuleAccess
    template: Mapping[str, Any]
    model: type[TargetConfig]
    defaults: Defaults

    def target(self, address: str) -> TargetConfig:
        """The target for one address (already admitted by the access rules); raises
        ValidationError when the address does not fit the template."""
        raw = {**fill_template(self.template, address), "name": address}
        return with_defaults(self.model.model_validate(raw), self.defaults)
