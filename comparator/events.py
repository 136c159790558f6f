"""What a comparison is doing now: phase events for progress displays (the CLI's, or a pipeline's log).

`compare(..., events=listener)` calls `listener(Event)` when a phase starts, advances and ends. Phases:
`load` (reading and checking the model), `tap` (writing the tapped copy), `run` (the workers; `variant` events
say which run of which variant is going on: `untapped open`, `tapped run`...), `compare` (the tensors, counted),
`isolate` (the --isolate replay), `windows` (tapping in windows, counted) and `window` (one of them: `run` and
`compare` repeat in each); the gate's `baseline` (reading its bundle) and capture's `bundle` (writing one).
A listener must be quick and must not raise.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Event:
    """One phase event: which phase, what a person reads, its count, whether it ended."""
    phase: str          # load | tap | run | compare | isolate | windows | window | baseline | bundle | variant
    text: str           # what a person reads: "loading and checking the model"
    done: int = 0       # units done so far (tensors compared, variants finished)
    total: int = 0      # units in all; 0: not counted
    end: bool = False   # the phase has finished
    variant: str = ""   # for `variant` events: which variant


Listener = Callable[[Event], None]


def emit(listener: Listener | None, *args: object, **kwargs: object) -> None:
    """Send Event(*args, **kwargs) to listener, if any."""
    if listener is not None:
        listener(Event(*args, **kwargs))  # type: ignore[arg-type]
