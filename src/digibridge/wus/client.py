"""A DigiLevering-style sender: posts a DigiLevering body document as a WUS SOAP call.

Used by `digibridge send` for demos, tests and smoke checks. It is a real zeep client built from
the WSDL the receiver serves (`<to>?wsdl`), so it also proves that WSDL usable. With
`ClientSecurity` it speaks the secure profiles: a client certificate for mutual TLS (2W-be), and
a WS-Security signature on the request whose signed answer must confirm it (2W-be-S).

    SendError (DigibridgeError)   the call did not produce an acknowledgement: a SOAP Fault
                                  (`fault_code`, `dk_code`, `fault_string`), a transport error,
                                  or a message that does not fit the WSDL
"""

from __future__ import annotations

import re
import ssl
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
import requests.adapters
import zeep
import zeep.exceptions
import zeep.helpers
import zeep.plugins
from lxml import etree

from digibridge.clock import Clock, SystemClock
from digibridge.errors import DigibridgeError
from digibridge.wus._xml import SAFE_PARSER
from digibridge.wus.certificates import KeyMaterialError, SigningCredentials, TrustStore
from digibridge.wus.digilevering import OPERATIONS, SOAP11_BINDING, SOAP12_BINDING
from digibridge.wus.faults import FAULT_DETAIL_NS
from digibridge.wus.tls import client_context
from digibridge.wus.wsse import EnvelopeSigner, SignatureRefused, verify_envelope

WSA_NS = "http://www.w3.org/2005/08/addressing"
#: wsa:From/Address when the sender has no address of its own (Digikoppeling: `?OIN=` added).
WSA_ANONYMOUS = "http://www.w3.org/2005/08/addressing/anonymous"

# Elements whose single child is the registry's own XML, passed to zeep as xs:any content.
_CONTENT_CONTAINERS = {"gebeurtenisinhoud", "Inhoud"}


@dataclass(frozen=True)
class SendResult:
    """What a successful call returned."""

    message_id: str
    relates_to: str | None
    acknowledgement: dict[str, Any]


class SendError(DigibridgeError):
    """Not acknowledged; a SOAP Fault fills `fault_code`, `dk_code` and `fault_string`."""

    def __init__(
        self,
        message: str,
        *,
        fault_code: str | None = None,
        dk_code: str | None = None,
        fault_string: str | None = None,
    ) -> None:
        super().__init__(message)
        self.fault_code = fault_code
        self.dk_code = dk_code
        self.fault_string = fault_string


@dataclass(frozen=True)
class ClientSecurity:
    """How a call is secured. `tls` carries the client certificate (mutual TLS) and the CAs the
    server must chain to; `signer` signs the request, and then the answer must be signed by a
    certificate chaining to `answer_trust` and confirm our signature."""

    tls: ssl.SSLContext | None = None
    #: CA bundle file the server's TLS certificate is checked against (None: system roots).
    tls_trusted_cas: Path | None = None
    signer: EnvelopeSigner | None = None
    answer_trust: TrustStore | None = None
    max_skew: timedelta = timedelta(minutes=5)


def client_security(
    *,
    ca_bundle: Path | None = None,
    client_cert: Path | None = None,
    client_key: Path | None = None,
    sign_cert: Path | None = None,
    sign_key: Path | None = None,
    key_password: bytes | None = None,
) -> ClientSecurity:
    """ClientSecurity from PEM files: mutual TLS with `client_cert`, signing with `sign_cert`
    (answers then verified against `ca_bundle`). KeyMaterialError names a file that fails."""
    tls = None
    if client_cert is not None or ca_bundle is not None:
        tls = client_context(
            trusted_cas=ca_bundle, certificate=client_cert, key=client_key, password=key_password
        )
    signer = None
    answer_trust = None
    if sign_cert is not None:
        if ca_bundle is None:
            raise KeyMaterialError("signing needs --ca-bundle to verify the signed answer with")
        signer = EnvelopeSigner(SigningCredentials.load(sign_cert, sign_key, key_password))
        answer_trust = TrustStore.load(ca_bundle)
    return ClientSecurity(
        tls=tls, tls_trusted_cas=ca_bundle, signer=signer, answer_trust=answer_trust
    )


def send_levering(
    message: bytes | Path,
    to: str,
    *,
    soap12: bool = False,
    message_id: str | None = None,
    from_oin: str | None = None,
    timeout: float = 30.0,
    security: ClientSecurity | None = None,
    clock: Clock | None = None,
) -> SendResult:
    """Send one DigiLevering body document to the WUS endpoint `to` and return its answer.

    The operation follows from the document's root element (`VerstrekkingAanAfnemer` or
    `LeveringVanDGL`); the registry's payload is passed through unchanged.
    """
    security = security or ClientSecurity()
    wsse = _WsSecurity.of(security, clock or SystemClock())
    if urlsplit(to).scheme not in ("http", "https") or not urlsplit(to).netloc:
        # zeep would read anything else as a local file path.
        raise SendError(f"the endpoint must be an http(s) URL, not {to!r}")
    body = _read(message)
    operation = OPERATIONS.get(str(body.tag))
    if operation is None:
        expected = ", ".join(OPERATIONS)
        raise SendError(f"{body.tag} is not a DigiLevering message root (expected {expected})")
    arguments = _arguments(body)
    addressing = _AddressingPlugin(message_id or f"urn:uuid:{uuid.uuid4()}", from_oin)
    # zeep's own functions are unannotated, hence the no-untyped-call ignores below.
    session = _session(security)
    transport = zeep.Transport(  # type: ignore[no-untyped-call]
        session=session, timeout=timeout, operation_timeout=timeout
    )
    settings = zeep.Settings(strict=True, forbid_dtd=True, forbid_entities=True)
    try:
        client = zeep.Client(  # type: ignore[no-untyped-call]
            f"{to}?wsdl", transport=transport, settings=settings, plugins=[addressing], wsse=wsse
        )
        binding = SOAP12_BINDING if soap12 else SOAP11_BINDING
        service = client.create_service(binding, to)  # type: ignore[no-untyped-call]
        answer = getattr(service, operation.name)(**arguments)
    except zeep.exceptions.Fault as exc:
        raise _fault_error(exc) from exc
    except zeep.exceptions.TransportError as exc:
        raise SendError(f"{to} answered HTTP {exc.status_code}: {exc.message}") from exc
    except (zeep.exceptions.ValidationError, TypeError) as exc:
        # zeep raises TypeError for an element the operation's signature does not have.
        raise SendError(f"the message does not fit the WSDL: {exc}") from exc
    except zeep.exceptions.Error as exc:
        raise SendError(f"SOAP call to {to} failed: {exc}") from exc
    except requests.HTTPError as exc:
        raise SendError(f"cannot load the WSDL from {to}?wsdl: {exc}") from exc
    except requests.RequestException as exc:
        raise SendError(f"cannot reach {to}: {exc}") from exc
    finally:
        session.close()
    acknowledgement = zeep.helpers.serialize_object(answer, target_cls=dict)  # type: ignore[no-untyped-call]
    if not isinstance(acknowledgement, dict):
        raise SendError(f"{to} answered without an acknowledgement: {acknowledgement!r}")
    return SendResult(addressing.message_id, addressing.relates_to, acknowledgement)


def _read(message: bytes | Path) -> etree._Element:
    try:
        if isinstance(message, Path):
            return etree.parse(str(message), SAFE_PARSER).getroot()
        return etree.fromstring(message, SAFE_PARSER)
    except (OSError, etree.XMLSyntaxError) as exc:
        raise SendError(f"cannot read the message: {exc}") from exc


def _arguments(root: etree._Element) -> dict[str, Any]:
    """The root's children as zeep keyword arguments: text as is, the payload as an element."""
    arguments = _value(root)
    if not isinstance(arguments, dict):
        raise SendError(f"{etree.QName(root).localname} has no child elements")
    return arguments


def _value(element: etree._Element) -> dict[str, Any] | str:
    children = [child for child in element if isinstance(child.tag, str)]
    name = etree.QName(element).localname
    if name in _CONTENT_CONTAINERS:
        if len(children) != 1:
            raise SendError(f"{name} must hold exactly one element, not {len(children)}")
        return {"_value_1": _detached(children[0])}
    if not children:
        return element.text or ""
    names = [etree.QName(child).localname for child in children]
    if len(set(names)) != len(names):
        # No DigiLevering element repeats; a dict would silently keep only the last one.
        raise SendError(f"{name} has repeated child elements: {', '.join(names)}")
    return {child_name: _value(child) for child_name, child in zip(names, children, strict=True)}


def _detached(element: etree._Element) -> etree._Element:
    """A copy that declares every namespace in scope, so moving it keeps QName values working."""
    # deepcopy() would drop the declarations the element inherits but does not use itself
    # (e.g. a prefix only used inside an attribute value); serialising keeps all of them.
    return etree.fromstring(etree.tostring(element, with_tail=False), SAFE_PARSER)


class _AddressingPlugin(zeep.plugins.Plugin):
    """Our wsa:MessageID and wsa:From on the way out; the answer's wsa:RelatesTo on the way in.

    zeep itself adds wsa:Action, wsa:MessageID and wsa:To because the WSDL has wsam:Action.
    """

    def __init__(self, message_id: str, from_oin: str | None) -> None:
        self.message_id = message_id
        self.from_oin = from_oin
        self.relates_to: str | None = None

    def egress(
        self,
        envelope: etree._Element,
        http_headers: dict[str, str],
        operation: object,
        binding_options: dict[str, Any],
    ) -> tuple[etree._Element, dict[str, str]]:
        header = envelope.find(f"{{{etree.QName(envelope).namespace}}}Header")
        if header is None:  # pragma: no cover - zeep's own addressing always adds it
            raise SendError("zeep built an envelope without a SOAP Header")
        message_id = header.find(f"{{{WSA_NS}}}MessageID")
        if message_id is None:
            message_id = etree.SubElement(header, f"{{{WSA_NS}}}MessageID")
        message_id.text = self.message_id
        if self.from_oin is not None:
            sender = etree.SubElement(header, f"{{{WSA_NS}}}From")
            address = etree.SubElement(sender, f"{{{WSA_NS}}}Address")
            address.text = f"{WSA_ANONYMOUS}?OIN={self.from_oin}"
        return envelope, http_headers

    def ingress(
        self, envelope: etree._Element, http_headers: dict[str, str], operation: object
    ) -> tuple[etree._Element, dict[str, str]]:
        relates_to = envelope.find(f"{{*}}Header/{{{WSA_NS}}}RelatesTo")
        if relates_to is not None:
            self.relates_to = (relates_to.text or "").strip()
        return envelope, http_headers


def _session(security: ClientSecurity) -> requests.Session:
    session = requests.Session()
    if security.tls is not None:
        session.mount("https://", _TlsAdapter(security.tls))
        if security.tls_trusted_cas is not None:
            session.verify = str(security.tls_trusted_cas)
    return session


class _TlsAdapter(requests.adapters.HTTPAdapter):
    """Uses our SSLContext (TLS 1.2+, client certificate, key password) for https."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._context = context
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)


class _WsSecurity:
    """zeep's `wsse` hook: sign the request (after the addressing plugins ran), verify the
    answer's signature and that it confirms ours. Faults come unsigned and pass through."""

    def __init__(
        self, signer: EnvelopeSigner, trust: TrustStore, max_skew: timedelta, clock: Clock
    ) -> None:
        self._signer = signer
        self._trust = trust
        self._max_skew = max_skew
        self._clock = clock
        self.signature_value: str | None = None

    @classmethod
    def of(cls, security: ClientSecurity, clock: Clock) -> _WsSecurity | None:
        if security.signer is None:
            return None
        if security.answer_trust is None:
            raise SendError("a signed request needs the CAs to verify the signed answer with")
        return cls(security.signer, security.answer_trust, security.max_skew, clock)

    def apply(
        self, envelope: etree._Element, headers: dict[str, str]
    ) -> tuple[etree._Element, dict[str, str]]:
        self.signature_value = self._signer.sign(envelope, now=self._clock.now())
        return envelope, headers

    def verify(self, envelope: etree._Element) -> etree._Element:
        if envelope.find("{*}Body/{*}Fault") is not None:
            return envelope
        try:
            verified = verify_envelope(
                envelope, trust=self._trust, now=self._clock.now(), max_skew=self._max_skew
            )
        except SignatureRefused as exc:
            raise SendError(f"the answer's signature is not acceptable: {exc}") from None
        if self.signature_value not in verified.confirmations:
            raise SendError(
                "the signed answer does not confirm our signature (SignatureConfirmation)"
            )
        return envelope


_DK_CODE_RE = re.compile(r"(?:DK)?(\d{4})$")


def _fault_error(fault: zeep.exceptions.Fault) -> SendError:
    """A SendError from a SOAP Fault, with the Digikoppeling code found in detail or code."""
    code = fault.code if isinstance(fault.code, str) else None
    candidates: list[str] = []
    if fault.detail is not None:
        candidates += [
            text.strip()
            for text in fault.detail.itertext(f"{{{FAULT_DETAIL_NS}}}Foutcode")
            if text.strip()
        ]
    candidates += [code or ""]
    candidates += [etree.QName(sub).localname for sub in fault.subcodes or []]
    dk_code = next(
        (found.group(1) for c in candidates if (found := _DK_CODE_RE.search(c.strip()))), None
    )
    described = f"{code} {fault.message}" if code else str(fault.message)
    return SendError(
        f"the receiver answered a SOAP Fault: {described}",
        fault_code=code,
        dk_code=dk_code,
        fault_string=fault.message,
    )
