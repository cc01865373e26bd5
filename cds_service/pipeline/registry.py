"""The CDS services this app offers, keyed by service id (never by hook type)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from cds_service.errors import UnknownService
from hooks.service import ServiceDefinition


class Registry:
    def __init__(self, services: Iterable[ServiceDefinition]) -> None:
        self._by_id: dict[str, ServiceDefinition] = {}
        for service in services:
            if service.id in self._by_id:
                raise ValueError(f"two CDS services share the id '{service.id}'")
            self._by_id[service.id] = service

    def __iter__(self) -> Iterator[ServiceDefinition]:
        return iter(self._by_id.values())

    def get(self, service_id: str) -> ServiceDefinition:
        try:
            return self._by_id[service_id]
        except KeyError:
            known = ", ".join(self._by_id)
            raise UnknownService(f"No CDS service at this path. Services: {known}.") from None

    def discovery(self) -> dict[str, Any]:
        return {"services": [service.discovery() for service in self]}
