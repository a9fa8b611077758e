"""Which trials a sweep runs and which it stops early: pure logic over the trials seen so far.

Nothing here trains or stores anything. An engine (Optuna here, another later) asks
:meth:`Strategy.plan` what to run next given every trial it knows, runs what it gets, reports
values at the rung steps to :meth:`Strategy.should_prune`, and asks again. The plan is a function
of the recorded trials alone, so a sweep resumed after a crash, or shared by several workers,
continues where the recorded history says.

Default strategy, *bracket then refine*, per optimizer, on the index of a log lattice of rates:

1. **Bracket**: walk a coarse grid (every ``stride``-th rate, both ends included). Start in the
   middle; try the next rate up; walk up while the final loss improves, else walk down while it
   improves. The walk stops at the first rate that is worse, diverged or stopped early, so the
   best coarse rate ends bracketed by worse ones (or by the end of the range).
2. **Refine**: around the best rate so far, the rates ``stride/2`` lattice steps either side, then
   ``stride/4`` either side of the new best, ... down to the neighbours (a bisection of the
   bracket: exact for unimodal curves).
3. **Seeds**: the ``repeat_top`` best rates are rerun with seeds ``1 .. seeds-1`` (never stopped
   early) so that the report can tell their differences from seed noise.

**Successive halving, bias-safe.** While the walk goes up, each new rate is compared at the rung
steps ``budget / eta**r`` with its *reference*, the best rate so far, one coarse step (a factor
``10**(stride/points_per_decade)``) below. A higher rate usually leads early and loses late (the
short-horizon bias that makes plain successive halving across rates prune the eventual winner:
measured on grids of built-in examples, it chose rates up to 50% worse in final loss), so a
higher rate that already trails the lower one at a rung by more than ``tolerance`` (default
10%) is stopped (*pruned*): it would trail at the end too. Lower rates are never stopped by a higher one, and the
refine candidates (close to the best, where mid-run values are mostly noise) are not stopped
unless ``prune_refine``.

**Divergence.** A diverged trial marks every higher rate of its optimizer infeasible: none is
started. When speculative work is allowed (idle workers), :attr:`Plan.speculative` lists trials
that are likely to be needed next; running them never changes the walk, only saves waiting.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Iterable

FINISHED, PRUNED, DIVERGED = "finished", "pruned", "diverged"
RUNNING, WAITING, FAILED = "running", "waiting", "failed"
DONE_STATES = (FINISHED, PRUNED, DIVERGED, FAILED)

#: plan order: stage * STAGE + rank; bracket walk steps are stages 0.., refine levels 100..
STAGE = 1_000
REFINE_STAGE = 100
SEEDS_STAGE = 200
SPECULATIVE_STAGE = 300


@dataclasses.dataclass(frozen=True, order=True)
class Point:
    """One planned trial: optimizer group ``group`` (its position in the sweep's list), rate
    ``index`` on the sweep's rate list, and ``seed``."""

    group: int
    index: int
    seed: int = 0


@dataclasses.dataclass
class Observation:
    """What is known about one point: its status, its final value (lower is better) when
    finished, its values at rung steps, and its plan ``order``."""

    point: Point
    status: str
    value: float | None = None
    rungs: dict[int, float] = dataclasses.field(default_factory=dict)
    order: int = 0
    steps: int = 0

    @property
    def done(self) -> bool:
        return self.status in DONE_STATES


@dataclasses.dataclass(frozen=True)
class Proposal:
    """A trial to start: ``ref`` is the rate index of the reference it is compared with at the
    rungs (None: never stopped early)."""

    point: Point
    order: int
    phase: str
    ref: int | None = None


@dataclasses.dataclass
class Plan:
    """``proposals``: trials to start now, in order; ``speculative``: trials an idle worker may
    start while the plan waits for running ones; ``done``: nothing left to run or wait for."""

    proposals: list[Proposal]
    done: bool
    expected_total: int
    speculative: list[Proposal] = dataclasses.field(default_factory=list)
    infeasible: dict[int, int | None] = dataclasses.field(default_factory=dict)

    @property
    def waiting(self) -> bool:
        return not self.done and not self.proposals


#: no trial is judged before this many steps: a comparison after one or two steps is the noise
#: of a few batches (at a budget of 12 a review's best rate was stopped at step 1)
MIN_RUNG_STEPS = 10


def rung_steps(budget: int, eta: int, rungs: int) -> list[int]:
    """The steps at which trials are compared: ``budget / eta**r``, r = rungs..1, those of
    ``MIN_RUNG_STEPS`` steps or more."""
    steps = {int(round(budget / eta ** r)) for r in range(1, rungs + 1)}
    return sorted(s for s in steps if MIN_RUNG_STEPS <= s < budget)


def trails(value: float, reference: float, tolerance: float = 0.0) -> bool:
    """Whether ``value`` is behind ``reference`` by more than ``tolerance`` (relative)."""
    if not math.isfinite(value):
        return True
    return value > reference + tolerance * abs(reference)


def coarse_indices(n: int, stride: int) -> list[int]:
    indices = list(range(0, n, stride))
    if indices[-1] != n - 1:
        indices.append(n - 1)
    return indices


def refine_steps(stride: int) -> list[int]:
    """Half-widths of the refine levels: ceil-halving ``stride`` down to 1."""
    steps = []
    h = stride
    while h > 1:
        h = -(-h // 2)
        steps.append(h)
    return steps


class _Blocked(Exception):
    """Raised inside a group's plan when it must start or wait for a trial before going on."""


class Strategy:
    """Bracket-then-refine with bias-safe successive halving (``mode="refine"``, the default) or
    a full grid (``mode="grid"``: every rate and seed to the full budget unless diverged).

    ``n_points``: number of candidate rates; ``groups``: number of optimizers; ``seeds``: seeds of
    the top candidates (1 = no repeats); ``stride``: coarse grid spacing in lattice steps;
    ``eta``/``rungs``: rung schedule of the early stopping (``rungs=0`` disables it);
    ``tolerance``: how far (relative) a trial may trail its reference at a rung and go on.
    """

    def __init__(self, n_points: int, groups: int = 1, *, budget: int, seeds: int = 1,
                 mode: str = "refine", stride: int = 4, eta: int = 3, rungs: int = 2,
                 repeat_top: int = 3, tolerance: float = 0.1, prune_refine: bool = False,
                 min_coarse: int = 5) -> None:
        if mode not in ("refine", "grid"):
            raise ValueError(f"mode must be 'refine' or 'grid', got {mode!r}")
        self.n = n_points
        self.groups = groups
        self.budget = budget
        self.seeds = seeds
        self.mode = mode
        # keep at least ``min_coarse`` coarse points on short lists
        self.stride = max(1, min(stride, (n_points - 1) // max(1, min_coarse - 1)))
        self.eta = eta
        self.rungs = rungs if (mode == "refine" and eta >= 2) else 0
        self.repeat_top = repeat_top
        self.tolerance = tolerance
        self.prune_refine = prune_refine
        self.rung_steps = rung_steps(budget, eta, self.rungs) if self.rungs else []

    # -- planning ---------------------------------------------------------------------------------
    def plan(self, observations: Iterable[Observation]) -> Plan:
        by_point = {o.point: o for o in observations}
        proposals: list[Proposal] = []
        speculative: list[Proposal] = []
        done = True
        expected = 0
        infeasible: dict[int, int | None] = {}
        for group in range(self.groups):
            obs = {p: o for p, o in by_point.items() if p.group == group}
            planner = _GroupPlan(self, group, obs)
            planner.run()
            proposals.extend(planner.proposals)
            speculative.extend(planner.speculative)
            done = done and planner.done
            expected += max(planner.expected, len(obs))
            infeasible[group] = planner.limit
        proposals.sort(key=lambda p: (p.order, p.point.group))
        taken = {p.point for p in proposals}
        seen: set[Point] = set()
        spec = []
        for p in sorted(speculative, key=lambda p: (p.order, p.point.group)):
            if p.point not in taken and p.point not in seen:
                seen.add(p.point)
                spec.append(p)
        return Plan(proposals, done and not proposals, expected, spec, infeasible)

    # -- early stopping ---------------------------------------------------------------------------
    def should_prune(self, point: Point, ref: int | None, step: int, value: float,
                     observations: Iterable[Observation]) -> bool:
        """Stop a trial at rung ``step`` when it trails its reference (a lower rate of the same
        optimizer, seed 0) at that step by more than the tolerance."""
        if not self.rungs or ref is None or point.seed != 0 or step not in self.rung_steps:
            return False
        if ref >= point.index:  # only a higher rate is compared with a lower one
            return False
        for o in observations:
            if o.point == Point(point.group, ref, 0):
                if step in o.rungs:
                    return trails(value, o.rungs[step], self.tolerance)
                return False
        return False

    def describe(self) -> str:
        if self.mode == "grid":
            return f"full grid over {self.n} rates x {self.seeds} seed(s)"
        early = (f", bias-safe successive halving at steps {self.rung_steps}"
                 if self.rungs else "")
        return (f"bracket walk on every {self.stride}th of {self.n} rates, then refine "
                f"+/-{refine_steps(self.stride)}{early}; top {self.repeat_top} x "
                f"{self.seeds} seed(s)")


class _GroupPlan:
    """The plan of one optimizer: replays its walk over the observations, stopping at the first
    trial that is missing (proposed) or running (waited for)."""

    def __init__(self, strategy: Strategy, group: int, obs: dict[Point, Observation]) -> None:
        self.s = strategy
        self.group = group
        self.obs = obs
        diverged = [p for p, o in obs.items() if o.status == DIVERGED]
        walk = [p.index for p in diverged if p.seed == 0]
        repeats = [p.index for p in diverged]
        # the full grid is the unpruned reference: it runs every rate, diverged region included.
        # The walk and the refinement run seed 0 and see only its divergences: a repeat seed
        # that diverges later must not rewrite a finished walk (the plan would go back to run
        # new seed-0 trials after the seeds stage); it only stops the higher rates' repeats.
        grid = strategy.mode == "grid"
        self.limit = min(walk) if walk and not grid else None
        self.repeat_limit = min(repeats) if repeats and not grid else None
        self.proposals: list[Proposal] = []
        self.speculative: list[Proposal] = []
        #: finished trials that the plan stops as if pruned (see :meth:`_would_prune`)
        self.stopped: set[int] = set()
        self.done = False
        self.coarse = coarse_indices(strategy.n, strategy.stride)
        levels = len(refine_steps(strategy.stride))
        self.expected = (len(self.coarse) // 2 + 2 + 2 * levels
                         + (strategy.seeds - 1) * strategy.repeat_top)
        if strategy.mode == "grid":
            self.expected = strategy.n * strategy.seeds

    # helpers
    def feasible(self, index: int, seed: int = 0) -> bool:
        limit = self.limit if seed == 0 else self.repeat_limit
        return 0 <= index < self.s.n and (limit is None or index <= limit)

    def _would_prune(self, o: Observation, ref: int | None) -> bool:
        """Whether a finished trial trails ``ref`` at a rung, as :meth:`Strategy.should_prune`
        reads it. Why: a trial started speculatively, while its reference was still running,
        found no value of it at the rungs and ran to the end, where one worker would have
        stopped it; the plan then depended on the number of workers and on timing."""
        r = self.obs.get(Point(self.group, ref, 0)) if ref is not None else None
        return r is not None and any(self.s.should_prune(o.point, ref, step, value, [r])
                                     for step, value in o.rungs.items())

    def value(self, index: int, seed: int = 0) -> float | None:
        if seed == 0 and index in self.stopped:
            return None
        o = self.obs.get(Point(self.group, index, seed))
        if (o is not None and o.status == FINISHED and o.value is not None
                and math.isfinite(o.value)):
            return o.value
        return None

    def order(self, stage: int, rank: int) -> int:
        return stage * STAGE + rank * self.s.groups + self.group

    def need(self, items: list[tuple[int, int | None]], stage: int, phase: str, seed: int = 0,
             speculate: list[tuple[int, int | None]] = ()) -> None:
        """Make sure the points ``(index, ref)`` are done: propose missing feasible ones, and
        block (raise) while any is missing or running. Infeasible missing ones are skipped."""
        missing, running = [], False
        for rank, (index, ref) in enumerate(items):
            point = Point(self.group, index, seed)
            o = self.obs.get(point)
            if o is None:
                if self.feasible(index, seed):
                    missing.append(Proposal(point, self.order(stage, rank), phase, ref))
            elif not o.done:
                running = True
            elif o.status == FINISHED and self._would_prune(o, ref):
                self.stopped.add(index)
        if missing or running:
            self.proposals.extend(missing)
            for rank, (index, ref) in enumerate(speculate):
                point = Point(self.group, index, 0)
                if point not in self.obs and self.feasible(index):
                    self.speculative.append(
                        Proposal(point, self.order(SPECULATIVE_STAGE + stage, rank), phase, ref))
            raise _Blocked

    def better(self, a: int, b: int) -> bool:
        va, vb = self.value(a), self.value(b)
        return va is not None and (vb is None or va < vb)

    def run(self) -> None:
        try:
            if self.s.mode == "grid":
                self.grid()
            else:
                self.refine(self.bracket())
            self.done = True
        except _Blocked:
            pass

    def grid(self) -> None:
        items = [(i, None) for i in reversed(range(self.s.n))]
        blocked = False
        for seed in range(self.s.seeds):
            try:
                self.need(items, seed, "grid", seed)
            except _Blocked:
                blocked = True
        if blocked:
            raise _Blocked

    # 1. bracket: a walk on the coarse grid -------------------------------------------------------
    def bracket(self) -> tuple[set[int], int | None]:
        coarse, stage = self.coarse, 0
        path: set[int] = set()

        def visit(pos: int, ref: int | None, spec: list[tuple[int, int | None]]) -> None:
            nonlocal stage
            index = coarse[pos]
            self.need([(index, ref)], stage, "bracket", speculate=spec)
            path.add(index)
            stage += 1

        start = len(coarse) // 2
        step_up = lambda p: [(coarse[p + 1], coarse[p])] if p + 1 < len(coarse) else []  # noqa
        step_down = lambda p: [(coarse[p - 1], None)] if p > 0 else []  # noqa
        visit(start, None, step_up(start) + step_down(start))
        cur = start
        while self.value(coarse[cur]) is None:  # the middle diverged or failed: go down
            if cur == 0:
                return path, None
            cur -= 1
            visit(cur, None, step_down(cur))
        # probe upwards
        direction = -1
        if cur + 1 < len(coarse) and self.feasible(coarse[cur + 1]):
            visit(cur + 1, coarse[cur],
                  step_down(cur) + (step_up(cur + 1) if cur + 2 < len(coarse) else []))
            if self.better(coarse[cur + 1], coarse[cur]):
                cur, direction = cur + 1, +1
        while 0 <= cur + direction < len(coarse):
            nxt = cur + direction
            if not self.feasible(coarse[nxt]):
                break
            ref = coarse[cur] if direction > 0 else None
            ahead = nxt + direction
            spec = ([(coarse[ahead], coarse[nxt] if direction > 0 else None)]
                    if 0 <= ahead < len(coarse) else [])
            # a refine candidate with the reference the refine stage will give it (none, unless
            # prune_refine): else a speculative run was stopped where the planned one never is,
            # and the sweep's answer depended on the number of workers and on timing
            up_ref = coarse[cur] if self.s.prune_refine else None
            spec += [(coarse[cur] + h, up_ref) for h in refine_steps(self.s.stride)[:1]]
            spec += [(coarse[cur] - h, None) for h in refine_steps(self.s.stride)[:1]]
            visit(nxt, ref, spec)
            if not self.better(coarse[nxt], coarse[cur]):
                break
            cur = nxt
        return path, coarse[cur]

    # 2. refine, 3. seeds -------------------------------------------------------------------------
    def refine(self, bracket: tuple[set[int], int | None]) -> None:
        path, best = bracket
        if best is None:
            return
        levels = refine_steps(self.s.stride)
        for level, h in enumerate(levels):
            candidates = [(best - h, None), (best + h, best if self.s.prune_refine else None)]
            nxt = levels[level + 1] if level + 1 < len(levels) else None
            spec = []
            if nxt is not None:
                for centre in (best, best - h, best + h):
                    spec += [(centre - nxt, None),
                             (centre + nxt, centre if self.s.prune_refine else None)]
            self.need([(i, r) for i, r in candidates if 0 <= i < self.s.n],
                      REFINE_STAGE + level, f"refine-{level + 1}", speculate=spec)
            path.update(i for i, _ in candidates if 0 <= i < self.s.n)
            # ties to the higher rate, as the result ranks them (it refined around the lowest
            # tied rate and then named the highest best)
            best = -min((self.value(i), -i) for i in path if self.value(i) is not None)[1]
        if self.s.seeds > 1:
            ranked = sorted((self.value(i), -i) for i in path if self.value(i) is not None)
            top = [(-i, None) for _, i in ranked[: self.s.repeat_top]]
            blocked = False
            for seed in range(1, self.s.seeds):
                try:
                    self.need(top, SEEDS_STAGE + seed, "seeds", seed)
                except _Blocked:
                    blocked = True
            if blocked:
                raise _Blocked


# -- a sequential driver for synthetic objectives --------------------------------------------------
@dataclasses.dataclass
class Simulated:
    """A synthetic trial outcome: its value at every rung step and at the end (``final``), or the
    step at which it diverges (``diverged_at``)."""

    final: float | None
    rungs: dict[int, float] = dataclasses.field(default_factory=dict)
    diverged_at: int | None = None


def simulate(strategy: Strategy, outcome, max_trials: int = 100_000
             ) -> tuple[list[Observation], int]:
    """Drive ``strategy`` one trial at a time with ``outcome(point) -> Simulated``, as an engine
    with one worker would; returns the observations and the total training steps used."""
    observations: list[Observation] = []
    total = 0
    for _ in range(max_trials):
        plan = strategy.plan(observations)
        if plan.done:
            break
        if not plan.proposals:  # pragma: no cover - a sequential driver never waits
            raise RuntimeError("strategy waits although nothing is running")
        proposal = plan.proposals[0]
        sim = outcome(proposal.point)
        status, steps, value, seen = FINISHED, strategy.budget, sim.final, {}
        for step in sorted(set(strategy.rung_steps) | {strategy.budget}):
            if sim.diverged_at is not None and sim.diverged_at <= step:
                status, steps, value = DIVERGED, sim.diverged_at, None
                break
            if step == strategy.budget:
                break
            seen[step] = sim.rungs[step]
            if strategy.should_prune(proposal.point, proposal.ref, step, sim.rungs[step],
                                     observations):
                status, steps, value = PRUNED, step, None
                break
        if status == FINISHED and (value is None or not math.isfinite(value)):
            status, value = DIVERGED, None
        total += steps
        observations.append(Observation(proposal.point, status, value, seen, proposal.order, steps))
    return observations, total
