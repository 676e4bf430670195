"""Who may deliver what: the sender's OIN, its registry, and the WS-Security profile.

Checked per request once the Body says which basisregistratie it carries, before anything is
stored. Every refusal is a Fault 0002 (or 0010 for a WS-Security header a registry does not
use) and a `soap_unauthorised` log event naming the OINs involved.

With no security configured (`InboundSecurity.off()`, the embedded default) nothing is checked
and a `wsse:Security` header with mustUnderstand is refused as before (2W-be only).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Literal

import structlog
from lxml import etree

from digibridge.clock import Clock
from digibridge.config import ConfigError
from digibridge.wus.certificates import TrustStore
from digibridge.wus.envelope import SoapRequest, must_understand
from digibridge.wus.faults import DkCode, SoapFault
from digibridge.wus.tls import PeerIdentity
from digibridge.wus.wsse import (
    EnvelopeSigner,
    SignatureRefused,
    VerifiedSignature,
    is_signed,
    verify_envelope,
)

log = structlog.get_logger("digibridge.wus")

WsSecurityMode = Literal["off", "optional", "required"]


@dataclass(frozen=True)
class RegistryRule:
    oins: frozenset[str]
    ws_security: WsSecurityMode


@dataclass(frozen=True)
class Sender:
    """What the checks established about a request's sender."""

    #: The authenticated OIN (client certificate), else the unauthenticated `wsa:From` one.
    oin: str | None
    #: The verified WS-Security signature, when the request was signed.
    signature: VerifiedSignature | None = None


class InboundSecurity:
    """The inbound checks of the configured Digikoppeling profiles."""

    def __init__(
        self,
        *,
        clock: Clock,
        rules: Mapping[str, RegistryRule] | None = None,
        require_client_certificate: bool = False,
        trust: TrustStore | None = None,
        signer: EnvelopeSigner | None = None,
        max_skew: timedelta = timedelta(minutes=5),
    ) -> None:
        self._clock = clock
        self._rules = dict(rules or {})
        self._require_certificate = require_client_certificate
        self._trust = trust
        self._signer = signer
        self._max_skew = max_skew
        if self.ws_security_enabled and (trust is None or signer is None):
            raise ConfigError("WS-Security needs trusted CAs and a signing key")

    @classmethod
    def off(cls, clock: Clock) -> InboundSecurity:
        return cls(clock=clock)

    @property
    def ws_security_enabled(self) -> bool:
        """Whether any registry verifies WS-Security signatures (then a Security header with
        mustUnderstand is not refused while reading the envelope)."""
        return any(rule.ws_security != "off" for rule in self._rules.values())

    def summary(self) -> list[str]:
        """Per registry: the OINs that may deliver it and its profile."""
        profiles = {"off": "2W-be", "optional": "2W-be-S optional", "required": "2W-be-S"}
        return [
            f"{name}: {profiles[rule.ws_security]}, OINs {', '.join(sorted(rule.oins))}"
            for name, rule in sorted(self._rules.items())
        ]

    def check(self, request: SoapRequest, basisregistratie: str, peer: PeerIdentity) -> Sender:
        """The sender, if it may deliver this message; SoapFault otherwise. Nothing is stored
        before this returns."""
        from_oin = request.addressing.sender_oin
        rule = self._rules.get(basisregistratie)

        def refuse(reason: str, code: DkCode = DkCode.NOT_AUTHORISED) -> SoapFault:
            log.warning(
                "soap_unauthorised",
                message_id=request.addressing.message_id,
                basisregistratie=basisregistratie,
                certificate_oin=peer.oin,
                from_oin=from_oin,
                reason=reason,
            )
            return SoapFault(code, reason)

        if self._rules and rule is None:
            raise refuse(
                f"no sender is authorised to deliver basisregistratie {basisregistratie!r}"
            )
        if self._require_certificate:
            if peer.problem:
                raise refuse(f"client certificate refused: {peer.problem}")
            if peer.certificate is None:
                raise refuse("a client certificate is required (Digikoppeling mutual TLS)")
            if peer.oin is None:
                raise refuse("the client certificate carries no OIN in its subject serialNumber")
        if peer.oin is not None and from_oin is not None and from_oin != peer.oin:
            raise refuse(
                f"the OIN in wsa:From ({from_oin}) differs from the client certificate's "
                f"({peer.oin})"
            )
        if rule is not None and peer.oin not in rule.oins:
            raise refuse(f"OIN {peer.oin} may not deliver basisregistratie {basisregistratie!r}")
        mode: WsSecurityMode = rule.ws_security if rule is not None else "off"
        signature = self._signature(request, mode, peer, refuse)
        return Sender(oin=peer.oin or from_oin, signature=signature)

    def _signature(
        self,
        request: SoapRequest,
        mode: WsSecurityMode,
        peer: PeerIdentity,
        refuse: Callable[..., SoapFault],
    ) -> VerifiedSignature | None:
        security = request.security
        if mode == "off":
            if security is not None and must_understand(security):
                raise refuse(
                    "WS-Security (profile 2W-be-S) is not used for this registry; "
                    "send without a wsse:Security header (profile 2W-be)",
                    DkCode.FOREIGN_HEADER,
                )
            return None
        try:
            signed = is_signed(request.envelope)
        except SignatureRefused as exc:
            raise refuse(f"WS-Security {exc.fault}: {exc.reason}") from None
        if not signed:
            if mode == "required":
                raise refuse("this registry requires a WS-Security signature (profile 2W-be-S)")
            return None
        if self._trust is None:  # pragma: no cover - guarded in __init__
            raise refuse("no trusted CAs configured")
        try:
            verified = verify_envelope(
                request.envelope, trust=self._trust, now=self._clock.now(), max_skew=self._max_skew
            )
        except SignatureRefused as exc:
            raise refuse(f"WS-Security {exc.fault}: {exc.reason}") from None
        if verified.oin is None:
            raise refuse("the signing certificate carries no OIN in its subject serialNumber")
        if peer.oin is not None and verified.oin != peer.oin:
            raise refuse(
                f"the signing certificate's OIN ({verified.oin}) differs from the client "
                f"certificate's ({peer.oin})"
            )
        return verified

    def sign_answer(self, envelope: etree._Element, sender: Sender) -> None:
        """Sign the answer to a signed request, confirming the request's signature (WB014)."""
        if sender.signature is None or self._signer is None:
            return
        self._signer.sign(
            envelope,
            now=self._clock.now(),
            confirmations=[sender.signature.signature_value],
        )
