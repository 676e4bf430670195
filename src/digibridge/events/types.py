"""The CloudEvent record digibridge emits (CloudEvents 1.0.2, NL GOV profile)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

SPECVERSION = "1.0"
JSON_CONTENT_TYPE = "application/json"


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with a `Z`, the form receivers parse most reliably; fractions of a
    second only as precise as the source gave them (registries give seconds or milliseconds)."""
    micro = value.microsecond
    timespec = "seconds" if micro == 0 else "milliseconds" if micro % 1000 == 0 else "microseconds"
    return value.astimezone(UTC).isoformat(timespec=timespec).removesuffix("+00:00") + "Z"


@dataclass(frozen=True)
class CloudEvent:
    """An immutable CloudEvent. `data` is JSON-ready (dicts, lists, str, int, float, bool)."""

    id: str
    source: str
    type: str
    time: datetime | None = None
    subject: str | None = None
    datacontenttype: str = JSON_CONTENT_TYPE
    dataschema: str | None = None
    data: Any = None
    #: Extension attributes (`dataref`, `sequence`, `traceparent`, ...); None values are unset.
    extensions: Mapping[str, str | int | bool] = field(default_factory=dict)
    #: The same event in the informatiearm form (data reduced to identifiers, plus `dataref`),
    #: for subscriptions that ask for it; None when the producer made none.
    informatiearm: CloudEvent | None = field(default=None, repr=False)

    @classmethod
    def assembled(
        cls,
        *,
        id: str,
        source: str,
        type: str,
        time: datetime | None,
        subject: str | None,
        dataschema: str | None,
        data: Any,
        extensions: Mapping[str, str | int | bool],
        informatiearm: CloudEvent | None = None,
    ) -> CloudEvent:
        """The event the constructor would make, without the frozen dataclass `__init__` (one
        `object.__setattr__` per field: a tenth of mapping a message). For the mapping engine,
        which makes two per event; `datacontenttype` is JSON."""
        event = object.__new__(cls)
        event.__dict__.update(
            {
                "id": id,
                "source": source,
                "type": type,
                "time": time,
                "subject": subject,
                "datacontenttype": JSON_CONTENT_TYPE,
                "dataschema": dataschema,
                "data": data,
                "extensions": extensions,
                "informatiearm": informatiearm,
            }
        )
        return event

    def attributes(self) -> dict[str, Any]:
        """Context attributes as JSON-format values (time as RFC 3339), unset ones left out."""
        attributes: dict[str, Any] = {
            "specversion": SPECVERSION,
            "id": self.id,
            "source": self.source,
            "type": self.type,
        }
        if self.time is not None:
            attributes["time"] = format_time(self.time)
        if self.subject is not None:
            attributes["subject"] = self.subject
        attributes["datacontenttype"] = self.datacontenttype
        if self.dataschema is not None:
            attributes["dataschema"] = self.dataschema
        for name, value in self.extensions.items():
            if value is not None:
                attributes[name] = value
        return attributes

    def to_json_dict(self) -> dict[str, Any]:
        """The structured-mode JSON object (CloudEvents JSON format)."""
        document = self.attributes()
        if self.data is not None:
            document["data"] = self.data
        return document

    def to_json_bytes(self) -> bytes:
        """Compact UTF-8 JSON, serialised once and stored as sent."""
        return json.dumps(self.to_json_dict(), ensure_ascii=False, separators=(",", ":")).encode()
