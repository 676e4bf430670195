"""One HTTP attempt of one delivery: build the signed request, send it, classify the answer.

The sender decides only what kind of result an answer is (success, retryable, failed, gone);
when to retry is the policy's business (`retry.py`), applying it the dispatcher's.
"""

from __future__ import annotations

import asyncio
import enum
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from digibridge import __version__
from digibridge.delivery.retry import parse_retry_after
from digibridge.delivery.signing import webhook_headers
from digibridge.store.types import Attempt, DeliveryJob

STRUCTURED_CONTENT_TYPE = "application/cloudevents+json; charset=utf-8"
USER_AGENT = f"digibridge/{__version__}"
EXCERPT_BYTES = 512

#: Headers a subscription's `protocolsettings.headers` may not set: ours, or the transport's.
_RESERVED = frozenset(
    {"content-type", "content-length", "host", "transfer-encoding", "user-agent"}
    | {"webhook-id", "webhook-timestamp", "webhook-signature", "authorization"}
)


class ResultKind(enum.StrEnum):
    SUCCEEDED = "succeeded"
    #: 429, 5xx, timeout, connection error: try again later.
    RETRYABLE = "retryable"
    #: Any other answer (4xx, 3xx, bad sink URL): retrying will not help.
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


def request_headers(job: DeliveryJob, timestamp: int) -> dict[str, str]:
    """Headers of one attempt: the subscription's own first, ours over them."""
    custom = job.subscription.protocolsettings.get("headers") or {}
    headers = {
        str(name): str(value)
        for name, value in dict(custom).items()
        if str(name).lower() not in _RESERVED
    }
    headers["content-type"] = STRUCTURED_CONTENT_TYPE
    headers["user-agent"] = USER_AGENT
    if job.subscription.sinkcredential:
        headers["authorization"] = f"Bearer {job.subscription.sinkcredential}"
    # webhook-id is the event id, so a consumer can deduplicate across retries.
    headers.update(
        webhook_headers(job.subscription.delivery.secret, job.event.id, timestamp, job.event.body)
    )
    return headers


async def send(
    job: DeliveryJob, client: httpx.AsyncClient, *, now: datetime, timeout: float
) -> tuple[Attempt, SendResult]:
    """POST the event to the subscription's sink once; never follows redirects."""
    headers = request_headers(job, int(now.timestamp()))
    started = time.perf_counter()
    status: int | None = None
    excerpt: str | None = None
    try:
        async with asyncio.timeout(timeout):
            request = client.build_request(
                "POST",
                job.subscription.sink,
                content=job.event.body,
                headers=headers,
                timeout=httpx.Timeout(timeout),
            )
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                status = response.status_code
                excerpt = await _excerpt(response)
            finally:
                await response.aclose()
        result = classify(response, now)
    except (TimeoutError, httpx.TimeoutException):
        result = SendResult(ResultKind.RETRYABLE, f"timed out after {timeout:g} s")
    except (httpx.UnsupportedProtocol, httpx.InvalidURL) as error:
        result = SendResult(ResultKind.FAILED, f"bad sink URL: {error}")
    except httpx.TransportError as error:
        result = SendResult(ResultKind.RETRYABLE, f"{type(error).__name__}: {error}".strip())
    attempt = Attempt(
        delivery_id=job.delivery.id,
        number=job.delivery.attempts + 1,
        started_at=now,
        duration_ms=(time.perf_counter() - started) * 1000,
        status_code=status,
        error=result.reason,
        response_excerpt=excerpt,
    )
    return attempt, result


def classify(response: httpx.Response, now: datetime) -> SendResult:
    """What an HTTP answer means for the delivery (CloudEvents webhook + NL guideline rules)."""
    code = response.status_code
    text = f"{code} {response.reason_phrase}".strip()
    if 200 <= code < 300:
        return SendResult(ResultKind.SUCCEEDED)
    if code == 410:
        return SendResult(ResultKind.GONE, text)
    if code == 429 or code >= 500:
        header = response.headers.get("retry-after")
        wait = None if header is None else parse_retry_after(header, now)
        return SendResult(ResultKind.RETRYABLE, text, wait)
    if 300 <= code < 400:
        location = response.headers.get("location", "?")
        return SendResult(ResultKind.FAILED, f"{text}: redirect not followed (to {location})")
    return SendResult(ResultKind.FAILED, text)


async def _excerpt(response: httpx.Response) -> str | None:
    """The first bytes of the body, for operators; never the whole of a large answer."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        chunks.append(chunk)
        size += len(chunk)
        if size >= EXCERPT_BYTES:
            break
    data = b"".join(chunks)[:EXCERPT_BYTES]
    return data.decode("utf-8", errors="replace") if data else None
