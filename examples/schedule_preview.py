"""Write a schedule as text, check it and look at it before training, then drive torch with it.

    python examples/schedule_preview.py --out schedule.png
"""
from __future__ import annotations

import argparse

import torch

from lrkit import schedules


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spec", default="warmup(200) >> cosine(1800, floor=0.05)")
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--out", default="schedule.png")
    args = parser.parse_args()

    schedule = schedules.parse(args.spec)
    preview = schedules.preview(schedule, args.steps, lr=args.lr)
    print(preview)  # key points and lint warnings (a warmup that never reaches its peak, a horizon
    # too short or too long for the run, a rate of 0 at step 0)
    print("plot:", schedules.plot(preview, args.out))

    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr)
    scheduler = schedules.to_torch(optimizer, schedule)  # a real torch.optim.lr_scheduler object
    rates = []
    for _ in range(args.steps):
        rates.append(optimizer.param_groups[0]["lr"])  # the rate this step trains at
        optimizer.step()
        scheduler.step()
    print(f"torch rates: step 0 {rates[0]:.3g}, peak {max(rates):.3g}, last {rates[-1]:.3g}")


if __name__ == "__main__":
    main()
