"""`digibridge deliveries list|show|retry`: the delivery log of a running gateway, over its
REST API, for operators without curl."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


class _Api:
    def __init__(self, url: str, api_key: str | None) -> None:
        headers = {"accept": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=30)

    def call(self, method: str, path: str, **params: Any) -> Any:
        try:
            response = self._client.request(
                method, path, params={k: v for k, v in params.items() if v is not None}
            )
        except httpx.HTTPError as error:
            _fail(f"cannot reach the gateway at {self._client.base_url}: {error}")
        if response.status_code >= 400:
            try:
                detail = response.json().get("detail", response.text)
            except ValueError:
                detail = response.text
            _fail(f"{response.status_code}: {detail}")
        return response.json()


def _fail(message: str) -> None:
    click.echo(f"digibridge: {message}", err=True)
    sys.exit(1)


pass_api = click.make_pass_decorator(_Api)


@click.group("deliveries")
@click.option(
    "--url",
    envvar="DIGIBRIDGE_URL",
    default=DEFAULT_URL,
    show_default=True,
    help="Base URL of the running gateway (env DIGIBRIDGE_URL).",
)
@click.option(
    "--api-key",
    envvar="DIGIBRIDGE_API_KEY",
    help="API key for the REST API (env DIGIBRIDGE_API_KEY).",
)
@click.pass_context
def deliveries(ctx: click.Context, url: str, api_key: str | None) -> None:
    """The delivery log of a running gateway: list, show and retry deliveries."""
    ctx.obj = _Api(url, api_key)


@deliveries.command("list")
@click.option(
    "--status", type=click.Choice(["pending", "failed", "succeeded", "dead"]), help="Only these."
)
@click.option("--subscription", help="Only this subscription's deliveries.")
@click.option("--after", help="Cursor: continue after the previous page.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print the API's JSON page.")
@pass_api
def list_command(
    api: _Api,
    *,
    status: str | None,
    subscription: str | None,
    after: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List deliveries, oldest first (one line each)."""
    page = api.call(
        "GET",
        "/v1/deliveries",
        status=status,
        subscription=subscription,
        after=after,
        limit=limit,
    )
    if as_json:
        click.echo(json.dumps(page, indent=2, ensure_ascii=False))
        return
    for item in page["deliveries"]:
        code = item["lastStatusCode"] or "-"
        error = item["lastError"] or ""
        click.echo(
            f"{item['id']}  {item['status']:<9}  attempts={item['attemptCount']:<3} "
            f"last={code!s:<4} sub={item['subscriptionId']}  event={item['eventId']}  {error}"
        )
    following = page.get("_links", {}).get("next")
    if following:
        cursor = httpx.URL(following["href"]).params.get("after")
        click.echo(f"more: --after {cursor}", err=True)


@deliveries.command("show")
@click.argument("delivery_id")
@pass_api
def show_command(api: _Api, delivery_id: str) -> None:
    """Show one delivery with every attempt, as JSON."""
    click.echo(json.dumps(api.call("GET", f"/v1/deliveries/{delivery_id}"), indent=2))


@deliveries.command("retry")
@click.argument("delivery_id")
@pass_api
def retry_command(api: _Api, delivery_id: str) -> None:
    """Send a delivery again now (e.g. a dead letter), with a fresh retry schedule."""
    item = api.call("POST", f"/v1/deliveries/{delivery_id}/retry")
    click.echo(f"{item['id']} queued again ({item['status']})")
