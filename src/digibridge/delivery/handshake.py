"""Checking a sink before digibridge sends to it, and test deliveries on request.

A subscription's `delivery.handshake` says how its sink is checked on create and whenever the
sink (or the asked rate, or the check itself) changes:

- `cloudevents` (CloudEvents HTTP webhook §4, the default): `OPTIONS sink` with
  `WebHook-Request-Origin` (and `WebHook-Request-Rate` when the subscription sets a rate). Granted
  only on a 2xx with `WebHook-Allowed-Origin` equal to our origin or `*`; `WebHook-Allowed-Rate`
  (requests per minute, or `*`) is kept and the dispatcher keeps to it.
- `vng` (VNG-style): a signed test event must get a 2xx with the credential, and 401 or 403
  without it, so the receiver is known to check who calls.
- `none`: the endpoint was agreed out of band (NL guideline); nothing is sent.

Every request goes like a delivery: through the SSRF guard, with the subscription's client
certificate, headers and credential (or OAuth token), never following redirects, within the
delivery timeout.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

from digibridge.clock import Clock
from digibridge.delivery.clients import Clients
from digibridge.delivery.dispatcher import MAX_SUBSCRIPTION_TIMEOUT
from digibridge.delivery.guard import SinkGuard
from digibridge.delivery.oauth import TokenError, TokenSource
from digibridge.delivery.sender import (
    USER_AGENT,
    Answer,
    ResultKind,
    SendResult,
    encode_bodies,
    exchange,
    post,
)
from digibridge.delivery.sink_client import SinkClient
from digibridge.errors import DigibridgeError
from digibridge.events.notices import subscription_test
from digibridge.events.records import to_new_event
from digibridge.store.types import Subscription

HANDSHAKES = ("cloudevents", "none", "vng")


class HandshakeRefused(DigibridgeError):
    """The sink did not pass its check; the message says what it answered."""


@dataclass(frozen=True)
class Grant:
    """What a passed check grants: the receiver's rate (requests per minute; None: no limit
    named, or `*`)."""

    allowed_rate: int | None = None


@dataclass(frozen=True)
class ProbeResult:
    """A test event sent to a sink, and the sink's answer."""

    event_id: str
    answer: Answer


@dataclass(frozen=True)
class _Session:
    client: SinkClient
    bearer: str | None
    timeout: float


class SinkCheck:
    """Runs the handshakes and test deliveries of subscriptions (one short-lived HTTP client
    per call: these are rare, and a delivery client's pool is no place for them)."""

    def __init__(self, guard: SinkGuard, clock: Clock, *, origin: str, timeout: float) -> None:
        self._guard = guard
        self._clock = clock
        self.origin = origin
        self._timeout = timeout

    async def validate(self, subscription: Subscription) -> Grant:
        """Run the subscription's handshake; HandshakeRefused when the sink does not pass."""
        kind = subscription.delivery.handshake
        if kind == "none":
            return Grant()
        try:
            async with self._session(subscription) as session:
                if kind == "vng":
                    await self._vng(subscription, session)
                    return Grant()
                return await self._cloudevents(subscription, session)
        except TokenError as error:
            raise HandshakeRefused(f"no OAuth token for the handshake: {error}") from None

    async def send_test(self, subscription: Subscription) -> ProbeResult:
        """POST a signed `nl.digibridge.subscription.test` event exactly as a delivery goes."""
        event = to_new_event(subscription_test(subscription, self._clock.now()))
        try:
            async with self._session(subscription) as session:
                answer = await self._post_test(subscription, session, event.id, event.body)
        except TokenError as error:
            answer = Answer(SendResult(ResultKind.RETRYABLE, f"OAuth: {error}"), 0.0)
        except HandshakeRefused as error:
            answer = Answer(SendResult(ResultKind.FAILED, str(error)), 0.0)
        return ProbeResult(event.id, answer)

    @contextlib.asynccontextmanager
    async def _session(self, subscription: Subscription) -> AsyncIterator[_Session]:
        settings = subscription.delivery
        timeout = min(settings.timeout or self._timeout, MAX_SUBSCRIPTION_TIMEOUT)
        clients = Clients(self._guard, max_connections=4)
        try:
            try:
                client = clients.for_tls(settings.tls)
            except (ssl.SSLError, ValueError) as error:
                raise HandshakeRefused(f"client TLS settings unusable: {error}") from None
            bearer = None
            if settings.oauth is not None:
                bearer = await TokenSource(self._clock).token(
                    settings.oauth, clients.tokens(), timeout
                )
            yield _Session(client, bearer, timeout)
        finally:
            await clients.aclose()

    async def _post_test(
        self,
        subscription: Subscription,
        session: _Session,
        event_id: str,
        body: bytes,
        *,
        credential: bool = True,
    ) -> Answer:
        return await post(
            subscription,
            session.client,
            event_id,
            encode_bodies(subscription.delivery.mode, [body]),
            now=self._clock.now(),
            timeout=session.timeout,
            bearer=session.bearer,
            origin=self.origin,
            credential=credential,
        )

    async def _cloudevents(self, subscription: Subscription, session: _Session) -> Grant:
        headers = {
            str(name): str(value)
            for name, value in dict(subscription.protocolsettings.get("headers") or {}).items()
        }
        headers["user-agent"] = USER_AGENT
        headers["webhook-request-origin"] = self.origin
        rate = subscription.delivery.rate
        if rate is not None:
            headers["webhook-request-rate"] = str(rate)
        token = session.bearer or subscription.sinkcredential
        if token:
            headers["authorization"] = f"Bearer {token}"
        answer = await exchange(
            session.client,
            "OPTIONS",
            subscription.sink,
            headers=headers,
            timeout=session.timeout,
            now=self._clock.now(),
        )
        status = answer.result.status
        if status is None or not 200 <= status < 300:
            raise HandshakeRefused(f"the validation request (OPTIONS) got {describe(answer)}")
        allowed = answer.headers.get("webhook-allowed-origin")
        if allowed is None or (allowed.strip() != "*" and not _same_origin(allowed, self.origin)):
            raise HandshakeRefused(
                f"the validation request (OPTIONS) got {describe(answer)}, which does not allow "
                f"origin {self.origin} (WebHook-Allowed-Origin must be {self.origin} or *)"
            )
        return Grant(_allowed_rate(answer))

    async def _vng(self, subscription: Subscription, session: _Session) -> None:
        if session.bearer is None and subscription.sinkcredential is None:
            raise HandshakeRefused("the vng check needs sinkcredential or delivery.oauth")
        event = to_new_event(subscription_test(subscription, self._clock.now()))
        answer = await self._post_test(subscription, session, event.id, event.body)
        status = answer.result.status
        if status is None or not 200 <= status < 300:
            raise HandshakeRefused(f"a test event with the credential got {describe(answer)}")
        answer = await self._post_test(
            subscription, session, event.id, event.body, credential=False
        )
        if answer.result.status not in (401, 403):
            raise HandshakeRefused(
                f"a test event without the credential got {describe(answer)}; "
                "the sink must refuse it with 401 or 403"
            )


def describe(answer: Answer) -> str:
    """The answer in one line for a problem's detail: status, the handshake headers, or why
    there was none."""
    status = answer.result.status
    if status is None:
        return f"no answer ({answer.result.reason})"
    shown = [
        f"{name}: {answer.headers[name]}"
        for name in ("webhook-allowed-origin", "webhook-allowed-rate", "location")
        if name in answer.headers
    ]
    text = f"HTTP {answer.result.reason or status}"
    if shown:
        text += f" ({', '.join(shown)})"
    return text


def _same_origin(allowed: str, origin: str) -> bool:
    return allowed.strip().rstrip(".").lower() == origin.rstrip(".").lower()


def _allowed_rate(answer: Answer) -> int | None:
    value = answer.headers.get("webhook-allowed-rate")
    if value is None or value.strip() == "*":
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise HandshakeRefused(
            f"the validation request (OPTIONS) got WebHook-Allowed-Rate {value!r}: "
            "not a positive number of requests per minute or *"
        )
    return int(value)
