"""WS-Security for Digikoppeling WUS profile 2W-be-S: sign envelopes, verify signatures.

    SignatureRefused (DigibridgeError)   a signature, its token or its timestamp does not hold

`EnvelopeSigner` signs what digibridge sends (answers, `digibridge send`, DigiMelding);
`verify_envelope` checks what arrives (requests, and answers to what we sent).
"""

from digibridge.wus.wsse.signer import EnvelopeSigner
from digibridge.wus.wsse.verifier import (
    SignatureRefused,
    VerifiedSignature,
    is_signed,
    security_header,
    verify_envelope,
)

__all__ = [
    "EnvelopeSigner",
    "SignatureRefused",
    "VerifiedSignature",
    "is_signed",
    "security_header",
    "verify_envelope",
]
