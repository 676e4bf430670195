"""The root of every error digibridge raises on purpose.

    DigibridgeError
    ├── SoapFault            (wus/faults.py)    a message the SOAP edge refuses, with its DK code
    ├── MappingError         (mapping/types.py) a mapping file or a message that cannot be mapped
    ├── StoreError           (store/types.py)   the store is unreachable or refused a write
    └── DeliveryError        (delivery/...)     a webhook attempt failed, with endpoint and status

Each interface turns these into its own error form in exactly one place: SOAP Faults in
`wus/inbound.py`, problem+json in `api/problems.py`, exit codes in `cli.py`.
"""


class DigibridgeError(Exception):
    """Root of digibridge's own exceptions."""
