"""What a running gateway holds: settings, store, the loaded mappings, the dispatcher.

Built by `app.py` at start-up; the HTTP layers read it from `app.state.runtime`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from digibridge.clock import Clock
from digibridge.config import Settings
from digibridge.delivery.dispatcher import Dispatcher
from digibridge.mapping.engine import MappingSet
from digibridge.store.types import Store


@dataclass
class Runtime:
    settings: Settings
    store: Store
    clock: Clock
    mappings: MappingSet
    dispatcher: Dispatcher
    #: False until migrations ran and mappings loaded; False again while draining.
    ready: bool = field(default=False)

    def current_mappings(self) -> MappingSet:
        return self.mappings
