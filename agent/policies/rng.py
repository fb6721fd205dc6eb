"""A seeded RNG whose state is JSON-safe, so a resumed run draws the same numbers."""

from __future__ import annotations

import random


class JsonRandom(random.Random):
    def state(self) -> list:
        version, internal, gauss_next = self.getstate()
        return [version, list(internal), gauss_next]

    def set_state(self, state: list) -> None:
        version, internal, gauss_next = state
        self.setstate((int(version), tuple(int(x) for x in internal), gauss_next))
