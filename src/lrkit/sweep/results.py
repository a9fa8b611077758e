"""What a sweep found: a ranked table, the best rate and the band of near-best rates, the seed
comparison, plots, per-trial curves and diagnoses, CSV and JSON export."""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import statistics
from pathlib import Path
from typing import Any, Iterable

from lrkit.errors import is_real, require, require_folder, require_plot_path
from lrkit.files import write_atomically

FINISHED, PRUNED, DIVERGED, FAILED = "finished", "pruned", "diverged", "failed"
_RANK = {FINISHED: 0, PRUNED: 1, DIVERGED: 2, FAILED: 3, "running": 4, "waiting": 5}


@dataclasses.dataclass
class TrialRecord:
    """One stored trial (one attempt at one point)."""

    number: int
    optimizer: str
    lr: float
    seed: int
    status: str
    loss: float | None = None
    val_loss: float | None = None
    train_loss: float | None = None
    metric: float | None = None
    metric_name: str | None = None
    steps: int = 0
    seconds: float | None = None
    phase: str | None = None
    diverged_step: int | None = None
    retry_of: int | None = None
    error: str | None = None
    curve: list[list[float]] = dataclasses.field(default_factory=list)
    eval_curve: list[list[float]] = dataclasses.field(default_factory=list)
    diagnosis: str | None = None
    diagnosis_detail: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class PointSummary:
    """One (optimizer, rate) over its seeds: ``loss`` is the mean final loss of the finished
    seeds, ``loss_sd`` their standard deviation (None with one seed). ``status`` is
    ``diverged`` when any seed diverged, else the best status of its seeds."""

    optimizer: str
    lr: float
    status: str
    loss: float | None
    loss_sd: float | None
    seeds: int
    losses: list[float]
    metric: float | None
    steps: int
    trials: list[int]
    diagnosis: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


_STOPPED = ("the sweep is not finished (the strategy has trials left to run: a trial failed, "
            "or the sweep was stopped between trials)")


def _clean(value: Any) -> Any:
    if not isinstance(value, (bool, int, float, str, dict, list, tuple)) and value is not None:
        if getattr(value, "shape", ()) != () and callable(getattr(value, "tolist", None)):
            return _clean(value.tolist())
        if callable(getattr(value, "item", None)):  # a numpy or torch scalar (float32: "not
            value = value.item()                    # JSON serializable")
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


def _diagnosis_text(found: dict[str, Any] | None, *, pruned: bool = False) -> str | None:
    """The verdict, its advice and confidence, in a table cell. A pruned trial's curve stops
    early and its advice is left out: it read "plateaued (x3)" for the highest rate of a
    sweep, pruned because lower rates did better."""
    if not found or not found.get("verdict"):
        return None
    text = str(found["verdict"])
    advice = "" if pruned else str(found.get("recommendation") or "")
    extra = ["keep" if advice.startswith("keep") else advice.split(" ")[0]] if advice else []
    if isinstance(found.get("confidence"), (int, float)):
        extra.append(f"{found['confidence']:.0%}")
    if pruned:
        extra.append("pruned: no advice")
    return text + (f" ({', '.join(extra)})" if extra else "")


class SweepResult:
    """The trials of one sweep (only those matching its settings) and what they show."""

    def __init__(self, records: Iterable[TrialRecord], *, settings: dict[str, Any],
                 study_name: str = "", storage: str = "", strategy: str = "",
                 band_tolerance: float = 0.02, diagnose: bool = True,
                 complete: bool | None = None) -> None:
        require(is_real(band_tolerance) and band_tolerance >= 0,
                f"band_tolerance must be a number >= 0, got {band_tolerance!r}")
        band_tolerance = float(band_tolerance)
        # copies: diagnoses are filled in or cleared here, not in the caller's records
        self.records = sorted((dataclasses.replace(r) for r in records), key=lambda r: r.number)
        self.settings = settings
        self.study_name = study_name
        self.storage = storage
        self.strategy = strategy
        self.band_tolerance = band_tolerance
        #: whether the strategy has nothing left to run (None: not known). A sweep stopped by a
        #: trial's error, Ctrl-C or a kill between trials has no trial running or waiting, and
        #: read as complete
        self.complete = complete
        self._points: list[PointSummary] | None = None
        #: diverged_from per optimizer, worked out once (as the points): the ranking, the best
        #: and the bands ask it for every point, and each answer read every record, so a
        #: summary and a JSON export cost O(points x records) (2 s at 2,000 trials)
        self._diverged: dict[str, float | None] = {}
        for record in self.records:
            if not diagnose:
                record.diagnosis = record.diagnosis_detail = None
            elif record.diagnosis is None:
                record.diagnosis = _diagnosis_text(record.diagnosis_detail,
                                                   pruned=record.status == PRUNED)

    # -- aggregation -------------------------------------------------------------------------------
    @property
    def optimizers(self) -> list[str]:
        labels = self.settings.get("optimizer_labels")
        return list(labels) if labels else sorted({r.optimizer for r in self.records})

    @property
    def total_steps(self) -> int:
        """Training steps used by every attempt, interrupted ones included."""
        return sum(r.steps for r in self.records)

    def completed(self) -> list[TrialRecord]:
        """One final attempt per (optimizer, rate, seed): finished, pruned, diverged or failed."""
        chosen: dict[tuple, TrialRecord] = {}
        for r in self.records:
            key = (r.optimizer, r.lr, r.seed)
            if key not in chosen or _RANK[r.status] < _RANK[chosen[key].status]:
                chosen[key] = r
        return sorted(chosen.values(), key=lambda r: (r.optimizer, r.lr, r.seed))

    def points(self) -> list[PointSummary]:
        """One row per (optimizer, rate), ranked: finished by mean loss, then pruned, diverged."""
        if self._points is None:
            self._points = self._aggregate()
        return list(self._points)

    def _aggregate(self) -> list[PointSummary]:
        groups: dict[tuple[str, float], list[TrialRecord]] = {}
        for r in self.completed():
            groups.setdefault((r.optimizer, r.lr), []).append(r)
        rows = []
        for (opt, lr), recs in groups.items():
            done = [r for r in recs if r.status == FINISHED and r.loss is not None]
            losses = [r.loss for r in done]
            metrics = [r.metric for r in done if r.metric is not None]
            # a rate that diverged with any seed is not a safe choice: it is reported diverged
            # (never best, and it ends the band) even when its other seeds finished
            status = (DIVERGED if any(r.status == DIVERGED for r in recs)
                      else min((r.status for r in recs), key=lambda s: _RANK[s]))
            rows.append(PointSummary(
                optimizer=opt, lr=lr, status=status,
                loss=statistics.fmean(losses) if losses else None,
                loss_sd=statistics.stdev(losses) if len(losses) > 1 else None,
                seeds=len(losses), losses=losses,
                metric=statistics.fmean(metrics) if metrics else None,
                steps=sum(r.steps for r in recs), trials=[r.number for r in recs],
                diagnosis=next((r.diagnosis for r in recs if r.diagnosis), None)))
        # rates repeated over more seeds rank first: a mean over seeds is not compared with the
        # single run of a rate that was not among the top candidates
        # (and a finished rate in the infeasible region after the feasible ones: ranked first,
        # it stood above the best in the table and the JSON)
        return sorted(rows, key=lambda p: (_RANK[p.status], not self._eligible(p), -p.seeds,
                                           p.loss if p.loss is not None else math.inf, -p.lr))

    def _eligible(self, p: PointSummary) -> bool:
        """Finished, and below the rates the strategy marks infeasible: those from the lowest at
        which a first-seed (walk) trial of its optimizer diverged. One that finished there (a
        trial started beside a lower one that then diverged, under several workers) became the
        best: the answer hung on the number of workers. (A rate that diverged only on a repeat
        seed is never best itself, its status being diverged, and leaves higher ones alone.)"""
        if p.status != FINISHED or p.loss is None:
            return False
        limit = self.diverged_from(p.optimizer)
        return limit is None or p.lr < limit

    @property
    def best(self) -> PointSummary | None:
        """The finished point with the lowest loss; with seeds, the lowest mean loss among the
        rates repeated over the most seeds (the top candidates). Rates at or above one where
        the optimizer diverged are never best."""
        finished = [p for p in self.points() if self._eligible(p)]
        return finished[0] if finished else None

    @property
    def best_lr(self) -> float | None:
        return self.best.lr if self.best else None

    def best_by_optimizer(self) -> dict[str, PointSummary]:
        out: dict[str, PointSummary] = {}
        for p in self.points():
            if self._eligible(p) and p.optimizer not in out:
                out[p.optimizer] = p
        return out

    def diverged_from(self, optimizer: str) -> float | None:
        """The lowest rate at which a first-seed (walk) trial of ``optimizer`` diverged: the
        region the strategy marks infeasible. A repeat seed's divergence marks its own rate
        diverged (in the table) and leaves the rates above alone: the summary said "diverged at
        lr >= 0.1" beside a best of 0.3 that no seed of it diverged at."""
        if optimizer not in self._diverged:
            self._diverged[optimizer] = self._diverged_from(optimizer)
        return self._diverged[optimizer]

    def _diverged_from(self, optimizer: str) -> float | None:
        if (self.settings.get("strategy") or {}).get("mode") == "grid":
            # the full grid runs every rate and marks nothing infeasible (it is the reference):
            # the region is the rates from which every one tried diverged ("diverged at lr >=
            # 0.1" stood beside a best of 0.3 that finished)
            statuses: dict[float, set[str]] = {}
            for r in self.records:
                if r.optimizer == optimizer:
                    statuses.setdefault(r.lr, set()).add(r.status)
            region = None
            for lr in sorted(statuses, reverse=True):  # (a rate diverged with any seed)
                if DIVERGED not in statuses[lr]:
                    break
                region = lr
            return region
        lrs = [r.lr for r in self.records
               if r.optimizer == optimizer and r.status == DIVERGED and r.seed == 0]
        return min(lrs) if lrs else None

    @staticmethod
    def noise(first: PointSummary, second: PointSummary) -> float | None:
        """The standard error of the difference of two points' mean losses from seed noise,
        ``sqrt(sd1**2 / n1 + sd2**2 / n2)`` (a point run once has no measured spread and adds
        none); None when neither was repeated over seeds. Two points differ beyond seed noise
        when their difference exceeds twice this (:meth:`seed_comparison`, :meth:`band`)."""
        if not any(p.seeds > 1 and p.loss_sd is not None for p in (first, second)):
            return None
        return math.sqrt(sum((p.loss_sd or 0) ** 2 / max(1, p.seeds) for p in (first, second)))

    def band(self, optimizer: str | None = None, tolerance: float | None = None
             ) -> tuple[float, float] | None:
        """The contiguous range of rates around the best (of ``optimizer``, default the overall
        best's) whose loss is within ``tolerance`` (relative, default 2%) of the best's, or
        within seed noise of it: a difference of at most twice the standard error of the
        difference (:meth:`noise`, the rule of :meth:`seed_comparison`), where seeds were
        repeated. A pruned or diverged rate in between ends the band."""
        tolerance = self.band_tolerance if tolerance is None else tolerance
        best = self.best_by_optimizer().get(optimizer) if optimizer else self.best
        if best is None:
            return None
        rows = sorted((p for p in self.points() if p.optimizer == best.optimizer),
                      key=lambda p: p.lr)
        relative = tolerance * abs(best.loss)

        def near(p: PointSummary) -> bool:
            if not self._eligible(p):
                return False
            se = self.noise(best, p)
            return p.loss - best.loss <= max(relative, 2 * se if se is not None else 0.0)

        i = next(k for k, p in enumerate(rows) if p.lr == best.lr)
        lo = hi = i
        while lo - 1 >= 0 and near(rows[lo - 1]):
            lo -= 1
        while hi + 1 < len(rows) and near(rows[hi + 1]):
            hi += 1
        return rows[lo].lr, rows[hi].lr

    def seed_comparison(self) -> dict[str, Any] | None:
        """Best against runner-up (the next finished point repeated over seeds, of any
        optimizer) over their seeds: whether the difference of mean losses exceeds twice its
        standard error from seed noise."""
        ranked = [p for p in self.points() if self._eligible(p) and p.seeds >= 2]
        if len(ranked) < 2:
            return None
        first, second = ranked[0], ranked[1]
        se = self.noise(first, second) or 0.0
        diff = second.loss - first.loss
        return {"best": {"optimizer": first.optimizer, "lr": first.lr, "loss": first.loss,
                         "sd": first.loss_sd, "seeds": first.seeds},
                "runner_up": {"optimizer": second.optimizer, "lr": second.lr,
                              "loss": second.loss, "sd": second.loss_sd, "seeds": second.seeds},
                "difference": diff, "standard_error": se, "threshold": 2 * se,
                "significant": bool(diff > 2 * se) if se > 0 else bool(diff > 0)}

    # -- text -------------------------------------------------------------------------------------
    def table(self, max_rows: int | None = None) -> str:
        rows = self.points()
        if max_rows is not None:
            rows = rows[:max_rows]
        metric_name = next((r.metric_name for r in self.records if r.metric_name), None)
        head = ["rank", "optimizer", "lr", "loss", "+/- sd", "seeds", metric_name or "metric",
                "steps", "status", "diagnosis"]
        lines = []
        for k, p in enumerate(rows, start=1):
            lines.append([str(k), p.optimizer, f"{p.lr:.3g}",
                          f"{p.loss:.4f}" if p.loss is not None else "-",
                          f"{p.loss_sd:.4f}" if p.loss_sd is not None else "",
                          str(p.seeds) if p.seeds else "",
                          f"{p.metric:.4f}" if p.metric is not None else "-",
                          str(p.steps), p.status, p.diagnosis or ""])
        widths = [max(len(h), *(len(l[i]) for l in lines)) if lines else len(h)
                  for i, h in enumerate(head)]
        out = ["  ".join(h.ljust(w) for h, w in zip(head, widths))]
        out += ["  ".join(c.ljust(w) for c, w in zip(l, widths)) for l in lines]
        return "\n".join(out)

    def summary(self) -> str:
        return "\n".join(text for text, _ in self._summary_lines())

    def notes(self) -> list[str]:
        """What qualifies the answer, as the summary words it: the sweep not finished, no trial
        finished, the best rate at the edge of the range, a higher rate stopped early (also in
        :meth:`to_dict` and ``--json``, where a pipeline reads them)."""
        return [text.strip() for text, note in self._summary_lines() if note]

    def _summary_lines(self) -> list[tuple[str, bool]]:
        """The summary's lines, each with whether it is a note (see :meth:`notes`)."""
        notes: set[int] = set()

        def note(text: str) -> None:
            notes.add(len(lines))
            lines.append(text)

        best = self.best
        counts: dict[str, int] = {}
        for r in self.completed():
            counts[r.status] = counts.get(r.status, 0) + 1
        lines = [f"sweep {self.study_name!r}: {len(self.completed())} trials ("
                 + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
                 + f"), {self.total_steps} training steps"]
        # points with no final attempt but one running or waiting (a retry after a failure
        # counts: completed() ranks the failure first)
        states: dict[tuple, set[str]] = {}
        for r in self.records:
            states.setdefault((r.optimizer, r.lr, r.seed), set()).add(r.status)
        # (a queued retry the finished plan no longer needs -- a worker killed in a speculative
        # trial after the plan was done -- is no unfinished work: it said "run the same command
        # again" after every run, while complete was True)
        pending = {"running"} if self.complete else {"running", "waiting"}
        unfinished = sum(1 for found in states.values()
                         if found & pending and not found & {FINISHED, PRUNED, DIVERGED})
        stopped = not unfinished and self.complete is False  # between trials, or by an error
        if best is None:
            # from the counts: a sweep killed during its first trial was told "every rate
            # diverged or failed; lower the range"
            if counts.get(DIVERGED) or counts.get(PRUNED):
                note("no trial finished: every rate diverged or was stopped early; "
                     "lower the range")
            elif counts.get("failed"):
                note("no trial finished: the trials failed (an error in the training, "
                     "not the rate); see their errors")
            if unfinished:
                note(f"the sweep is not finished ({unfinished} trial(s) running or "
                     "waiting, or cut off by a crash): run the same command again to "
                     "resume it")
            elif stopped:
                note(_STOPPED + ": run the same command again to resume it")
            return [(text, i in notes) for i, text in enumerate(lines)]
        if unfinished:
            note(f"the sweep is not finished ({unfinished} trial(s) running or waiting, "
                 "or cut off by a crash): the best so far is below; run the same command "
                 "again to resume it")
        elif stopped:
            note(_STOPPED + ": the best so far is below; run the same command again to "
                            "resume it")
        band = self.band()
        finished = [p.loss for p in self.points() if p.status == FINISHED and p.loss is not None]
        if len(finished) >= 3 and max(finished) - min(finished) <= 1e-12 * max(
                1.0, abs(finished[0])):
            # a "best" and a band read from ties: the rate changed nothing
            note(f"every finished rate ended at the same loss ({finished[0]:.6g}): the loss does "
                 "not depend on the rate here, so no rate is better; check that the optimizer "
                 "trains the model's parameters and that the loss depends on them")
        lines.append(f"best: lr={best.lr:.3g} with {best.optimizer} (loss {best.loss:.4f}"
                     + (f" +/- {best.loss_sd:.4f} over {best.seeds} seeds" if best.loss_sd else "")
                     + ")")
        if band:
            within = f"within {self.band_tolerance:.0%}" + (
                " or seed noise" if best.loss_sd is not None else "")
            lines.append(f"near-best band (loss {within} of the best): "
                         f"{band[0]:.3g} .. {band[1]:.3g}")
        rates = [float(v) for v in (self.settings.get("rates") or {}).get("values", [])]
        if len(rates) > 2:
            for opt, p in self.best_by_optimizer().items():
                if p.lr == max(rates) and self.diverged_from(opt) is None:
                    note(f"  {opt}: the best rate is the highest tried; the range may be "
                         "too low (widen --lrs upwards)")
                elif p.lr == min(rates):
                    note(f"  {opt}: the best rate is the lowest tried; the range may be "
                         "too high (widen --lrs downwards)")
            for opt, p in self.best_by_optimizer().items():
                pruned = self._pruned_above(p)
                if pruned is not None:
                    # early stopping judged it at a rung: on a short budget a higher rate that
                    # trails early can still end best (a review's wine-logreg at budget 90).
                    # Not only the next rate: the refine steps finish between the best and it
                    note(
                        f"  {opt}: a higher rate, {pruned.lr:.3g}, was stopped early (it "
                        "trailed a lower rate mid-run) with only worse finished rates between it "
                        "and the best, so whether it would have ended better is not known; "
                        "--strategy grid (no early stopping) checks it")
        for r in self.completed():
            # out of its retries (the sweep done without it; while it is not, a failed rate may
            # still be retried, and a Ctrl-C never counts): left out of the best and the band,
            # which the table's bare "failed" did not say, nor why (a worker killed each time)
            if r.status == FAILED and self.complete is not False:
                error = r.error or "no error recorded"
                error = error if len(error) <= 160 else error[:157] + "..."
                note(f"  {r.optimizer}: lr {r.lr:.3g} (seed {r.seed}) failed on every attempt "
                     f"and is left out of the best and the band: {error}")
        per_opt = self.best_by_optimizer()
        if len(per_opt) > 1:
            for opt, p in per_opt.items():
                b = self.band(opt)
                lines.append(f"  {opt}: best lr {p.lr:.3g} (loss {p.loss:.4f}), band "
                             f"{b[0]:.3g} .. {b[1]:.3g}")
        for opt in self.optimizers:
            d = self.diverged_from(opt)
            if d is not None:
                lines.append(f"  {opt} diverged at lr >= {d:.3g}")
        cmp = self.seed_comparison()
        if cmp is not None:
            verdict = "exceeds" if cmp["significant"] else "is within"
            lines.append(f"seeds: best vs runner-up ({cmp['runner_up']['optimizer']} lr "
                         f"{cmp['runner_up']['lr']:.3g}) differ by {cmp['difference']:.4f}, which "
                         f"{verdict} seed noise (threshold {cmp['threshold']:.4f} = 2 x "
                         f"standard error {cmp['standard_error']:.4f})")
        return [(text, i in notes) for i, text in enumerate(lines)]

    def _pruned_above(self, best: PointSummary) -> PointSummary | None:
        """The lowest rate above ``best`` stopped early, when every rate between finished (a
        diverged one ends the search: above it, nothing is feasible)."""
        higher = sorted((q for q in self.points()
                         if q.optimizer == best.optimizer and q.lr > best.lr),
                        key=lambda q: q.lr)
        for q in higher:
            if q.status == PRUNED:
                return q
            if q.status != FINISHED:
                return None
        return None

    def __repr__(self) -> str:
        best = self.best
        tail = f"best lr={best.lr:.3g} ({best.optimizer})" if best else "no finished trial"
        return f"<SweepResult {self.study_name!r}: {len(self.completed())} trials, {tail}>"

    # -- export -----------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        best = self.best
        return _clean({
            "study_name": self.study_name, "storage": self.storage, "strategy": self.strategy,
            "settings": self.settings,
            "best": best.to_dict() if best else None,
            "band": list(self.band()) if self.band() else None,
            "band_tolerance": self.band_tolerance,
            "best_by_optimizer": {k: v.to_dict() for k, v in self.best_by_optimizer().items()},
            "bands_by_optimizer": {k: list(self.band(k)) for k in self.best_by_optimizer()},
            "diverged_from": {o: self.diverged_from(o) for o in self.optimizers},
            "seed_comparison": self.seed_comparison(),
            "complete": self.complete,
            # the trials as the summary counts them (a retried attempt once); "trials" below
            # holds every attempt, the interrupted and failed ones too
            "completed_trials": len(self.completed()),
            "notes": self.notes(),
            "total_steps": self.total_steps,
            "points": [p.to_dict() for p in self.points()],
            "trials": [r.to_dict() for r in self.records],
        })

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 1) -> str:
        text = json.dumps(self.to_dict(), indent=indent, allow_nan=False)
        if path is not None:
            require_folder(path, "the sweep's JSON")
            write_atomically(path, text + "\n")
        return text

    CSV_FIELDS = ("number", "optimizer", "lr", "seed", "status", "loss", "val_loss", "train_loss",
                  "metric", "metric_name", "steps", "seconds", "phase", "diverged_step",
                  "retry_of", "error", "diagnosis")

    def to_csv(self, path: str | Path | None = None) -> str:
        """One row per trial attempt (curves are in the JSON export)."""
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=self.CSV_FIELDS)
        writer.writeheader()
        for r in self.records:
            row = r.to_dict()
            writer.writerow({k: ("" if row[k] is None else row[k]) for k in self.CSV_FIELDS})
        text = buffer.getvalue()
        if path is not None:
            require_folder(path, "the sweep's CSV")
            write_atomically(path, text)
        return text

    # -- plots ------------------------------------------------------------------------------------
    def plot(self, path: str | Path | None = None, *, curves: bool = True):
        """Loss against rate per optimizer (log x; pruned as open markers; the diverged region
        shaded) and, with ``curves``, every trial's training curve coloured by rate."""
        if path is not None:
            require_plot_path(path)
        # matplotlib's object API, not pyplot: no display needed, and a figure returned to the
        # caller is not also kept in pyplot's list of open figures (20 sweeps plotted in a
        # notebook warned, and kept every figure alive)
        import matplotlib
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import Normalize
        from matplotlib.figure import Figure

        from lrkit.show.plots import log_rate_axis, plain

        ncols = 2 if curves else 1
        fig = Figure(figsize=(6.5 * ncols, 4.5))
        axes = fig.subplots(1, ncols, squeeze=False)
        ax = axes[0][0]
        colors = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
        high = max((r.lr for r in self.records), default=1.0)
        for k, opt in enumerate(self.optimizers):
            color = colors[k % len(colors)]
            rows = sorted((p for p in self.points() if p.optimizer == opt), key=lambda p: p.lr)
            fin = [p for p in rows if p.status == FINISHED and p.loss is not None]
            if fin:
                ax.errorbar([p.lr for p in fin], [p.loss for p in fin],
                            yerr=[p.loss_sd or 0 for p in fin], marker="o", color=color,
                            label=f"{plain(opt)} (finished)", capsize=3)
            pruned = [r for r in self.completed() if r.optimizer == opt and r.status == PRUNED
                      and r.eval_curve]
            if pruned:
                ax.scatter([r.lr for r in pruned], [r.eval_curve[-1][1] for r in pruned],
                           facecolors="none", edgecolors=color, marker="s",
                           label=f"{plain(opt)} (pruned, value when stopped)")
            d = self.diverged_from(opt)
            if d is not None:
                ax.axvspan(d, max(high, d) * 1.5, color=color, alpha=0.12,
                           label=f"{plain(opt)} diverged (lr >= {d:.3g})")
        best = self.best
        if best is not None:
            ax.axvline(best.lr, color="k", ls="--", lw=1, label=f"best {best.lr:.3g}")
            band = self.band()
            if band and band[0] < band[1]:
                ax.axvspan(band[0], band[1], color="green", alpha=0.08, label="near-best band")
        log_rate_axis(ax)
        ax.set_xlabel("learning rate")
        validated = any(r.val_loss is not None for r in self.records)
        ax.set_ylabel("final loss" + (" (validation)" if validated else ""))
        ax.set_title(f"sweep {plain(self.study_name)}")
        # the legend goes below the axes, never over a point (inside, "best" can find no free
        # corner: the shaded regions span the whole height, and pruned markers sit anywhere)
        entries = len(ax.get_legend_handles_labels()[1])
        if entries:
            columns = 1 if entries == 1 else 2
            rows = -(-entries // columns)
            fig.set_size_inches(fig.get_figwidth(), fig.get_figheight() + 0.16 * rows)
            ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14),
                      ncol=columns, frameon=False)
        if curves:
            import numpy as np

            cax = axes[0][1]
            finite = [r for r in self.completed() if r.curve]
            if finite:
                lrs = np.log10([r.lr for r in finite])
                top = lrs.max() if lrs.max() > lrs.min() else lrs.min() + 1
                norm = Normalize(lrs.min(), top)
                cmap = matplotlib.colormaps["viridis"]
                for r, l in zip(finite, lrs):
                    xs = [c[0] for c in r.curve]
                    ys = [c[1] if math.isfinite(c[1]) else np.nan for c in r.curve]
                    style = {"finished": "-", "pruned": ":", "diverged": "--"}.get(r.status, "-")
                    cax.plot(xs, ys, style, color=cmap(norm(l)), lw=1)
                sm = ScalarMappable(norm=norm, cmap=cmap)
                fig.colorbar(sm, ax=cax, label="log10 lr")
                values = [c[1] for r in finite for c in r.curve if math.isfinite(c[1])]
                if values and min(values) > 0:
                    cax.set_yscale("log")
            cax.set_xlabel("step")
            cax.set_ylabel("training loss (window mean)")
            cax.set_title("trial curves (dotted: pruned, dashed: diverged)")
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=120)
        return fig
