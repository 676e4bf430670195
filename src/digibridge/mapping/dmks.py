"""The DigiMelding (DMKS) vocabulary: namespace, statuses, lifecycle, and our schema.

Shared by the reverse mappings (which build requests), the SOAP client and the stub (which
validate them) and the status poller (which checks transitions). Facts: STANDARDS.md §3.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from functools import cache
from types import MappingProxyType
from typing import Any

from lxml import etree

from digibridge.resources import bundled

#: Namespace of every DMKS element, the fault detail included.
DMKS_NS = "http://webservices.digimelding.nl/dmks/cookiebox/"

GEMELD = "Gemeld"
IN_BEHANDELING = "In behandeling"
INGEPLAND = "Ingepland"
ONVOLDOENDE_INFORMATIE = "Onvoldoende informatie"
VERKEERDE_BRONHOUDER = "Verkeerde Bronhouder"
AFGEHANDELD = "Afgehandeld"
INGETROKKEN = "Ingetrokken"

#: Every DMKS status, in lifecycle order.
STATUSES = (
    GEMELD,
    IN_BEHANDELING,
    INGEPLAND,
    ONVOLDOENDE_INFORMATIE,
    VERKEERDE_BRONHOUDER,
    AFGEHANDELD,
    INGETROKKEN,
)

#: The advised lifecycle: from a status (None: a new report) to the statuses that may follow.
TRANSITIONS: Mapping[str | None, frozenset[str]] = MappingProxyType(
    {
        None: frozenset({GEMELD}),
        GEMELD: frozenset(
            {IN_BEHANDELING, INGETROKKEN, ONVOLDOENDE_INFORMATIE, VERKEERDE_BRONHOUDER}
        ),
        IN_BEHANDELING: frozenset({INGETROKKEN, INGEPLAND, AFGEHANDELD}),
        VERKEERDE_BRONHOUDER: frozenset({GEMELD, INGETROKKEN}),
        INGEPLAND: frozenset({AFGEHANDELD}),
        INGETROKKEN: frozenset(),
        ONVOLDOENDE_INFORMATIE: frozenset(),
        AFGEHANDELD: frozenset(),
    }
)

#: Statuses after which nothing changes any more.
END_STATES = frozenset({INGETROKKEN, ONVOLDOENDE_INFORMATIE, AFGEHANDELD})


def transition_allowed(previous: str | None, following: str) -> bool:
    """Whether the DMKS lifecycle allows `previous` (None: no status yet) → `following`."""
    return following in TRANSITIONS.get(previous, frozenset())


SCHEMA_FILE = "digimelding.xsd"
WSDL_FILE = "digimelding.wsdl"

# lxml keeps a schema's error log on the schema object and validates without the GIL: one
# validation at a time per schema object.
_LOCK = threading.Lock()


@cache
def _schema() -> etree.XMLSchema:
    # Our own file, not outside input: the default parser would do, the safe one costs nothing.
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    return etree.XMLSchema(etree.parse(str(bundled("wsdl") / SCHEMA_FILE), parser))


def schema_errors(element: etree._Element) -> list[str]:
    """Why `element` (a DMKS request, answer or fault detail) does not conform to
    `wsdl/digimelding.xsd`: one `line N: message` per problem, empty when it conforms."""
    schema = _schema()
    with _LOCK:
        if schema.validate(element):
            return []
        # lxml-stubs leave the error log untyped; it is a sequence of entries.
        errors: list[Any] = list(schema.error_log)  # type: ignore[call-overload]
        return [f"line {error.line}: {error.message}" for error in errors]
