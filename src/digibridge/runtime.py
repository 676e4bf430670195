"""What a running gateway holds: settings, store, the loaded mappings, the dispatcher.

Built by `app.py` at start-up; the HTTP layers read it from `app.state.runtime`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from digibridge.clock import Clock
from digibridge.config import Settings
from digibridge.delivery.dispatcher import Dispatcher
from digibridge.events.feed import FeedSignal
from digibridge.mapping.check import CheckProblem, check_directory
from digibridge.mapping.engine import MappingSet
from digibridge.mapping.types import MappingError
from digibridge.metrics import Metrics
from digibridge.store.types import Store
from digibridge.wus.digilevering import read_levering

log = structlog.get_logger("digibridge")


class MappingsRefused(MappingError):
    """A mapping folder that does not pass `digibridge check`; `problems` lists why."""

    def __init__(self, folder: Path, problems: tuple[CheckProblem, ...]) -> None:
        lines = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"{len(problems)} problem(s):\n{lines}", location=str(folder))
        self.problems = problems


def load_checked_mappings(settings: Settings) -> MappingSet:
    """The mapping set of `settings.mappings` if it passes `check` (files and samples), with the
    gateway's own base URL; MappingsRefused otherwise."""
    folder = Path(settings.mappings)
    result = check_directory(
        folder, read_message=lambda data: read_levering(data, max_depth=settings.max_xml_depth)
    )
    if result.mapping_set is None or not result.ok:
        raise MappingsRefused(folder, result.problems)
    return result.mapping_set.rebased(settings.base_url)


@dataclass
class Runtime:
    settings: Settings
    store: Store
    clock: Clock
    mappings: MappingSet
    dispatcher: Dispatcher
    #: `/metrics`; the terugmeldingen workers count status changes with
    #: `metrics.terugmelding_status(kind, status)`.
    metrics: Metrics = field(default_factory=Metrics)
    #: Wakes the event streams when events are stored; closed while shutting down.
    feed: FeedSignal = field(init=False)
    #: False until migrations ran and mappings loaded; False again while draining.
    ready: bool = field(default=False)
    #: A worker of `serve --workers`: asks the others to reload too (its parent's SIGHUP).
    reload_siblings: Callable[[], None] | None = None
    _reloading: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)

    def __post_init__(self) -> None:
        self.feed = FeedSignal(max_streams=self.settings.sse_max_streams)

    def started(self) -> None:
        """Migrations ran and mappings loaded: ready, and event streams may run."""
        self.feed.open()
        self.ready = True
        self.metrics.ready.set(1)

    def stopping(self) -> None:
        """Draining: not ready any more, and open event streams end."""
        self.ready = False
        self.metrics.ready.set(0)
        self.feed.close()

    def events_stored(self) -> None:
        """New events are committed: deliveries may be due, and waiting streams have news."""
        self.dispatcher.wake()
        self.feed.notify()

    def current_mappings(self) -> MappingSet:
        return self.mappings

    async def reload_mappings(self, *, trigger: str) -> MappingSet:
        """Load the mapping folder again and swap it in if it passes `check`; otherwise keep the
        loaded set and raise MappingsRefused. Messages in flight finish with the set they began
        with: the swap is one assignment."""
        async with self._reloading:
            try:
                mappings = await asyncio.to_thread(load_checked_mappings, self.settings)
            except MappingsRefused as exc:
                log.warning(
                    "mappings_reload_refused",
                    trigger=trigger,
                    mappings=str(self.settings.mappings),
                    problems=[str(problem) for problem in exc.problems],
                )
                raise
            self.mappings = mappings
            log.info(
                "mappings_reloaded",
                trigger=trigger,
                mappings=str(self.settings.mappings),
                files=[path.name for path in mappings.files],
                event_types=len(mappings.event_types),
            )
            if trigger == "api" and self.reload_siblings is not None:
                # Their reload comes as SIGHUP (this worker's too: the same files, no harm).
                self.reload_siblings()
            return mappings
