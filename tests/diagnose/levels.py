"""Synthetic losses for the guard's tests: a closure that returns a given loss and leaves a zero
gradient on every parameter (the guard refuses a closure that leaves none: it forgot backward())."""
import torch


def level_loss(model, level):
    """A closure whose loss is ``level``, after a backward pass through ``model`` with zero
    gradients (the steps change nothing; the guard sees the losses these tests set)."""
    def closure():
        model.zero_grad()
        (sum(p.sum() for p in model.parameters()) * 0.0).backward()
        return torch.tensor(level)
    return closure
