"""Structured logging: stable event names with bound context, JSON when not on a terminal.

Correlation: the inbound endpoint binds `trace_id` and `message_id`, the dispatcher
`message_id`, `event_id` and `delivery_id` (structlog contextvars), so every line of one
request or send carries them. Above debug level, what looks like a BSN or an A-nummer (nine or
ten digits passing their checks) and webhook secrets or bearer tokens are replaced before a line
is written: a message value quoted in an error text must not reach the log.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from digibridge.events.nlgov import is_a_nummer, is_bsn

REDACTED = "[redacted]"
#: Nine or ten digits standing alone (not part of a longer number, OIN or hex id).
_NUMBER = re.compile(r"(?<![0-9A-Za-z])([0-9]{9,10})(?![0-9A-Za-z])")
_SECRET = re.compile(r"whsec_[A-Za-z0-9+/=_-]+|(?i:bearer)\s+[A-Za-z0-9._~+/=-]+")


def _scrub_text(text: str) -> str:
    text = _SECRET.sub(REDACTED, text)
    return _NUMBER.sub(
        lambda match: REDACTED if is_bsn(match[1]) or is_a_nummer(match[1]) else match[1], text
    )


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, dict):
        return {key: _scrub(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item) for item in value]
    return value


def redact_personal_data(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor: BSNs, A-nummers and secrets out of every line above debug."""
    if method_name == "debug":
        return event_dict
    for key, value in event_dict.items():
        event_dict[key] = _scrub(value)
    return event_dict


def configure_logging(
    log_format: str | None, level: str = "info", *, worker: int | None = None
) -> None:
    """Route structlog (and stdlib logging) to stderr as JSON lines or console text; every
    line of a `serve --workers` worker names it (`worker`: its pid)."""
    use_json = log_format == "json" or (log_format is None and not sys.stderr.isatty())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    numeric_level = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            *([] if worker is None else [_Worker(worker)]),
            redact_personal_data,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric_level),
        # One write per line (print() makes two), so the lines of `serve --workers` processes
        # sharing one stderr do not run into each other.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=numeric_level, stream=sys.stderr, format="%(name)s %(message)s")


class _Worker:
    """Adds `worker` (the process id) to every line."""

    def __init__(self, pid: int) -> None:
        self._pid = pid

    def __call__(
        self, logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        event_dict["worker"] = self._pid
        return event_dict
