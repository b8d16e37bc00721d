"""Where a long run is: which arm of how many, which stage, time elapsed and an estimate of
what is left. One updating line on a terminal, one line per stage otherwise (CI logs).

The plan is known before the first stage starts: the arms to train (those not in the cache)
and the arms to measure (each with the lab's measurements, plus the original model). The
estimate of what is left is the remaining stages of each kind times the mean time a stage of
that kind took so far in this run (training, loading, or each measurement), so it sharpens as
the run goes and says "estimating" until a stage of a kind has finished.

    progress = Progress(train=["paris", "tokyo"], measure=["paris", "tokyo", "original"],
                        what=("probe", "distances"))
    with progress.stage("train", "tokyo"):
        ...
"""

from __future__ import annotations

import sys
import time
from contextlib import contextmanager


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}" if seconds >= 3600 \
        else f"{seconds // 60}:{seconds % 60:02d}"


class Progress:
    def __init__(self, train: list[str], measure: list[str], what: tuple[str, ...], stream=None,
                 clock=time.monotonic):
        self.arms = [a for a in dict.fromkeys(list(measure) + list(train)) if a != "original"]
        self.to_train = set(train)
        self.todo = {("train", a) for a in train} | {(w, a) for a in measure for w in what}
        self.durations: dict[str, list[float]] = {}
        self.stream = stream or sys.stderr
        self.clock = clock
        self.start = clock()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.open_line = False

    def left(self, kinds=None) -> float | None:
        """Seconds the remaining stages (of `kinds`, default all) should take: per stage, this
        run's mean for its kind, or for a measurement not yet seen, the mean of the measurements
        seen (None while there is nothing to go by)."""
        measured = [d for kind, ds in self.durations.items() if kind != "train" for d in ds]
        total = 0.0
        for kind, _ in self.todo:
            if kinds is not None and kind not in kinds:
                continue
            seen = self.durations.get(kind) or (measured if kind != "train" else None)
            if not seen:
                return None
            total += sum(seen) / len(seen)
        return total

    def line(self, kind: str, arm: str) -> str:
        where = f"arm {self.arms.index(arm) + 1}/{len(self.arms)} {arm}" if arm in self.arms else f"{arm} model"
        left, training_left = self.left(), self.left(("train",))
        if left is not None:
            eta = f"about {_clock(left)} left"
        elif training_left:      # still training, no measurement timed yet
            eta = f"about {_clock(training_left)} of training left, then the measurements"
        else:
            eta = "estimating what is left"
        what = kind if kind != "train" else "training" if arm in self.to_train else "reading the adapter from the cache"
        return f"latent_city: [{where}] {what} · {_clock(self.clock() - self.start)} elapsed · {eta}"

    def write(self, text: str) -> None:
        if self.tty:
            self.stream.write("\r\033[K" + text)
            self.open_line = True
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.open_line:
            self.stream.write("\n")
            self.stream.flush()
            self.open_line = False

    def finished(self, kind: str, arm: str, seconds: float) -> None:
        """A stage that ran elsewhere (an adapter trained in a worker process) finished; `seconds`
        is the wall time it added to the run (with workers side by side, less than it took)."""
        self.todo.discard((kind, arm))
        self.durations.setdefault(kind, []).append(seconds)
        self.write(self.line(kind, arm).replace("] training ·", "] trained ·"))

    def read_from_cache(self, kind: str, arm: str) -> None:
        """A measurement read from the measurement cache: done, and neither timed (a read says
        nothing of what measuring takes) nor a line of its own (the lab says how many it read)."""
        self.todo.discard((kind, arm))

    @contextmanager
    def stage(self, kind: str, arm: str):
        """A stage of `kind` ("train", "load" or a measurement) for `arm`; timed when it ends."""
        self.todo.discard((kind, arm))
        self.write(self.line(kind, arm))
        started = self.clock()
        try:
            yield
        finally:
            if kind != "train" or arm in self.to_train:     # a cached adapter says nothing of training time
                self.durations.setdefault(kind, []).append(self.clock() - started)
