"""Checks and figures that need a GPU: lrkit on CUDA, where CI (CPU only) cannot look.

    python benchmarks/gpu_checks.py                 # on a CUDA machine
    python benchmarks/gpu_checks.py --device cpu    # the same checks on the CPU (a dry run)

Each check prints PASS or FAIL with its numbers; --json FILE writes them all. Checks:

* restore: ``find_lr`` on a CUDA model (float32, and AMP: float16 with a GradScaler) gives back
  the parameters, BatchNorm buffers, optimizer state and the CUDA and CPU generators bit for bit;
* guard-scaler: a guarded float16 loop with a GradScaler steps exactly as the plain scaler loop,
  and an overflow at an absurd loss scale is left to the scaler (no incident);
* monitor-no-sync: ``Monitor.update`` on CUDA loss tensors makes no host sync (CUDA's sync debug
  mode set to error);
* lightning, huggingface: the adapters on CUDA modules (Hugging Face with fp16);
* overhead: time per step of ``find_lr`` against a plain loop doing the same steps, and peak
  GPU memory, on a 50M-parameter MLP with Adam (the goal on CPU: ratio <= 1.10), with the
  snapshot on the CPU (the default) and on the device, and the copy times behind the first;
* guard-overhead: the Guard's steady cost per step on the same model, snapshots on the CPU
  and on the device.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import torch  # noqa: E402

import lrkit  # noqa: E402

RESULTS: dict[str, dict] = {}


def check(name):
    def wrap(fn):
        def run(device):
            start = time.perf_counter()
            try:
                figures = fn(device) or {}
                RESULTS[name] = {"ok": True, **figures}
            except Exception as error:  # noqa: BLE001 -- report every check
                traceback.print_exc()
                RESULTS[name] = {"ok": False, "error": f"{type(error).__name__}: {error}"}
            RESULTS[name]["seconds"] = round(time.perf_counter() - start, 2)
            print(f"{'PASS' if RESULTS[name]['ok'] else 'FAIL'} {name}: "
                  f"{ {k: v for k, v in RESULTS[name].items() if k != 'ok'} }", flush=True)
        return run
    return wrap


def _state(model, optimizer):
    return ({k: v.detach().clone() for k, v in model.state_dict().items()},
            {k: {n: t.clone() if torch.is_tensor(t) else t for n, t in s.items()}
             for k, s in optimizer.state_dict()["state"].items()},
            [dict((k, v) for k, v in g.items() if k != "params")
             for g in optimizer.state_dict()["param_groups"]])


def _same(a, b) -> bool:
    params_a, state_a, groups_a = a
    params_b, state_b, groups_b = b
    return (all(torch.equal(params_a[k], params_b[k]) for k in params_a)
            and state_a.keys() == state_b.keys()
            and all(torch.equal(state_a[k][n], state_b[k][n]) if torch.is_tensor(state_a[k][n])
                    else state_a[k][n] == state_b[k][n] for k in state_a for n in state_a[k])
            and groups_a == groups_b)


def _rng(device):
    return (torch.get_rng_state(),
            torch.cuda.get_rng_state(device) if device.type == "cuda" else None)


@check("restore")
def check_restore(device):
    figures = {}
    for amp in (False, True):
        problem = lrkit.examples.build("digits-cnn", seed=0)
        model = problem.model.to(device)
        x, y = next(iter(problem.train_loader))  # a real optimizer state first
        problem.criterion(model(x.to(device)), y.to(device)).backward()
        problem.optimizer.step()
        before, rng = _state(model, problem.optimizer), _rng(device)
        result = lrkit.find_lr(model, problem.optimizer, problem.train_loader, problem.criterion,
                               amp=amp, progress=False)
        after, rng_after = _state(model, problem.optimizer), _rng(device)
        assert result.suggested_lr is not None, "no suggestion"
        assert _same(before, after), "model or optimizer not restored"
        assert torch.equal(rng[0], rng_after[0]), "CPU generator not restored"
        assert rng[1] is None or torch.equal(rng[1], rng_after[1]), "CUDA generator not restored"
        figures[f"suggested_lr_amp_{amp}"] = result.suggested_lr
        figures[f"steps_amp_{amp}"] = result.steps
        # the same test with the copy kept on the device: the same exact restore
        again = lrkit.find_lr(model, problem.optimizer, problem.train_loader, problem.criterion,
                              amp=amp, progress=False, snapshot="device")
        assert again.suggested_lr is not None, "device snapshot: no suggestion"
        assert _same(before, _state(model, problem.optimizer)), "device snapshot: not restored"
    return figures


def _scaled_closure(model, optimizer, scaler, x, y, dtype):
    """One mixed-precision step's closure: autocast forward, scaled backward."""
    def closure():
        optimizer.zero_grad()
        with torch.autocast(x.device.type, dtype=dtype):
            loss = torch.nn.functional.mse_loss(model(x).float(), y)
        scaler.scale(loss).backward()
        return loss
    return closure


@check("guard-scaler")
def check_guard_scaler(device):
    torch.use_deterministic_algorithms(True)
    dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    data = [(torch.randn(64, 32, device=device), torch.randn(64, 1, device=device))
            for _ in range(40)]
    finals = []
    for guarded in (False, True):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(),
                                    torch.nn.Linear(64, 1)).to(device)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        scaler = torch.amp.GradScaler(device.type)
        guard = lrkit.Guard(model, optimizer, scaler=scaler, check_grads=True, probe_steps=0)
        for x, y in data:
            closure = _scaled_closure(model, optimizer, scaler, x, y, dtype)
            if guarded:
                guard.step(closure)
            else:
                closure()
                scaler.step(optimizer)
                scaler.update()
        finals.append([p.detach().clone() for p in model.parameters()])
        assert not guard.interventions, guard.interventions
    assert all(torch.equal(a, b) for a, b in zip(*finals)), "guarded steps differ"
    # an absurd loss scale: float16 gradients overflow; the scaler skips and lowers its scale
    torch.manual_seed(0)
    model = torch.nn.Linear(32, 1).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-2)
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0 ** 60)
    guard = lrkit.Guard(model, optimizer, scaler=scaler, check_grads=True, probe_steps=0)
    for x, y in data[:30]:
        guard.step(_scaled_closure(model, optimizer, scaler, x, y, dtype))
    torch.use_deterministic_algorithms(False)
    assert not guard.interventions, [i.reason for i in guard.interventions]
    if device.type == "cuda":  # float16 overflowed at 2**60: the scaler lowered its scale
        assert scaler.get_scale() < 2.0 ** 60, scaler.get_scale()
    return {"final_scale": scaler.get_scale(), "overflow_handled_by_scaler": True}


@check("monitor-no-sync")
def check_monitor(device):
    if device.type != "cuda":
        return {"skipped": "CUDA only"}
    monitor = lrkit.Monitor(report_every=0)
    losses = [torch.rand((), device=device) + 1.0 / (1 + i) for i in range(300)]
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for i, loss in enumerate(losses):
            monitor.update(loss, lr=0.1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    diagnosis = monitor.close()
    return {"verdict": diagnosis.verdict, "points": monitor.step}


@check("lightning")
def check_lightning(device):
    import lightning as L

    from lrkit.adapters.lightning import find_lr

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.save_hyperparameters({"lr": 1e-3})
            self.net = torch.nn.Sequential(torch.nn.Linear(8, 64), torch.nn.BatchNorm1d(64),
                                           torch.nn.ReLU(), torch.nn.Linear(64, 1))

        def training_step(self, batch, batch_idx):
            return torch.nn.functional.mse_loss(self.net(batch[0]), batch[1])

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=self.hparams.lr)

    torch.manual_seed(0)
    x = torch.randn(1024, 8)
    y = x @ torch.randn(8, 1)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=64,
                                         shuffle=True)
    module = Module().to(device)
    before = {k: v.clone() for k, v in module.state_dict().items()}
    result = find_lr(module, loader, update_attr=True, progress=False)
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items())
    assert module.hparams.lr == result.suggested_lr
    return {"suggested_lr": result.suggested_lr}


@check("huggingface")
def check_huggingface(device):
    from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainingArguments

    from lrkit.adapters.huggingface import find_lr

    class Tokens(torch.utils.data.Dataset):
        """Label: token 0 > 32, 10% flipped (a loss floor near 0.33, not a separable toy)."""

        def __init__(self, n=512):
            generator = torch.Generator().manual_seed(0)
            self.ids = torch.randint(1, 64, (n, 12), generator=generator)
            flip = torch.rand(n, generator=generator) < 0.1
            self.labels = ((self.ids[:, 0] > 32) ^ flip).long()

        def __len__(self):
            return len(self.ids)

        def __getitem__(self, i):
            return {"input_ids": self.ids[i], "labels": self.labels[i]}

    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=64, hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=16, num_labels=2))
    cuda = device.type == "cuda"
    args = TrainingArguments(output_dir="/tmp/lrkit-hf", per_device_train_batch_size=32,
                             report_to=[], save_strategy="no", disable_tqdm=True,
                             use_cpu=not cuda, fp16=cuda, gradient_accumulation_steps=2,
                             num_train_epochs=4, logging_steps=4)
    trainer = Trainer(model=model, args=args, train_dataset=Tokens())
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    result = find_lr(trainer, update_args=True, progress=False)
    assert all(torch.equal(before[k], v) for k, v in trainer.model.state_dict().items())
    trainer.train()
    # (logged losses carry the Trainer's scale under accumulation: compare with the first)
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    loss = sum(losses[-3:]) / 3 / losses[0]
    assert loss < 0.6, f"training at the suggestion ended at {loss:.2f} x its first loss"
    return {"suggested_lr": result.suggested_lr, "amp": result.settings["amp"],
            "final_vs_first_loss": round(loss, 3), "model_device": str(next(trainer.model.parameters()).device)}


def _wide_mlp(device, lr):
    """The overhead checks' model: 50M parameters on CUDA (4096 wide), a small one on the CPU;
    Adam, eight fixed batches, cross-entropy."""
    torch.manual_seed(0)
    width, batch = (4096, 512) if device.type == "cuda" else (256, 64)
    model = torch.nn.Sequential(*[m for _ in range(3) for m in (torch.nn.Linear(width, width),
                                                                 torch.nn.ReLU())],
                                torch.nn.Linear(width, 10)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    data = [(torch.randn(batch, width, device=device), torch.randint(0, 10, (batch,), device=device))
            for _ in range(8)]
    return model, optimizer, data, torch.nn.CrossEntropyLoss()


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


@check("overhead")
def check_overhead(device):
    steps = 100
    model, optimizer, data, criterion = _wide_mlp(device, lr=1e-3)
    rates = torch.logspace(-7, -3, steps).tolist()  # low rates: every step runs (no divergence)

    def plain():
        for i, lr in enumerate(rates):
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = data[i % len(data)]
            optimizer.zero_grad(set_to_none=True)
            loss = criterion(model(x), y)
            loss.backward()
            optimizer.step()
            loss.item()  # the finder reads every loss; so does this loop

    def finder(where="cpu"):
        return lrkit.find_lr(model, optimizer, data, criterion, start_lr=1e-7, end_lr=1e-3,
                             num_steps=steps, diverge_threshold=1e9, progress=False,
                             snapshot=where)

    plain()  # warm up (kernels, allocator, optimizer state)
    advised = any("snapshot='device'" in w for w in finder().warnings)
    times = {"plain": [], "find_lr": [], "find_lr_device": []}
    for _ in range(3):
        for name, fn in (("plain", plain), ("find_lr", finder),
                         ("find_lr_device", lambda: finder("device"))):
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append((time.perf_counter() - start) / steps)
    state_bytes = sum(p.numel() * p.element_size() for p in model.parameters()) * 3  # + Adam
    peak = {}
    if device.type == "cuda":
        for name, fn in (("plain", plain), ("find_lr", finder),
                         ("find_lr_device", lambda: finder("device"))):
            torch.cuda.reset_peak_memory_stats(device)
            fn()
            peak[name] = torch.cuda.max_memory_allocated(device)
    # where the difference goes: the snapshot (device to host) and the restore (host to device)
    from lrkit.state import Snapshot

    _sync(device)
    start = time.perf_counter()
    snapshot = Snapshot(model, optimizer)
    _sync(device)
    taken = time.perf_counter() - start
    start = time.perf_counter()
    snapshot.restore()
    _sync(device)
    restored = time.perf_counter() - start
    copies = {}
    if device.type == "cuda":  # pageable against pinned host memory, allocation included
        source = torch.empty(state_bytes, dtype=torch.uint8, device=device)
        for pinned in (False, True):
            _sync(device)
            start = time.perf_counter()
            host = torch.empty(state_bytes, dtype=torch.uint8, pin_memory=pinned)
            allocated = time.perf_counter() - start
            host.copy_(source)
            _sync(device)
            copies[f"d2h_{'pinned' if pinned else 'pageable'}_ms"] = round(
                1e3 * (time.perf_counter() - start), 1)
            copies[f"alloc_{'pinned' if pinned else 'pageable'}_ms"] = round(1e3 * allocated, 1)
            del host
        del source
    ratio = min(times["find_lr"]) / min(times["plain"])
    figures = {"plain_ms": round(1e3 * min(times["plain"]), 3),
               "find_lr_ms": round(1e3 * min(times["find_lr"]), 3),
               "ratio": round(ratio, 3), "cpu_snapshot_advice_given": advised,
               "find_lr_device_ms": round(1e3 * min(times["find_lr_device"]), 3),
               "ratio_device_snapshot": round(min(times["find_lr_device"]) / min(times["plain"]), 3),
               "params_M": round(state_bytes / 12 / 1e6, 1),
               "state_MB": round(state_bytes / 1e6), "snapshot_ms": round(1e3 * taken, 1),
               "restore_ms": round(1e3 * restored, 1), **copies}
    if peak:
        figures["extra_gpu_memory_vs_state"] = round((peak["find_lr"] - peak["plain"]) / state_bytes, 3)
        figures["extra_gpu_memory_vs_state_device_snapshot"] = round(
            (peak["find_lr_device"] - peak["plain"]) / state_bytes, 3)
    return figures


@check("guard-overhead")
def check_guard_overhead(device):
    """Steady-state cost per step of a Guard (snapshots every 100 steps) on the 50M MLP."""
    model, optimizer, data, criterion = _wide_mlp(device, lr=1e-5)

    def loop(steps, guard=None):
        for i in range(steps):
            x, y = data[i % len(data)]

            def closure(x=x, y=y):
                optimizer.zero_grad(set_to_none=True)
                loss = criterion(model(x), y)
                loss.backward()
                return loss
            if guard is None:
                closure().item()  # a loop that reads its loss
                optimizer.step()
            else:
                guard.step(closure)

    figures = {}
    for where in ("none", "cpu", "device"):
        guard = None if where == "none" else lrkit.Guard(model, optimizer, snapshot=where)
        loop(220, guard)  # past the early, closer snapshots
        _sync(device)
        start = time.perf_counter()
        loop(300, guard)
        _sync(device)
        figures[f"{where}_ms"] = round(1e3 * (time.perf_counter() - start) / 300, 3)
        if guard is not None:
            assert not guard.interventions
            guard.close()
    figures["overhead_cpu_snapshot"] = round(figures["cpu_ms"] / figures["none_ms"] - 1, 3)
    figures["overhead_device_snapshot"] = round(figures["device_ms"] / figures["none_ms"] - 1, 3)
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--only", nargs="*", help="run only these checks")
    args = parser.parse_args()
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: run with --device cpu for a dry run")
        return 0
    device = torch.device(args.device)
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    checks = {"restore": check_restore, "guard-scaler": check_guard_scaler,
              "monitor-no-sync": check_monitor, "lightning": check_lightning,
              "huggingface": check_huggingface, "overhead": check_overhead,
              "guard-overhead": check_guard_overhead}
    for name, fn in checks.items():
        if not args.only or name in args.only:
            fn(device)
    if args.json:
        Path(args.json).write_text(json.dumps(RESULTS, indent=1, default=str))
    return 0 if all(r["ok"] for r in RESULTS.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
