"""What an outcome of a DigiMelding request does to the outbox, for every store alike: the
decision is the same in SQLite and PostgreSQL, only the SQL that records it differs."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from digibridge.store.types import (
    DmksOutcome,
    DmksOutcomeKind,
    DmksRequest,
    HistoryEntry,
    HistoryKind,
    TransportStatus,
)

#: Why a request queued behind a melding that was never delivered fails with it.
FOLLOWS_FAILED_MELDING = "the melding it follows was not delivered"


@dataclass(frozen=True)
class OutboxStep:
    #: The outbox row's new status (`pending` again for a retry, `sent`, `failed`).
    status: str
    #: When a retry is due; None otherwise.
    retry_at: datetime | None
    #: The error kept on the row (a fault's text), None after a success.
    error: str | None
    #: The history entry of a fault, None after a success.
    fault: HistoryEntry | None
    #: The terugmelding's new transport status; None while the request is retried.
    transport: TransportStatus | None
    #: The claim being completed (the row is changed only while it still holds it).
    lease_until: datetime


def outbox_step(request: DmksRequest, outcome: DmksOutcome) -> OutboxStep:
    """The step `outcome` takes `request` (claimed) through; ValueError for a request that
    was not claimed or a retry without a time."""
    lease_until = request.lease_until
    if request.lease_owner is None or lease_until is None:
        raise ValueError("complete_dmks_request needs a claimed request")
    retried = outcome.kind is DmksOutcomeKind.RETRY
    if retried and outcome.retry_at is None:
        raise ValueError("a RETRY outcome needs retry_at")
    sent = outcome.kind is DmksOutcomeKind.SENT
    fault = (
        None
        if sent
        else HistoryEntry(
            kind=HistoryKind.FAULT,
            at=outcome.at,
            request_kind=request.kind,
            code=outcome.code,
            text=outcome.error,
            retried=retried,
        )
    )
    return OutboxStep(
        status="pending" if retried else outcome.kind.value,
        retry_at=outcome.retry_at if retried else None,
        error=None if sent else outcome.error,
        fault=fault,
        transport=None
        if retried
        else TransportStatus.VERZONDEN
        if sent
        else TransportStatus.MISLUKT,
        lease_until=lease_until,
    )
