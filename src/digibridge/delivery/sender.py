"""One HTTP attempt of one delivery (or one batch): build the signed request, send it, classify
the answer.

The sender decides only what kind of result an answer is (success, retryable, failed, gone);
when to retry is the policy's business (`retry.py`), applying it the dispatcher's.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import hashlib
import http
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import aiohttp

from digibridge import __version__
from digibridge.delivery.guard import SinkRefused
from digibridge.delivery.retry import parse_retry_after
from digibridge.delivery.signing import webhook_headers, x_signature
from digibridge.delivery.sink_client import SinkClient
from digibridge.events import http as encoding
from digibridge.store.types import Attempt, DeliveryJob, Subscription
from digibridge.tracing import LocalSpans, Spans, TraceContext, of_body

#: Kept for callers of the structured mode's content type.
STRUCTURED_CONTENT_TYPE = encoding.STRUCTURED_CONTENT_TYPE
USER_AGENT = f"digibridge/{__version__}"
EXCERPT_BYTES = 512
#: Reason phrases for answers that came without one.
_REASONS = {status.value: status.phrase for status in http.HTTPStatus}

#: Headers a subscription's `protocolsettings.headers` may not set: ours, or the transport's.
_RESERVED = frozenset(
    {"content-type", "content-length", "host", "transfer-encoding", "user-agent"}
    | {"webhook-id", "webhook-timestamp", "webhook-signature", "authorization", "x-signature"}
    | {"webhook-request-origin", "webhook-request-rate"}
)
#: Answer headers worth keeping for an operator (the test endpoint) and for the handshake.
ANSWER_HEADERS = (
    "allow",
    "content-type",
    "content-length",
    "location",
    "retry-after",
    "www-authenticate",
    "webhook-allowed-origin",
    "webhook-allowed-rate",
)


class ResultKind(enum.StrEnum):
    SUCCEEDED = "succeeded"
    #: 429, 5xx, timeout, connection error: try again later.
    RETRYABLE = "retryable"
    #: Any other answer (4xx, 3xx, bad or refused sink URL): retrying will not help.
    FAILED = "failed"
    #: 410 Gone: the sink is gone for good; stop sending to it.
    GONE = "gone"


@dataclass(frozen=True)
class SendResult:
    kind: ResultKind
    #: What went wrong, for logs and `last_error`; None on success.
    reason: str | None = None
    #: The sink's `Retry-After`, when it sent a usable one.
    retry_after: timedelta | None = None
    #: The HTTP status, when the sink answered.
    status: int | None = None

    @property
    def endpoint_failed(self) -> bool | None:
        """For the circuit breaker: did the endpoint fail (None: it was not reached)?"""
        if self.kind is ResultKind.RETRYABLE:
            return True
        if self.kind is ResultKind.FAILED and self.status is None:
            return None
        return False


def event_body(job: DeliveryJob) -> bytes:
    """The stored event in the form the subscription asked for: informatiearm when it wants that
    and the event has one, else the full (informatierijk) body."""
    if job.subscription.delivery.form == "informatiearm" and job.event.informatiearm_body:
        return job.event.informatiearm_body
    return job.event.body


def webhook_id(jobs: Sequence[DeliveryJob]) -> str:
    """The event id for one event; for a batch, an id derived from its events' ids, so the same
    batch sent again carries the same id."""
    if len(jobs) == 1:
        return jobs[0].event.id
    digest = hashlib.sha256("\n".join(job.event.id for job in jobs).encode()).hexdigest()
    return f"batch_{digest[:32]}"


def encode(jobs: Sequence[DeliveryJob]) -> tuple[dict[str, str], bytes]:
    """Content headers and body in the subscription's content mode."""
    return encode_bodies(jobs[0].subscription.delivery.mode, [event_body(job) for job in jobs])


def encode_bodies(mode: str, bodies: Sequence[bytes]) -> tuple[dict[str, str], bytes]:
    """Content headers and body of structured-mode event bodies in `mode` (binary and
    structured take the first)."""
    if mode == "batch":
        return encoding.batch(list(bodies))
    if mode == "binary":
        return encoding.binary(bodies[0])
    return encoding.structured(bodies[0])


def request_headers(
    subscription: Subscription,
    msg_id: str,
    timestamp: int,
    content: tuple[dict[str, str], bytes],
    *,
    bearer: str | None = None,
    now: datetime | None = None,
    origin: str | None = None,
    credential: bool = True,
    trace: TraceContext | None = None,
) -> dict[str, str]:
    """Headers of one attempt: the subscription's own first, ours over them. Without
    `credential`, no `Authorization` (the VNG-style check that the sink demands one); with
    `trace`, its `traceparent` (and `tracestate`)."""
    content_headers, body = content
    custom = subscription.protocolsettings.get("headers") or {}
    headers = {
        str(name): str(value)
        for name, value in dict(custom).items()
        if str(name).lower() not in _RESERVED and not str(name).lower().startswith("ce-")
    }
    headers.update(content_headers)
    headers["user-agent"] = USER_AGENT
    if origin:
        headers["webhook-request-origin"] = origin
    if trace is not None:
        headers.update(trace.headers())
    token = (bearer or subscription.sinkcredential) if credential else None
    if token:
        headers["authorization"] = f"Bearer {token}"
    settings = subscription.delivery
    previous = [key.secret for key in settings.previous_secrets if now is None or key.until > now]
    headers.update(webhook_headers(settings.secret, msg_id, timestamp, body, previous))
    if settings.x_signature:
        headers["x-signature"] = x_signature(settings.secret, body)
    return headers


@dataclass(frozen=True)
class Answer:
    """What one request got: its classified result, and what the sink said."""

    result: SendResult
    duration_ms: float
    #: The first `EXCERPT_BYTES` of the body.
    excerpt: str | None = None
    #: The `ANSWER_HEADERS` the sink sent.
    headers: Mapping[str, str] = field(default_factory=dict)


async def exchange(
    client: SinkClient,
    method: str,
    url: str,
    *,
    headers: Mapping[str, str],
    timeout: float,
    now: datetime,
    content: bytes = b"",
) -> Answer:
    """One request to a sink, never following redirects, within `timeout` seconds overall;
    errors become results, never exceptions."""
    started = time.perf_counter()
    excerpt: str | None = None
    answered: Mapping[str, str] = {}
    try:
        async with asyncio.timeout(timeout):
            answer = await client.request(
                method,
                url,
                headers=headers,
                content=content,
                timeout=timeout,
                excerpt_bytes=EXCERPT_BYTES,
            )
        result = classify(answer.status, answer.reason, answer.headers, now)
        excerpt = answer.excerpt.decode("utf-8", errors="replace") if answer.excerpt else None
        answered = {name: answer.headers[name] for name in ANSWER_HEADERS if name in answer.headers}
    except TimeoutError:
        result = SendResult(ResultKind.RETRYABLE, f"timed out after {timeout:g} s")
    except (aiohttp.NonHttpUrlClientError, ValueError) as error:
        # Never sendable. ValueErrors: aiohttp's InvalidURL, SinkRefused, and a header only
        # ASCII may go in (e.g. a token from an OAuth server).
        result = SendResult(ResultKind.FAILED, _refusal(error))
    except (aiohttp.ClientError, OSError) as error:
        result = SendResult(ResultKind.RETRYABLE, _transport_error(error))
    duration_ms = (time.perf_counter() - started) * 1000
    return Answer(result, duration_ms, excerpt, answered)


def _refusal(error: Exception) -> str:
    if isinstance(error, SinkRefused):
        return f"sink refused: {error}"
    if isinstance(error, UnicodeEncodeError):
        return f"request cannot be encoded: {error}"
    return f"bad sink URL: {error}"


def _transport_error(error: Exception) -> str:
    """A transport failure as operators read it in `last_error`: what went wrong, then the
    client library's words."""
    if isinstance(error, aiohttp.ClientConnectorError):
        kind = "ConnectError"
        detail = str(error.os_error) or str(error)
    elif isinstance(error, aiohttp.ServerDisconnectedError):
        kind, detail = "RemoteProtocolError", "the sink closed the connection without an answer"
    elif isinstance(error, aiohttp.ClientPayloadError | aiohttp.ClientResponseError):
        kind, detail = "ReadError", str(error)
    else:
        kind, detail = type(error).__name__, str(error)
    return f"{kind}: {detail}" if detail else kind


async def post(
    subscription: Subscription,
    client: SinkClient,
    msg_id: str,
    content: tuple[dict[str, str], bytes],
    *,
    now: datetime,
    timeout: float,
    bearer: str | None = None,
    origin: str | None = None,
    credential: bool = True,
    trace: TraceContext | None = None,
) -> Answer:
    """POST encoded, signed content to the subscription's sink once, as every delivery is."""
    headers = request_headers(
        subscription,
        msg_id,
        int(now.timestamp()),
        content,
        bearer=bearer,
        now=now,
        origin=origin,
        credential=credential,
        trace=trace,
    )
    return await exchange(
        client,
        "POST",
        subscription.sink,
        headers=headers,
        timeout=timeout,
        now=now,
        content=content[1],
    )


async def send(
    jobs: Sequence[DeliveryJob],
    client: SinkClient,
    *,
    now: datetime,
    timeout: float,
    bearer: str | None = None,
    origin: str | None = None,
    spans: Spans | None = None,
) -> tuple[list[Attempt], SendResult]:
    """POST the event(s) to the subscription's sink once; never follows redirects. One Attempt
    per delivery, all with the same outcome. The request continues the trace of the (first)
    event as its next hop (recorded in `spans`), named in its `traceparent` header."""
    event_trace = of_body(event_body(jobs[0]))
    hop: contextlib.AbstractContextManager[TraceContext | None] = contextlib.nullcontext()
    if event_trace is not None:
        hop = (spans or LocalSpans()).span(
            "webhook.send",
            event_trace,
            {
                "digibridge.delivery.id": jobs[0].delivery.id,
                "digibridge.event.id": jobs[0].event.id,
                "digibridge.subscription.id": jobs[0].subscription.id,
            },
        )
    with hop as trace:
        answer = await post(
            jobs[0].subscription,
            client,
            webhook_id(jobs),
            encode(jobs),
            now=now,
            timeout=timeout,
            bearer=bearer,
            origin=origin,
            trace=trace,
        )
    result = answer.result
    attempts = attempts_of(
        jobs,
        now,
        result,
        duration_ms=answer.duration_ms,
        status=result.status,
        excerpt=answer.excerpt,
    )
    return attempts, result


def attempts_of(
    jobs: Sequence[DeliveryJob],
    now: datetime,
    result: SendResult,
    *,
    duration_ms: float = 0.0,
    status: int | None = None,
    excerpt: str | None = None,
) -> list[Attempt]:
    """The Attempt record of each delivery sent (or not) together."""
    return [
        Attempt(
            delivery_id=job.delivery.id,
            number=job.delivery.attempts + 1,
            started_at=now,
            duration_ms=duration_ms,
            status_code=status,
            error=result.reason,
            response_excerpt=excerpt,
        )
        for job in jobs
    ]


def classify(code: int, reason: str, headers: Mapping[str, str], now: datetime) -> SendResult:
    """What an HTTP answer means for the delivery (CloudEvents webhook + NL guideline rules)."""
    text = f"{code} {reason or _REASONS.get(code, '')}".strip()
    if 200 <= code < 300:
        return SendResult(ResultKind.SUCCEEDED, status=code)
    if code == 410:
        return SendResult(ResultKind.GONE, text, status=code)
    if code == 429 or code >= 500:
        header = headers.get("retry-after")
        wait = None if header is None else parse_retry_after(header, now)
        return SendResult(ResultKind.RETRYABLE, text, wait, status=code)
    if 300 <= code < 400:
        location = headers.get("location", "?")
        return SendResult(
            ResultKind.FAILED, f"{text}: redirect not followed (to {location})", status=code
        )
    return SendResult(ResultKind.FAILED, text, status=code)
