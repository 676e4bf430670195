"""Reverse mappings: how a terugmelding becomes a DMKS `AnnotatieToevoegen` request.

One YAML file per registry in `mappings/terugmeldingen/` (format: docs/digimelding.md). A file
names the registry (`registratie`, its `oin`), how an object key becomes the `Bronverwijzing`
URI, the attribute names consumers use and the URI each stands for, what attachments the
registry takes, and whether it wants the request signed (2W-be-S). Loading is as strict as for
the forward mappings: unknown keys, numbers where text is meant and bad patterns are errors at
`file:line:column`.

`ReverseMapping.check` finds everything about a terugmelding that the registry (or our schema)
would refuse, so the API can answer 400 instead of queueing a request that can only fail.
"""

from __future__ import annotations

import difflib
import re
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType

from digibridge.mapping._annotatie import GATEWAY_PERSON, Annotator, TreeBuilder, child, text
from digibridge.mapping._yaml import Mark, MarkedList, MarkedMap, YamlError, load_marked
from digibridge.mapping.dmks import GEMELD, STATUSES
from digibridge.mapping.loader import (
    MAPPING_SUFFIXES,
    _boolean,
    _check_keys,
    _fail,
    _mapping,
    _optional_string,
    _string,
    display_path,
)
from digibridge.mapping.reverse_types import AnnotatieToevoegen, Bijlage, Terugmelding
from digibridge.mapping.types import MappingError

#: The subfolder of a mapping folder that holds the reverse mappings.
REVERSE_FOLDER = "terugmeldingen"

_FILE_KEYS = (
    {"registratie", "oin", "object", "attributes"},
    {"description", "signed", "attachments"},
)
_OBJECT_KEYS = ({"uri", "key-pattern"}, {"key-description"})
_ATTACHMENT_KEYS = ({"max-count"}, {"max-bytes", "mime-types"})

_REGISTRATIE = re.compile(r"[A-Z]{1,3}")
_OIN = re.compile(r"[0-9]{20}")
_VESTIGING = re.compile(r"[0-9]{12}")
_ATTRIBUTE_NAME = re.compile(r"[a-z][A-Za-z0-9]*")
_URI = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:\S+")
_MIME = re.compile(r"[a-z0-9][a-z0-9!#$&^_.+\-]*/[a-z0-9][a-z0-9!#$&^_.+\-]*")
# Same patterns as wsdl/digimelding.xsd (Email, Telefoon).
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
_TELEFOON = re.compile(r"\+?[0-9 ()\-]{6,30}")
# Characters XML 1.0 cannot carry (controls, lone surrogates, U+FFFE/U+FFFF).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_PLACEHOLDERS = re.compile(r"\{([^{}]*)\}")

#: Default upper bound of one attachment when a file does not set `max-bytes` (5 MiB).
DEFAULT_MAX_BYTES = 5 * 1024 * 1024
#: Upper bound on `max-bytes`: the whole request travels inline as base64.
LIMIT_MAX_BYTES = 20 * 1024 * 1024

# Text limits of wsdl/digimelding.xsd.
MAX_WAARDE = 1000
MAX_TOELICHTING = 4000
MAX_NAAM = 200
MAX_KENMERK = 12
MAX_BESTANDSNAAM = 255
MAX_EMAIL = 254
MAX_URI = 2000

#: One problem with a terugmelding: (JSON pointer of the field, why it is refused).
Problem = tuple[str, str]


@dataclass(frozen=True)
class AttachmentPolicy:
    """What attachments a registry accepts: how many, how large each, which MIME types."""

    max_count: int
    max_bytes: int
    mime_types: frozenset[str]


@dataclass(frozen=True)
class ReverseMapping:
    """One registry's reverse mapping (one file in `mappings/terugmeldingen/`)."""

    registratie: str
    #: OinBasisregistratie.
    oin: str
    #: Template of the `Bronverwijzing/Uri`: `{oin}` and `{sleutel}` are filled in.
    object_uri: str
    object_key: re.Pattern[str]
    object_key_description: str
    #: Attribute name (as consumers give it) → attribute URI in DMKS.
    attributes: Mapping[str, str]
    attachments: AttachmentPolicy
    #: The registry wants the request signed with WS-Security (2W-be-S), not only mutual TLS.
    signed: bool
    path: Path
    description: str | None = None

    def uri_of(self, sleutel: str) -> str:
        """The `Bronverwijzing/Uri` of the object with key `sleutel`."""
        return self.object_uri.replace("{oin}", self.oin).replace("{sleutel}", sleutel)

    def check(self, t: Terugmelding) -> list[Problem]:
        """Everything the registry or the schema would refuse in `t`; empty when it may go."""
        return list(_Checker(self).problems(t))

    def build(
        self,
        t: Terugmelding,
        *,
        now: datetime,
        new_uuid: Callable[[], str],
        status: str = GEMELD,
        root_uuid: str | None = None,
    ) -> AnnotatieToevoegen:
        """The `AnnotatieToevoegen` request for a new report `t` (which passed `check`).

        The root `Terugmelding` gets `root_uuid` if given, every other annotation a uuid from
        `new_uuid`; all annotations are made by `t.oin_melder` (person: the contact) at `now`.
        """
        problems = self.check(t)
        if problems:
            listed = "; ".join(f"{field}: {reason}" for field, reason in problems)
            raise ValueError(f"terugmelding does not pass the {self.registratie} mapping: {listed}")
        if status not in STATUSES:
            raise ValueError(f"{status!r} is not a DMKS status")
        tree = TreeBuilder(Annotator(t.oin_melder, t.contact.naam, now, t.vestiging), new_uuid)
        root = tree.annotation("Terugmelding", uuid_value=root_uuid, toelichting=t.toelichting)
        root_id = tree.uuids[0]
        bron = child(child(root, "Bronverwijzingen"), "Bronverwijzing")
        text(bron, "Uri", self.uri_of(t.object_sleutel))
        attributen = child(root, "Attributenset")
        for attribuut in t.attributen:
            element = child(attributen, "Attribuut")
            text(element, "Uri", self.attributes[attribuut.naam])
            text(element, "BetwijfeldeWaarde", attribuut.betwijfelde_waarde)
            text(element, "VoorgesteldeWaarde", attribuut.voorgestelde_waarde)
        if t.peildatum is not None:
            text(root, "Peilmoment", t.peildatum.isoformat())
        tree.status(status, root_id)
        kenmerk = tree.annotation("Referentiekenmerk", verwijzing=root_id)
        text(kenmerk, "Kenmerk", t.referentiekenmerk)
        contact = tree.annotation("Contactinformatie", verwijzing=root_id)
        contact.set("ContactType", "Melder")
        text(contact, "Naam", t.contact.naam)
        text(contact, "Telefoon", t.contact.telefoon)
        text(contact, "Email", t.contact.email)
        text(contact, "Afdeling", t.contact.afdeling)
        for bijlage in t.bijlagen:
            tree.bijlage(
                root_id,
                bestandsnaam=bijlage.bestandsnaam,
                mime_type=bijlage.mime_type,
                data=bijlage.data,
                beschrijving=bijlage.beschrijving,
            )
        return AnnotatieToevoegen(
            oin_basisregistratie=self.oin,
            registratie=self.registratie,
            annotatieboom=tree.serialise(),
            root_uuid=root_id,
            uuids=tuple(tree.uuids),
        )

    def build_status(  # noqa: PLR0917 - positional order agreed with the API side
        self,
        root_uuid: str,
        status: str,
        toelichting: str | None,
        oin_melder: str,
        now: datetime,
        new_uuid: Callable[[], str],
        *,
        persoonsaanduiding: str = GATEWAY_PERSON,
        vestiging: str | None = None,
    ) -> AnnotatieToevoegen:
        """A status change of the existing report `root_uuid` (e.g. `Ingetrokken`): one
        `Annotatiestatus` whose `Annotatieverwijzing` is the report's root."""
        if status not in STATUSES:
            raise ValueError(f"{status!r} is not a DMKS status")
        if toelichting is not None and (
            len(toelichting) > MAX_TOELICHTING or _NOT_XML.search(toelichting)
        ):
            raise ValueError(
                f"toelichting must be at most {MAX_TOELICHTING} characters XML can carry"
            )
        tree = TreeBuilder(Annotator(oin_melder, persoonsaanduiding, now, vestiging), new_uuid)
        tree.status(status, _canonical(root_uuid), toelichting)
        return AnnotatieToevoegen(
            oin_basisregistratie=self.oin,
            registratie=self.registratie,
            annotatieboom=tree.serialise(),
            root_uuid=_canonical(root_uuid),
            uuids=tuple(tree.uuids),
        )


def _canonical(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"{value!r} is not a uuid") from None


class _Checker:
    """Collects every problem of one terugmelding against one mapping."""

    def __init__(self, mapping: ReverseMapping) -> None:
        self.m = mapping

    def problems(self, t: Terugmelding) -> Iterator[Problem]:
        m = self.m
        if t.registratie != m.registratie:
            yield "/registratie", f"this is the mapping of {m.registratie}, not {t.registratie}"
        if t.oin_basisregistratie != m.oin:
            yield (
                "/oinBasisregistratie",
                f"{t.oin_basisregistratie!r} is not the OIN of {m.registratie} ({m.oin})",
            )
        if not m.object_key.fullmatch(t.object_sleutel):
            yield "/objectSleutel", f"not a {m.object_key_description}"
        elif len(m.uri_of(t.object_sleutel)) > MAX_URI:  # pragma: no cover - patterns bound it
            yield "/objectSleutel", "too long"
        if not _OIN.fullmatch(t.oin_melder):
            yield "/oinMelder", "an OIN is 20 digits"
        if t.vestiging is not None and not _VESTIGING.fullmatch(t.vestiging):
            yield "/vestiging", "a vestigingsnummer is 12 digits"
        yield from self._attributes(t)
        yield from _text("/toelichting", t.toelichting, MAX_TOELICHTING, required=True)
        yield from _text("/referentiekenmerk", t.referentiekenmerk, MAX_KENMERK, required=True)
        yield from _text("/contact/naam", t.contact.naam, MAX_NAAM, required=True)
        yield from _text("/contact/afdeling", t.contact.afdeling, MAX_NAAM, required=False)
        if len(t.contact.email) > MAX_EMAIL or not _EMAIL.fullmatch(t.contact.email):
            yield "/contact/email", "not an e-mail address"
        if t.contact.telefoon is not None and not _TELEFOON.fullmatch(t.contact.telefoon):
            yield "/contact/telefoon", "not a telephone number (digits, spaces, + ( ) -)"
        yield from self._attachments(t.bijlagen)

    def _attributes(self, t: Terugmelding) -> Iterator[Problem]:
        known = self.m.attributes
        if not t.attributen:
            yield "/attributen", "at least one attribute is needed"
        seen: set[str] = set()
        for index, attribuut in enumerate(t.attributen):
            where = f"/attributen/{index}"
            if attribuut.naam not in known:
                close = difflib.get_close_matches(attribuut.naam, list(known), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                yield (
                    f"{where}/naam",
                    f"{self.m.registratie} has no attribute {attribuut.naam!r}{hint}",
                )
            elif attribuut.naam in seen:
                yield f"{where}/naam", f"attribute {attribuut.naam!r} is given twice"
            seen.add(attribuut.naam)
            for name, value in (
                ("betwijfeldeWaarde", attribuut.betwijfelde_waarde),
                ("voorgesteldeWaarde", attribuut.voorgestelde_waarde),
            ):
                yield from _text(f"{where}/{name}", value, MAX_WAARDE, required=False)

    def _attachments(self, bijlagen: tuple[Bijlage, ...]) -> Iterator[Problem]:
        policy = self.m.attachments
        if len(bijlagen) > policy.max_count:
            allowed = (
                "accepts no attachments"
                if policy.max_count == 0
                else f"accepts at most {policy.max_count} attachment(s)"
            )
            yield "/bijlagen", f"{self.m.registratie} {allowed}, not {len(bijlagen)}"
            return
        for index, bijlage in enumerate(bijlagen):
            where = f"/bijlagen/{index}"
            yield from _text(
                f"{where}/bestandsnaam", bijlage.bestandsnaam, MAX_BESTANDSNAAM, required=True
            )
            if any(c in bijlage.bestandsnaam for c in "/\\") or bijlage.bestandsnaam in (".", ".."):
                yield f"{where}/bestandsnaam", "a file name, not a path"
            if bijlage.mime_type not in policy.mime_types:
                allowed = ", ".join(sorted(policy.mime_types))
                yield (
                    f"{where}/mimeType",
                    f"{self.m.registratie} does not accept {bijlage.mime_type!r}"
                    f" (allowed: {allowed})",
                )
            if not bijlage.data:
                yield f"{where}/data", "an attachment cannot be empty"
            elif len(bijlage.data) > policy.max_bytes:
                yield (
                    f"{where}/data",
                    f"{len(bijlage.data)} bytes; {self.m.registratie} accepts at most "
                    f"{policy.max_bytes} bytes per attachment",
                )
            yield from _text(
                f"{where}/beschrijving", bijlage.beschrijving, MAX_TOELICHTING, required=False
            )


def _text(where: str, value: str | None, limit: int, *, required: bool) -> Iterator[Problem]:
    if value is None:
        return
    if required and not value.strip():
        yield where, "must not be empty"
    elif len(value) > limit:
        yield where, f"at most {limit} characters, not {len(value)}"
    elif found := _NOT_XML.search(value):
        yield where, f"contains U+{ord(found.group(0)):04X}, which XML cannot carry"


# --- loading ---------------------------------------------------------------------------------


class ReverseMappings:
    """The reverse mappings of a mapping folder, by registry code."""

    def __init__(self, mappings: Mapping[str, ReverseMapping]) -> None:
        self._mappings = MappingProxyType(dict(mappings))

    @classmethod
    def load(cls, folder: Path) -> ReverseMappings:
        """The files in `folder/terugmeldingen/` (none: no registry takes terugmeldingen).

        MappingError at `file:line:column` for the first wrong file or a registry mapped twice.
        """
        loaded: dict[str, ReverseMapping] = {}
        for path in reverse_paths(folder):
            mapping = load_reverse_file(path)
            if mapping.registratie in loaded:
                raise MappingError(
                    f"registratie {mapping.registratie!r} is also mapped in "
                    f"{display_path(loaded[mapping.registratie].path)}",
                    location=f"{display_path(path)}:1:1",
                )
            loaded[mapping.registratie] = mapping
        return cls(loaded)

    def registries(self) -> list[str]:
        """The registry codes that take terugmeldingen, sorted."""
        return sorted(self._mappings)

    def get(self, registry: str) -> ReverseMapping | None:
        return self._mappings.get(registry)


def reverse_paths(folder: Path) -> list[Path]:
    """The reverse mapping files of the mapping folder `folder`, sorted by name."""
    directory = folder / REVERSE_FOLDER
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in MAPPING_SUFFIXES and p.is_file())


def load_reverse_file(path: Path) -> ReverseMapping:
    """One reverse mapping file, checked; MappingError at `file:line:column` if it is wrong."""
    display = display_path(path)
    try:
        document = load_marked(path, display)
    except YamlError as exc:
        raise MappingError(exc.message, location=str(exc.mark)) from None
    if not isinstance(document, MarkedMap):
        _fail("a reverse mapping file must be a YAML mapping", Mark(display, 1, 1))
    _check_keys(document, _FILE_KEYS, "reverse mapping file")
    registratie = _string(document, "registratie")
    if not _REGISTRATIE.fullmatch(registratie):
        _fail("registratie must be 1 to 3 capital letters", document.value_marks["registratie"])
    oin = _string(document, "oin")
    if not _OIN.fullmatch(oin):
        _fail(f"oin {oin!r} must be 20 digits", document.value_marks["oin"])
    uri, key, key_description = _object(_mapping(document, "object"))
    return ReverseMapping(
        registratie=registratie,
        oin=oin,
        object_uri=uri,
        object_key=key,
        object_key_description=key_description,
        attributes=MappingProxyType(_attributes(_mapping(document, "attributes"))),
        attachments=_attachment_policy(document),
        signed=_boolean(document, "signed", default=False),
        path=path,
        description=_optional_string(document, "description"),
    )


def _object(node: MarkedMap) -> tuple[str, re.Pattern[str], str]:
    _check_keys(node, _OBJECT_KEYS, "object")
    uri = _string(node, "uri")
    placeholders = set(_PLACEHOLDERS.findall(uri))
    if placeholders - {"oin", "sleutel"} or "sleutel" not in placeholders:
        _fail(
            "uri must contain {sleutel} (the object key) and may contain {oin}, nothing else",
            node.value_marks["uri"],
        )
    pattern = _string(node, "key-pattern")
    try:
        key = re.compile(pattern)
    except re.error as exc:
        _fail(f"key-pattern is not a regular expression: {exc}", node.value_marks["key-pattern"])
    if key.fullmatch(""):
        _fail("key-pattern must not match an empty key", node.value_marks["key-pattern"])
    description = _optional_string(node, "key-description") or f"key matching {pattern}"
    return uri, key, description


def _attributes(node: MarkedMap) -> dict[str, str]:
    if not node:
        _fail("attributes must name at least one attribute", node.mark)
    attributes: dict[str, str] = {}
    for name in node:
        if not _ATTRIBUTE_NAME.fullmatch(name):
            _fail(f"attribute name {name!r} must be lowerCamelCase", node.key_marks[name])
        uri = _string(node, name)
        if not _URI.fullmatch(uri) or len(uri) > MAX_URI:
            _fail(f"{uri!r} is not an absolute URI", node.value_marks[name])
        attributes[name] = uri
    return attributes


def _attachment_policy(document: MarkedMap) -> AttachmentPolicy:
    if "attachments" not in document:
        return AttachmentPolicy(0, 0, frozenset())
    node = _mapping(document, "attachments")
    _check_keys(node, _ATTACHMENT_KEYS, "attachments")
    max_count = _count(node, "max-count", 0, 100)
    max_bytes = (
        _count(node, "max-bytes", 1, LIMIT_MAX_BYTES) if "max-bytes" in node else DEFAULT_MAX_BYTES
    )
    types: list[str] = []
    if "mime-types" in node:
        raw = node["mime-types"]
        if not isinstance(raw, MarkedList):
            _fail("mime-types must be a list", node.value_marks["mime-types"])
        for value, mark in zip(raw, raw.item_marks, strict=True):
            if not isinstance(value, str) or not _MIME.fullmatch(value):
                _fail(f"{value!r} is not a MIME type (lower case, type/subtype)", mark)
            types.append(value)
    if max_count > 0 and not types:
        _fail("mime-types must list the accepted types when max-count is above 0", node.mark)
    return AttachmentPolicy(max_count, max_bytes, frozenset(types))


def _count(node: MarkedMap, key: str, low: int, high: int) -> int:
    value = node[key]
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        _fail(f"{key} must be a whole number from {low} to {high}", node.value_marks[key])
    return value
