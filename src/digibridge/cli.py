"""The `digibridge` command."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import click

from digibridge import __version__
from digibridge.config import ConfigError, Settings, load_settings
from digibridge.errors import DigibridgeError
from digibridge.logs import configure_logging


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"digibridge: {message}", err=True)
    sys.exit(code)


def _settings(config: Path | None, **overrides: object) -> Settings:
    try:
        return load_settings(config, **overrides)
    except ConfigError as exc:
        _fail(str(exc), code=2)
        raise  # unreachable; keeps the type checker sure a Settings comes back


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="digibridge")
def main() -> None:
    """digibridge: DigiLevering SOAP in, signed NL GOV CloudEvent webhooks out."""


@main.command()
@click.option("--config", type=click.Path(path_type=Path), help="TOML configuration file.")
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8000).")
@click.option("--mappings", type=click.Path(path_type=Path), help="Folder of mapping files.")
def serve(config: Path | None, host: str | None, port: int | None, mappings: Path | None) -> None:
    """Run the gateway: inbound SOAP endpoint, REST API and webhook delivery."""
    import uvicorn  # noqa: PLC0415 - only the server command needs it

    from digibridge.app import WUS_PATH, create_app, preflight  # noqa: PLC0415

    settings = _settings(config, host=host, port=port, mappings=mappings)
    configure_logging(settings.log_format, settings.log_level)
    try:
        app = create_app(settings)
        asyncio.run(preflight(app))
    except DigibridgeError as exc:
        _fail(str(exc), code=2)
    base = settings.base_url
    click.echo(f"digibridge {__version__} listening on http://{settings.host}:{settings.port}")
    click.echo(f"  inbound SOAP (WUS):  POST {base}{WUS_PATH}")
    click.echo(f"  WSDL:                {base}{WUS_PATH}?wsdl")
    click.echo(f"  REST API:            {base}/v1/subscriptions  (OpenAPI: {base}/v1/openapi.json)")
    click.echo(f"  store:               {settings.store_url}")
    click.echo(f"  mappings:            {settings.mappings}")
    if not settings.api_keys:
        click.echo(
            "  API access:          no API keys configured: the REST API answers loopback only"
        )
    sys.stdout.flush()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(settings.delivery_timeout) + 5,
    )


@main.command("map")
@click.argument("message", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--mappings", type=click.Path(path_type=Path), help="Folder of mapping files.")
def map_command(message: Path, mappings: Path | None) -> None:
    """Dry run: print the CloudEvents a DigiLevering MESSAGE.xml becomes."""
    from digibridge.mapping.engine import MappingSet  # noqa: PLC0415
    from digibridge.wus._xml import XmlRefused, parse_untrusted  # noqa: PLC0415
    from digibridge.wus.digilevering import operation_for, parse_levering  # noqa: PLC0415
    from digibridge.wus.faults import SoapFault  # noqa: PLC0415

    settings = _settings(None, mappings=mappings)
    try:
        mapping_set = MappingSet.load(Path(settings.mappings), dataschema_base=settings.base_url)
        element = parse_untrusted(message.read_bytes(), max_depth=settings.max_xml_depth)
        operation_for(element)
        events = mapping_set.map(parse_levering(element))
    except XmlRefused as exc:
        _fail(f"{message}: {exc.reason}")
    except SoapFault as exc:
        where = f" (element {exc.element})" if exc.element else ""
        _fail(f"{message}: not a valid DigiLevering message{where}: {exc.reason}")
    except DigibridgeError as exc:
        _fail(f"{message}: {exc}")
    click.echo(json.dumps([event.to_json_dict() for event in events], indent=2, ensure_ascii=False))


@main.command()
@click.argument("message", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--to", "to", required=True, help="Endpoint URL, e.g. http://127.0.0.1:8000/wus/digilevering"
)
@click.option("--soap12", is_flag=True, help="Send as SOAP 1.2 instead of SOAP 1.1.")
@click.option("--message-id", help="wsa:MessageID to use (default: a new urn:uuid).")
@click.option("--from-oin", help="Sender OIN, sent as wsa:From/Address?OIN=…")
def send(
    message: Path, to: str, soap12: bool, message_id: str | None, from_oin: str | None
) -> None:
    """Send a DigiLevering MESSAGE.xml as a WUS SOAP call (a zeep client from the served WSDL)."""
    from digibridge.wus.client import SendError, send_levering  # noqa: PLC0415

    try:
        result = send_levering(message, to, soap12=soap12, message_id=message_id, from_oin=from_oin)
    except SendError as exc:
        _fail(str(exc))
    click.echo(
        json.dumps(
            {
                "messageId": result.message_id,
                "relatesTo": result.relates_to,
                "acknowledgement": result.acknowledgement,
            },
            indent=2,
            ensure_ascii=False,
            default=str,
        )
    )


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=9000, show_default=True, type=int)
@click.option("--secret", help="whsec_… secret to verify Standard Webhooks signatures with.")
def receive(host: str, port: int, secret: str | None) -> None:
    """A local webhook receiver: verifies signatures and prints each CloudEvent."""
    import uvicorn  # noqa: PLC0415

    from digibridge.delivery.receiver import create_receiver_app  # noqa: PLC0415

    app = create_receiver_app(secret, out=click.echo)
    check = "verifying signatures" if secret else "NOT verifying signatures (no --secret)"
    click.echo(f"receiving webhooks on http://{host}:{port}/ ({check})")
    sys.stdout.flush()
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
