"""`/v1/subscriptions`: webhook subscriptions in the CloudEvents Subscriptions API shape.

Create, list (paged, by `sink` and `types`), read, replace (PUT), change (PATCH, JSON Merge
Patch), delete, and send a test event. The id is the server's; `sinkcredential` and
`delivery.secret` are write-only: never answered (except a generated secret, once, on create)
and kept when a PUT or PATCH leaves them out. A consumer sees only its own subscriptions (404
for others'), an admin all. The sink is checked (`delivery.handshake`) on create and whenever
it changes; docs/subscriptions.md has the whole story.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import (
    ValidationError,
)

from digibridge.api._delivery_options import (
    delivery_settings,
    oauth_out,
    signature_of,
)
from digibridge.api._merge_patch import (
    PatchError,
    merge_patch,
    parse_patch,
)
from digibridge.api._paging import page_headers
from digibridge.api._subscription_models import (
    DeliveryIn,
    ProbeOut,
    SubscriptionIn,
    SubscriptionOut,
    subscription_out,
)
from digibridge.api.auth import consumer_of
from digibridge.api.problems import Problem
from digibridge.delivery.guard import SinkRefused
from digibridge.delivery.handshake import HandshakeRefused, SinkCheck
from digibridge.delivery.signing import generate_key_pair, generate_secret, is_asymmetric
from digibridge.events.filters import FilterError, validate_filters
from digibridge.runtime import Runtime
from digibridge.store.types import Subscription

router = APIRouter(prefix="/v1/subscriptions", tags=["subscriptions"])

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
#: A PATCH body larger than this is refused unread (the largest valid subscription is smaller).
MAX_PATCH_BYTES = 1024 * 1024


def _runtime(request: Request) -> Runtime:
    runtime: Runtime = request.app.state.runtime
    return runtime


async def owned_subscription(request: Request, subscription_id: str) -> Subscription:
    """The subscription, if the caller may see it: its owner, or an admin. Anyone else gets the
    404 of an id that does not exist, so ids tell nothing about other consumers."""
    subscription = await _runtime(request).store.get_subscription(subscription_id)
    if subscription is None or not consumer_of(request).owns(subscription.owner):
        raise Problem(404, f"subscription {subscription_id} does not exist")
    return subscription


@router.post("", status_code=201, response_model_exclude_none=True)
async def create_subscription(
    body: SubscriptionIn, request: Request, response: Response
) -> SubscriptionOut:
    """Create a subscription once its sink passed `delivery.handshake`; the signing secret is
    generated and shown once when omitted."""
    runtime = _runtime(request)
    subscription, generated = await _compose(runtime, body, None, owner=consumer_of(request).id)
    subscription = await _checked(runtime, subscription, None)
    await runtime.store.create_subscription(subscription)
    response.headers["Location"] = f"/v1/subscriptions/{subscription.id}"
    return subscription_out(subscription, secret=generated)


_PAGE_HEADERS = {
    "Link": {
        "description": "RFC 8288 links to the first, prev, next and last pages",
        "schema": {"type": "string"},
    },
    "X-Total-Count": {
        "description": "how many subscriptions match, on all pages",
        "schema": {"type": "integer", "minimum": 0},
    },
}


@router.get(
    "",
    response_model_exclude_none=True,
    responses={200: {"description": "one page of subscriptions", "headers": _PAGE_HEADERS}},
)
async def list_subscriptions(
    request: Request,
    response: Response,
    *,
    page: Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number")] = 1,
    page_size: Annotated[
        int, Query(alias="pageSize", ge=1, le=MAX_PAGE_SIZE, description="items per page")
    ] = DEFAULT_PAGE_SIZE,
    sink: Annotated[
        str | None, Query(min_length=1, max_length=2048, description="only this exact sink")
    ] = None,
    types: Annotated[
        list[str] | None,
        Query(description="only subscriptions naming all these types (repeat or comma-separate)"),
    ] = None,
) -> list[SubscriptionOut]:
    """The caller's subscriptions (an admin's: all), oldest first, one page at a time; `Link`
    has the first, prev, next and last pages, `X-Total-Count` the number in all."""
    wanted = [name.strip() for value in types or () for name in value.split(",") if name.strip()]
    if len(wanted) > 20 or any(len(name) > 512 for name in wanted):
        raise Problem(
            400,
            "types: at most 20 types of at most 512 characters",
            invalid_params=[{"name": "types", "reason": "at most 20 of at most 512 characters"}],
        )
    consumer = consumer_of(request)
    owner = None if consumer.admin else consumer.id
    store = _runtime(request).store
    total = await store.count_subscriptions(owner=owner, sink=sink, types=wanted)
    found = await store.list_subscriptions(
        owner=owner, sink=sink, types=wanted, offset=(page - 1) * page_size, limit=page_size
    )
    query = [("sink", sink)] if sink is not None else []
    query += [("types", ",".join(wanted))] if wanted else []
    response.headers.update(
        page_headers(request.url.path, query, page=page, page_size=page_size, total=total)
    )
    return [subscription_out(subscription) for subscription in found]


@router.get("/{subscription_id}", response_model_exclude_none=True)
async def get_subscription(subscription_id: str, request: Request) -> SubscriptionOut:
    return subscription_out(await owned_subscription(request, subscription_id))


@router.put("/{subscription_id}", response_model_exclude_none=True)
async def replace_subscription(
    subscription_id: str, body: SubscriptionIn, request: Request
) -> SubscriptionOut:
    """Replace the subscription as a whole, validated like a create. Left out, the write-only
    `delivery.secret` and `sinkcredential` are kept (`"sinkcredential": null` removes it);
    every other field left out takes its default."""
    runtime = _runtime(request)
    current = await owned_subscription(request, subscription_id)
    keep_credential = "sinkcredential" not in body.model_fields_set
    subscription, _ = await _compose(runtime, body, current, keep_credential=keep_credential)
    return await _save(runtime, await _checked(runtime, subscription, current))


@router.patch(
    "/{subscription_id}",
    response_model_exclude_none=True,
    responses={413: {"description": f"The body is larger than {MAX_PATCH_BYTES} bytes"}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "description": "JSON Merge Patch (RFC 7396) of the subscription; the result is "
            "validated as a whole, like a create",
            "content": {
                "application/merge-patch+json": {"schema": {"type": "object"}},
                "application/json": {"schema": {"type": "object"}},
            },
        }
    },
)
async def patch_subscription(subscription_id: str, request: Request) -> SubscriptionOut:
    """Change some fields (JSON Merge Patch): `null` removes a field (back to its default), an
    object merges, anything else replaces. Write-only fields the patch does not name are kept."""
    runtime = _runtime(request)
    current = await owned_subscription(request, subscription_id)
    try:
        patch = parse_patch(await _read_limited(request, MAX_PATCH_BYTES))
    except PatchError as error:
        raise _param_problem("body", str(error)) from None
    merged = merge_patch(_input_view(current), patch)
    _carry_over(merged, current, patch)
    try:
        body = SubscriptionIn.model_validate(merged)
    except ValidationError as error:
        raise _invalid(error) from None
    patched_delivery = patch.get("delivery")
    subscription, _ = await _compose(
        runtime,
        body,
        current,
        keep_credential="sinkcredential" not in patch,
        keep_tls=not (isinstance(patched_delivery, dict) and "tls" in patched_delivery),
    )
    return await _save(runtime, await _checked(runtime, subscription, current))


@router.delete("/{subscription_id}", status_code=204)
async def delete_subscription(subscription_id: str, request: Request) -> Response:
    await owned_subscription(request, subscription_id)
    if not await _runtime(request).store.delete_subscription(subscription_id):
        raise Problem(404, f"subscription {subscription_id} does not exist")
    return Response(status_code=204)


@router.post("/{subscription_id}/test")
async def test_subscription(subscription_id: str, request: Request) -> ProbeOut:
    """Send a signed `nl.digibridge.subscription.test` event to the sink the way a delivery
    goes (encoding, signature, headers, credential) and answer what the sink said. Not stored
    as a delivery."""
    runtime = _runtime(request)
    subscription = await owned_subscription(request, subscription_id)
    probe = await _sink_check(runtime).send_test(subscription)
    answer = probe.answer
    result = answer.result
    return ProbeOut(
        eventId=probe.event_id,
        outcome=result.kind.value,
        status=result.status,
        headers=dict(answer.headers),
        body=answer.excerpt,
        durationMs=round(answer.duration_ms, 3),
        error=result.reason,
    )


# -- helpers ---------------------------------------------------------------------------------


async def _compose(
    runtime: Runtime,
    body: SubscriptionIn,
    current: Subscription | None,
    *,
    owner: str | None = None,
    keep_credential: bool = False,
    keep_tls: bool = False,
) -> tuple[Subscription, str | None]:
    """The subscription a validated body describes (new, or replacing `current`), and the
    generated secret to show once (None: none was generated)."""
    try:
        validate_filters(body.filters)
    except FilterError as exc:
        raise Problem(
            400, exc.message, invalid_params=[{"name": exc.pointer, "reason": exc.message}]
        ) from None
    await _check_targets(runtime, body)
    key, generated, previous = _signing_key(body.delivery, current)
    try:
        settings = delivery_settings(body.delivery, key)
    except ValueError as exc:
        raise _param_problem("delivery.tls", str(exc)) from None
    settings = dataclasses.replace(
        settings,
        previous_secrets=previous,
        handshake=body.delivery.handshake,
        rate=body.delivery.rate,
        tls=current.delivery.tls if keep_tls and current is not None else settings.tls,
    )
    credential = body.sinkcredential.accesstoken if body.sinkcredential else None
    if keep_credential and current is not None:
        credential = current.sinkcredential
    if settings.handshake == "vng" and credential is None and settings.oauth is None:
        raise _param_problem(
            "delivery.handshake", "vng checks the credential: set sinkcredential or delivery.oauth"
        )
    fields: dict[str, Any] = {
        "sink": body.sink,
        "protocol": body.protocol,
        "types": tuple(body.types),
        "source": body.source,
        "filters": tuple(body.filters),
        "protocolsettings": body.protocolsettings.model_dump(),
        "sinkcredential": credential,
        "delivery": settings,
    }
    if current is not None:
        return dataclasses.replace(current, **fields), generated
    created = Subscription(
        id=str(uuid.uuid4()), created_at=runtime.clock.now(), owner=owner, **fields
    )
    return created, generated


def _signing_key(
    delivery: DeliveryIn, current: Subscription | None
) -> tuple[str, str | None, tuple[Any, ...]]:
    """(key, the generated secret to show or None, keys still being rotated out)."""
    if delivery.secret is not None:
        return delivery.secret, None, ()
    if current is not None:
        key = current.delivery.secret
        kind = "v1a" if is_asymmetric(key) else "v1"
        if delivery.signature is not None and delivery.signature != kind:
            raise _param_problem(
                "delivery.signature",
                f"{delivery.signature} does not match the kept secret ({kind}); give a new "
                "delivery.secret, or use rotate-secret",
            )
        if delivery.xSignature and kind == "v1a":
            raise _param_problem("delivery.xSignature", "needs an HMAC (whsec_, v1) secret")
        return key, None, current.delivery.previous_secrets
    if delivery.signature == "v1a":
        key, _public = generate_key_pair()  # the public key is in every answer; no need to show
        return key, None, ()
    secret = generate_secret()
    return secret, secret, ()


def _needs_handshake(before: Subscription, after: Subscription) -> bool:
    """A new sink, a different check, or another asked rate must be agreed with the sink."""
    return (
        before.sink != after.sink
        or before.delivery.handshake != after.delivery.handshake
        or before.delivery.rate != after.delivery.rate
    )


async def _checked(
    runtime: Runtime, subscription: Subscription, before: Subscription | None
) -> Subscription:
    """The subscription with the rate its sink granted, after the handshake when one is due.

    A refusal is a 400 naming `sink`, like a sink the SSRF guard refuses: the sink is the input
    that cannot be used, and the detail says what the receiver answered."""
    settings = subscription.delivery
    if before is not None and not _needs_handshake(before, subscription):
        allowed = before.delivery.allowed_rate
    else:
        try:
            allowed = (await _sink_check(runtime).validate(subscription)).allowed_rate
        except HandshakeRefused as exc:
            raise Problem(
                400,
                f"sink: did not pass the {settings.handshake} handshake: {exc}",
                invalid_params=[{"name": "sink", "reason": str(exc)}],
            ) from None
    return dataclasses.replace(
        subscription, delivery=dataclasses.replace(settings, allowed_rate=allowed)
    )


async def _save(runtime: Runtime, subscription: Subscription) -> SubscriptionOut:
    updated = await runtime.store.update_subscription(subscription)
    if updated is None:  # deleted meanwhile
        raise Problem(404, f"subscription {subscription.id} does not exist")
    runtime.dispatcher.wake()  # a new rate or sink may free held deliveries
    return subscription_out(updated)


def _sink_check(runtime: Runtime) -> SinkCheck:
    dispatcher = runtime.dispatcher
    return SinkCheck(
        dispatcher.guard,
        runtime.clock,
        origin=dispatcher.origin or runtime.settings.request_origin,
        timeout=runtime.settings.delivery_timeout,
    )


def _input_view(subscription: Subscription) -> dict[str, Any]:
    """The subscription as a request body would give it, without the write-only fields: what
    a merge patch applies to."""
    settings = subscription.delivery
    signature, _key = signature_of(settings)
    delivery: dict[str, Any] = {
        "signature": signature,
        "mode": settings.mode,
        "ordered": settings.ordered,
        "form": settings.form,
        "retry4xx": settings.retry_4xx,
        "xSignature": settings.x_signature,
        "handshake": settings.handshake,
    }
    if settings.timeout is not None:
        delivery["timeout"] = settings.timeout
    if settings.rate is not None:
        delivery["rate"] = settings.rate
    oauth = oauth_out(settings)
    if oauth is not None:
        delivery["oauth"] = oauth.model_dump(exclude_none=True)
    if settings.mode == "batch":
        delivery["batch"] = {
            "maxEvents": settings.batch_max_events,
            "maxBytes": settings.batch_max_bytes,
        }
    view: dict[str, Any] = {
        "sink": subscription.sink,
        "protocol": subscription.protocol,
        "types": list(subscription.types),
        "filters": [dict(expression) for expression in subscription.filters],
        "protocolsettings": dict(subscription.protocolsettings),
        "delivery": delivery,
    }
    if subscription.source is not None:
        view["source"] = subscription.source
    return view


def _carry_over(merged: Any, current: Subscription, patch: dict[str, Any]) -> None:
    """Fill in what the patch could not know: the kept OAuth client secret; and drop batch
    limits when the patch moves the mode away from batch without naming them."""
    delivery = merged.get("delivery") if isinstance(merged, dict) else None
    if not isinstance(delivery, dict):
        return
    oauth = delivery.get("oauth")
    if isinstance(oauth, dict) and "clientSecret" not in oauth and current.delivery.oauth:
        oauth["clientSecret"] = current.delivery.oauth.client_secret
    patched = patch.get("delivery")
    if isinstance(patched, dict) and "batch" not in patched and delivery.get("mode") != "batch":
        delivery.pop("batch", None)


async def _read_limited(request: Request, limit: int) -> bytes:
    size = request.headers.get("content-length", "")
    if size.isdigit() and int(size) > limit:
        raise Problem(413, f"the body is larger than {limit} bytes")
    chunks: list[bytes] = []
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise Problem(413, f"the body is larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _invalid(error: ValidationError) -> Problem:
    """A 400 naming every field the merged subscription got wrong (as for a create)."""
    params = [
        {"name": ".".join(str(part) for part in item["loc"]) or "body", "reason": item["msg"]}
        for item in error.errors()
    ]
    detail = "; ".join(f"{param['name']}: {param['reason']}" for param in params)
    return Problem(400, detail, invalid_params=params)


def _param_problem(name: str, reason: str) -> Problem:
    return Problem(400, f"{name}: {reason}", invalid_params=[{"name": name, "reason": reason}])


async def _check_targets(runtime: Runtime, body: SubscriptionIn) -> None:
    """The SSRF guard on every URL digibridge will call for this subscription."""
    targets = [("sink", body.sink)]
    if body.delivery.oauth is not None:
        targets.append(("delivery.oauth.tokenUrl", body.delivery.oauth.tokenUrl))
    for name, url in targets:
        try:
            await runtime.dispatcher.guard.check_sink(url)
        except SinkRefused as exc:
            raise _param_problem(name, str(exc)) from None
