"""A plain training loop at a rate that is far too high, watched by a Monitor and guarded.

    python examples/guarded_training.py --lr 0.3      # the guard rolls back and lowers the rate
    python examples/guarded_training.py --no-guard    # the same loop without it

The Monitor reports in plain words what the rate is doing; the Guard rolls back to its last good
snapshot on a loss spike or NaN, measures a safer rate with a short range test and goes on.
"""
from __future__ import annotations

import argparse
import logging
import math

import torch

import lrkit
from lrkit.adapters.torch import cycle_batches
from lrkit.training import evaluate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--example", default="friedman-deep")
    parser.add_argument("--lr", type=float, default=0.3)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--no-guard", action="store_true")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")

    problem = lrkit.examples.build(args.example, seed=0, lr=args.lr)
    model, optimizer, criterion = problem.model, problem.optimizer, problem.criterion
    guard = None if args.no_guard else lrkit.Guard(model, optimizer)
    # told of the guard, the monitor's advice is for the rate the guard went on at
    monitor = lrkit.Monitor(report_every=100, guard=guard)
    batches = cycle_batches(problem.train_loader)
    for _ in range(args.steps):
        x, y = next(batches)

        def closure():
            optimizer.zero_grad()
            loss = criterion(model(x), y)
            loss.backward()
            return loss

        lr = optimizer.param_groups[0]["lr"]  # the rate this step trains at, read before it (a
        if guard is None:                     # cut the guard makes applies from the next step)
            loss = closure()
            optimizer.step()
        else:
            loss = guard.step(closure)
        monitor.update(loss, lr=lr)
        value = loss.detach().item() if isinstance(loss, torch.Tensor) else float(loss)
        if guard is None and not math.isfinite(value):
            # the run is lost: NaN arithmetic only makes the remaining steps slow
            print(f"the loss is {value} at step {monitor.step - 1}: the run is lost "
                  "(a guard would have rolled back and lowered the rate)")
            break
    diagnosis = monitor.close()
    val = evaluate(problem)
    print(f"\nafter {monitor.step} steps: validation loss {val:.4g}")
    print(diagnosis)
    if guard is not None:
        print(f"guard: {len(guard.interventions)} interventions, rate now {guard.lrs[0]:.3g}")


if __name__ == "__main__":
    main()
