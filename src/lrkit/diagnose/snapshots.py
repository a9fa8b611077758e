"""The guard's two state copies: the latest snapshot, and a verified one to fall back on.

A snapshot is *verified* once good steps have followed it: the loss those steps read was finite,
so the state was sound. Checking every parameter for finiteness when a snapshot is taken would
cost more than the copy itself on small models; instead the rare rollback checks the latest
snapshot, and falls back to the verified one when the update just before it broke a parameter.
Of the verified snapshots the keeper holds the best (the lowest level: the median of the losses
just before it) or, with ``keep_best=False``, the newest. A new snapshot overwrites the buffers of
the one it retires, so there are never more than two copies, and no model-sized buffer is
allocated and freed each time.
"""
from __future__ import annotations

import math
import os
from typing import Any, Callable

import torch

from lrkit.state import Snapshot, group_layout


class SnapshotKeeper:
    """Latest and verified snapshots of one model and optimizer (see the module docstring)."""

    def __init__(self, model: torch.nn.Module, optimizer: torch.optim.Optimizer, *,
                 where: str = "cpu", directory: str | os.PathLike | None = None,
                 keep_best: bool = True,
                 agree: Callable[[bool], bool] | None = None) -> None:
        """``agree``: under DDP, turns this rank's "the latest snapshot is sound" into every
        rank's (sound on all of them), so that all fall back together or none does."""
        self._model = model
        self._agree = agree
        self._optimizer = optimizer
        self._where = where
        self._directory = directory
        self.keep_best = keep_best
        self.latest: Snapshot | None = None
        self.latest_step = 0
        self._latest_level = math.inf
        self.best: Snapshot | None = None  #: the verified one
        self.best_step = 0
        self._best_level = math.inf

    def take(self, step: int, level: float, extra: Any = None) -> None:
        """Snapshot the current state (taken after ``step`` steps, at ``level``) as the latest.
        The previous latest, which good steps have followed since, is verified now: it becomes
        the best, or its buffers take the new copy. ``extra``: kept with the snapshot, as its
        ``extra`` attribute (the guard's GradScaler state)."""
        prev, retired = self.latest, None
        if prev is not None and prev.layout != group_layout(self._optimizer):
            # the optimizer's groups changed (add_param_group): the older copies cannot be
            # restored into it, and this one starts afresh, as the first did
            self.close()
            prev = None
        if prev is not None and prev is not self.best:
            if self.best is None or not self.keep_best or self._latest_level <= self._best_level:
                retired = self.best
                self.best, self._best_level = prev, self._latest_level
                self.best_step = self.latest_step
            else:
                retired = prev
        # torch's generators only: a rollback does not rewind the user's data pipeline, which is
        # what numpy's and Python's generators feed (and copying them costs ~40 us a snapshot)
        snapshot = Snapshot(self._model, self._optimizer, where=self._where,
                            directory=self._directory, torch_rng_only=True, reuse=retired)
        snapshot.extra = extra
        if prev is None:  # the first snapshot: the state the user handed over
            self.best, self._best_level, self.best_step = snapshot, level, step
        self.latest, self._latest_level, self.latest_step = snapshot, level, step

    def rollback_target(self) -> Snapshot:
        """The latest snapshot, unless the update just before it broke a parameter (an incident
        right after a snapshot): then the verified one, which becomes the latest."""
        assert self.latest is not None
        candidate = self.best is not None and self.latest is not self.best
        sound = self.latest.parameters_finite() if candidate else True
        if self._agree is not None:
            # the ranks' buffers differ (BatchNorm statistics of their own batches): a rank
            # falling back alone would restore other weights than the others. Every rank takes
            # part, whether or not it holds two snapshots (their histories can differ: a rank
            # whose weights broke took no new snapshot), or one waits in the collective alone
            sound = self._agree(sound)
        if candidate and not sound:
            self.fall_back()
        return self.latest

    def fall_back(self) -> None:
        """Drop the latest snapshot: the verified (best) one is the latest from now on."""
        if self.best is not None and self.latest is not self.best:
            if self.latest is not None:
                self.latest.discard()
            self.latest, self._latest_level, self.latest_step = \
                self.best, self._best_level, self.best_step

    def lowest(self) -> None:
        """Make the lower-level of the two snapshots the latest (the rollback target), for a run
        that slid back over many steps. Good steps have followed the latest by then, so it is
        sound, and when it is the lower one it becomes the best as well."""
        if self.latest is None or self.best is None or self.latest is self.best:
            return
        if self._latest_level < self._best_level:
            self.best.discard()
            self.best, self._best_level, self.best_step = \
                self.latest, self._latest_level, self.latest_step
        else:
            self.fall_back()

    def close(self) -> None:
        """Free both copies (and their files when on disk)."""
        for snapshot in {id(s): s for s in (self.best, self.latest) if s is not None}.values():
            snapshot.discard()
        self.best = self.latest = None
