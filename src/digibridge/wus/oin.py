"""The Organisatie-identificatienummer (OIN): who a Digikoppeling party is.

An OIN is 20 digits: an 8-digit prefix saying where the number comes from (`00000001` RSIN,
`00000003` KvK, `00000004` sub-OIN, `00000099` test OINs, ...), the number, and a suffix. In a
PKIoverheid certificate it is the subject's `serialNumber` attribute (OID 2.5.4.5).
"""

from __future__ import annotations

import re

from cryptography import x509
from cryptography.x509.oid import NameOID

OIN_PATTERN = re.compile(r"\d{20}")
#: Prefix of OINs for testing; `digibridge dev-certs` issues only these.
TEST_OIN_PREFIX = "00000099"


def is_oin(value: str) -> bool:
    return OIN_PATTERN.fullmatch(value) is not None


def oin_of(certificate: x509.Certificate) -> str | None:
    """The OIN in the certificate's subject serialNumber, or None if it carries none.

    A certificate with several serialNumber attributes, or one that is not 20 digits, has no
    OIN we can rely on: None.
    """
    values = certificate.subject.get_attributes_for_oid(NameOID.SERIAL_NUMBER)
    if len(values) != 1:
        return None
    value = values[0].value
    text = value if isinstance(value, str) else value.decode("ascii", "replace")
    return text if is_oin(text) else None
