"""Every ```python block in README.md and docs/*.md runs, so the docs cannot silently rot.

The blocks of one markdown file run in order in one namespace, like the cells of a notebook: a
block may use what an earlier block of the same file defined. Each block is its own test case,
named by its file, its index among the file's python blocks and its first code line
(``test_doc_block[docs/find.md-block1-line43]``); the test of block k first runs the blocks
before it that have not run yet, so ``-k`` on a single block works too.

What a snippet assumes the reader already has (``model``, ``optimizer``, ``train_loader``,
``criterion``, a loss history ``losses``, a LightningModule ``module``, a Hugging Face
``trainer``, ...) comes from a small prepared namespace built on the built-in example
``digits-mlp`` (``lrkit.examples.build("digits-mlp", seed=0)``), and the files a snippet reads
(``train.py``, ``find.json``, ...) are written beforehand into the file's own temporary working
directory. The prepared objects are small (a 96-step Trainer, ``epochs = 2``) so that the
whole file runs in well under a minute; what the snippets themselves do is never rewritten.

A block that genuinely cannot run here (several processes under torchrun, a GPU, a server) is
excluded only by an HTML comment on the line right before its fence::

    <!-- docs-test: skip (needs torchrun with 2 processes) -->

Its test case still compiles it, and every such comment must give a reason.
"""
from __future__ import annotations

import dataclasses
import linecache
import os
import re
import traceback
from pathlib import Path
from typing import Any, Callable

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(?P<indent>\s*)(?P<ticks>`{3,})(?P<lang>[^`\s]*)\s*$")
MARKER = re.compile(r"<!--\s*docs-test:(?P<body>.*?)-->", re.S)
SKIP = re.compile(r"^\s*skip\s*\((?P<reason>[^()]*\S[^()]*)\)\s*$")
HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*$")


@dataclasses.dataclass(frozen=True)
class Block:
    path: Path
    index: int  #: among the python blocks of its file, from 0
    line: int  #: 1-based line of the first code line in the markdown file
    lang: str
    code: str
    section: str  #: the nearest heading above the block
    marker: str | None  #: the text of a docs-test comment right before the fence

    @property
    def doc(self) -> str:
        return self.path.relative_to(ROOT).as_posix()

    @property
    def id(self) -> str:
        return f"{self.doc}-block{self.index}-line{self.line}"

    @property
    def skip_reason(self) -> str | None:
        if self.marker is None:
            return None
        match = SKIP.match(self.marker)
        return match.group("reason").strip() if match else None


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced block of a markdown file (any language), in order; python ones numbered."""
    lines = path.read_text().splitlines()
    blocks: list[Block] = []
    section, index, i = "", 0, 0
    while i < len(lines):
        heading = HEADING.match(lines[i])
        if heading:
            section = heading.group("title")
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = i + 1
        while end < len(lines) and lines[end].strip() != fence.group("ticks"):
            end += 1
        assert end < len(lines), f"{path.name}:{i + 1}: the code fence is never closed"
        before = i - 1
        while before >= 0 and not lines[before].strip():
            before -= 1
        marker = MARKER.fullmatch(lines[before].strip()) if before >= 0 else None
        lang = fence.group("lang").lower()
        indent = len(fence.group("indent"))
        code = "\n".join(line[indent:] for line in lines[i + 1:end]) + "\n"
        blocks.append(Block(path, index if lang == "python" else -1, i + 2, lang, code, section,
                            marker.group("body").strip() if marker else None))
        index += lang == "python"
        i = end + 1
    return blocks


def python_blocks(path: Path) -> list[Block]:
    return [block for block in fenced_blocks(path) if block.lang == "python"]


ALL_BLOCKS = [block for path in DOCS for block in python_blocks(path)]


# --------------------------------------------------------------------------------------------
# The prepared namespace: what a reader of the docs already has.


def _digits_tensors():
    import torch
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    data = torch.utils.data.TensorDataset(torch.tensor(x / 16.0, dtype=torch.float32),
                                          torch.tensor(y))
    return torch.utils.data.random_split(data, [1437, 360], torch.Generator().manual_seed(0))


def _lightning_objects() -> dict[str, Any]:
    """A LightningModule (with its own loaders) and a datamodule on the digits."""
    import lightning as L
    import torch

    train, val = _digits_tensors()

    class DigitsData(L.LightningDataModule):
        def train_dataloader(self):
            return torch.utils.data.DataLoader(train, batch_size=32, shuffle=True,
                                               generator=torch.Generator().manual_seed(0))

        def val_dataloader(self):
            return torch.utils.data.DataLoader(val, batch_size=360)

    class DigitsClassifier(L.LightningModule):
        def __init__(self, lr: float = 1e-3) -> None:
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(),
                                           torch.nn.Linear(128, 10))

        def forward(self, x):
            return self.net(x)

        def training_step(self, batch, batch_idx):
            x, y = batch
            loss = torch.nn.functional.cross_entropy(self(x), y)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.log("val_loss", torch.nn.functional.cross_entropy(self(x), y))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr, momentum=0.9)

        train_dataloader = DigitsData.train_dataloader
        val_dataloader = DigitsData.val_dataloader

    torch.manual_seed(0)
    return {"module": DigitsClassifier(), "dm": DigitsData()}


def _lightning_trainer(steps: int = 30):
    import lightning as L

    return L.Trainer(max_steps=steps, logger=False, enable_checkpointing=False,
                     enable_progress_bar=False, enable_model_summary=False)


def _huggingface_objects() -> dict[str, Any]:
    """A configured transformers.Trainer: a small token classifier (any module whose forward
    takes the batch's keys and returns a dict with "loss" is a Trainer model; nothing is
    downloaded) learning a rule on random token sequences, for one epoch of 96 steps."""
    import torch
    from transformers import Trainer, TrainingArguments

    class RuleTokens(torch.utils.data.Dataset):
        def __init__(self, n: int, seed: int) -> None:
            generator = torch.Generator().manual_seed(seed)
            self.ids = torch.randint(1, 64, (n, 12), generator=generator)
            self.labels = (self.ids[:, 0] > 32).long()

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int) -> dict:
            return {"input_ids": self.ids[i], "labels": self.labels[i]}

    class TokenClassifier(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = torch.nn.Embedding(64, 16)
            self.head = torch.nn.Linear(12 * 16, 2)

        def forward(self, input_ids, labels=None):
            logits = self.head(self.embed(input_ids).flatten(1))
            if labels is None:
                return {"logits": logits}
            return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}

    torch.manual_seed(0)
    model = TokenClassifier()
    # 96 steps at batch 64: enough for docs/recommend.md to rescale its recipe to batch 256
    args = TrainingArguments(output_dir="hf-out", per_device_train_batch_size=64,
                             num_train_epochs=1, logging_steps=4, report_to=[], use_cpu=True,
                             save_strategy="no", disable_tqdm=True, log_level="error")
    train_dataset, eval_dataset = RuleTokens(6144, seed=0), RuleTokens(256, seed=1)
    trainer = Trainer(model=model, args=args, train_dataset=train_dataset,
                      eval_dataset=eval_dataset)
    return {"trainer": trainer, "hf_model": model, "args": args, "train_dataset": train_dataset,
            "eval_dataset": eval_dataset}


def _loss_history() -> dict[str, Any]:
    """A noisy falling training curve, its rate, and a validation curve: a run's logs."""
    import numpy as np

    rng = np.random.default_rng(0)
    steps = np.arange(400)
    losses = 2.3 * np.exp(-steps / 80) + 0.1 + 0.03 * rng.standard_normal(400)
    val_curve = [float(v) for v in 2.3 * np.exp(-np.arange(20, 400, 40) / 80) + 0.15]
    return {"losses": [float(v) for v in losses], "lrs": 0.1, "val_curve": val_curve}


def _base_namespace() -> dict[str, Any]:
    import torch

    import lrkit

    problem = lrkit.examples.build("digits-mlp", seed=0)

    def make_problem(seed: int = 0):
        return lrkit.examples.build("digits-mlp", seed=seed)

    @torch.no_grad()
    def validate(model) -> float:
        """The reader's own validation: mean loss over the validation loader."""
        losses = [float(problem.criterion(model(x), y)) for x, y in problem.val_loader]
        return sum(losses) / len(losses)

    return {
        "torch": torch,
        "problem": problem,
        "make_problem": make_problem,
        "model": problem.model,
        "optimizer": problem.optimizer,
        "opt": problem.optimizer,
        "train_loader": problem.train_loader,
        "loader": problem.train_loader,
        "val_loader": problem.val_loader,
        "criterion": problem.criterion,
        "validate": validate,
        "val_loss": validate(problem.model),
        "epochs": 2,
        "path": "checkpoint.pt",
        "spec": "warmup(500) >> cosine(10000, floor=0.1)",
        # the model runs on the CPU here, so mixed precision is off (the usual enabled=use_amp)
        "scaler": torch.amp.GradScaler("cuda", enabled=False),
    }


def _dict_batches(namespace: dict[str, Any]) -> dict[str, Any]:
    """README's loader of dict batches (any batch format: a loss function of (model, batch))."""
    return {"loader": [{"x": x, "y": y} for x, y in namespace["train_loader"]]}


#: names a doc's snippets assume, by the prepared object that provides them; a provider runs only
#: when one of its names appears in that doc's python blocks
PROVIDERS: list[tuple[tuple[str, ...], Callable[[dict[str, Any]], dict[str, Any]]]] = [
    (("losses", "lrs", "val_curve"), lambda ns: _loss_history()),
    (("module", "dm"), lambda ns: _lightning_objects()),
    (("trainer", "train_dataset"), lambda ns: _huggingface_objects()),
]

#: per doc, names that differ from the base namespace
DOC_NAMESPACE: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "README.md": _dict_batches,
}

#: sections written for a framework's user: there ``trainer`` is that framework's trainer and
#: ``model`` its model. Keyed by (doc, heading); these names are put back after the block
#: unless the block itself rebinds them.
SECTION_NAMESPACE: dict[tuple[str, str], Callable[[dict[str, Any]], dict[str, Any]]] = {
    ("docs/find.md", "PyTorch Lightning"): lambda ns: {"trainer": _lightning_trainer()},
    ("docs/diagnose.md", "Hugging Face"): lambda ns: {"model": ns["hf_model"]},
    ("docs/diagnose.md", "Lightning"): lambda ns: {"model": _lightning_objects()["module"]},
    ("docs/recommend.md", "In Lightning and Hugging Face"): lambda ns: {"model": ns["hf_model"]},
}

#: files a doc's snippets read, written into its working directory beforehand when named there
PREPARED_FILES: dict[str, Callable[[dict[str, Any], Path, Path], None]] = {}


def _prepared_file(name: str):
    def register(fn):
        PREPARED_FILES[name] = fn
        return fn

    return register


@_prepared_file("train.py")
def _train_py(ns: dict[str, Any], where: Path, doc: Path) -> None:
    (where / "train.py").write_text(
        "import lrkit\n\n\n"
        "def make_problem(seed=0):\n"
        "    return lrkit.examples.build('digits-mlp', seed=seed)\n")


@_prepared_file("find.json")
def _find_json(ns: dict[str, Any], where: Path, doc: Path) -> None:
    """What ``lrkit find digits-mlp --json find.json`` writes; ``finder`` is its result."""
    import lrkit

    problem = lrkit.examples.build("digits-mlp", seed=0)
    ns["finder"] = lrkit.find_lr(problem.model, problem.optimizer, problem.train_loader,
                                 problem.criterion, progress=False)
    ns["finder"].to_json(where / "find.json")


@_prepared_file("recipe.json")
def _recipe_json(ns: dict[str, Any], where: Path, doc: Path) -> None:
    """What ``lrkit recommend digits-mlp --json recipe.json`` writes; ``recipe`` is its result."""
    import lrkit

    ns["recipe"] = lrkit.recommend("digits-mlp", progress=False)
    ns["recipe"].to_json(where / "recipe.json")


@_prepared_file("schedule.yaml")
def _schedule_yaml(ns: dict[str, Any], where: Path, doc: Path) -> None:
    """The doc's own ```yaml example is the schedule.yaml its snippets load."""
    (yaml_block,) = [b for b in fenced_blocks(doc) if b.lang == "yaml"]
    (where / "schedule.yaml").write_text(yaml_block.code)


def _mentions(blocks: list[Block], name: str) -> bool:
    return any(re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", b.code) for b in blocks)


# --------------------------------------------------------------------------------------------
# Running one doc's blocks in order.


@dataclasses.dataclass
class DocRun:
    path: Path
    cwd: Path
    namespace: dict[str, Any] | None = None
    errors: dict[int, BaseException | None] = dataclasses.field(default_factory=dict)

    def prepare(self) -> None:
        blocks = [b for b in python_blocks(self.path) if b.marker is None]
        ns: dict[str, Any] = {"__name__": "__docs__"}
        ns.update(_base_namespace())
        for names, provide in PROVIDERS:
            if any(_mentions(blocks, name) for name in names):
                ns.update(provide(ns))
        doc = self.path.relative_to(ROOT).as_posix()
        if doc in DOC_NAMESPACE:
            ns.update(DOC_NAMESPACE[doc](ns))
        for name, write in PREPARED_FILES.items():
            if any(name in b.code for b in blocks):
                write(ns, self.cwd, self.path)
        self.namespace = ns

    def run_until(self, block: Block) -> BaseException | None:
        """Run the blocks before ``block`` and ``block`` itself, each once, in order."""
        for earlier in python_blocks(self.path)[:block.index + 1]:
            if earlier.index not in self.errors:
                self.errors[earlier.index] = self._run(earlier)
        return self.errors[block.index]

    def _run(self, block: Block) -> BaseException | None:
        if block.marker is not None:  # excluded (its test checks the reason)
            return None
        old_cwd = Path.cwd()
        os.chdir(self.cwd)
        try:
            if self.namespace is None:
                self.prepare()
            ns = self.namespace
            section = SECTION_NAMESPACE.get((block.doc, block.section))
            given = section(ns) if section else {}
            saved = {name: ns.get(name, _MISSING) for name in given}
            ns.update(given)
            try:
                exec(_compile(block), ns)
            except BaseException as error:  # noqa: BLE001 - reported by the block's test
                if isinstance(error, KeyboardInterrupt):
                    raise
                return error
            finally:
                for name, value in given.items():
                    if ns.get(name, _MISSING) is value:  # the block did not rebind it
                        if saved[name] is _MISSING:
                            del ns[name]
                        else:
                            ns[name] = saved[name]
            return None
        finally:
            os.chdir(old_cwd)


_MISSING = object()


def _compile(block: Block):
    """The block's code compiled so that tracebacks name the markdown file and its lines."""
    filename = str(block.path)
    text = block.path.read_text()
    linecache.cache[filename] = (len(text), None, text.splitlines(True), filename)
    return compile("\n" * (block.line - 1) + block.code, filename, "exec")


_RUNS: dict[Path, DocRun] = {}


@pytest.fixture
def doc_run(tmp_path_factory, request) -> DocRun:
    block: Block = request.param
    if block.path not in _RUNS:
        slug = block.doc.replace("/", "-").replace(".", "-")
        _RUNS[block.path] = DocRun(block.path, tmp_path_factory.mktemp(slug))
    return _RUNS[block.path]


def _report(block: Block, run: DocRun, error: BaseException) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    keep = [i for i, frame in enumerate(frames) if frame.filename == str(block.path)]
    tb = error.__traceback__
    for _ in range(keep[0] if keep else 0):
        tb = tb.tb_next
    text = "".join(traceback.format_exception(type(error), error, tb))
    earlier = [i for i, e in run.errors.items() if e is not None and i < block.index]
    note = (f"\n(earlier blocks of {block.doc} failed too: {earlier}; this may follow from them)"
            if earlier else "")
    return (f"{block.doc}, python block {block.index} (line {block.line}, section "
            f"{block.section!r}) raised:\n\n{text}{note}")


#: snippets that are right but fail because of a bug in lrkit itself (reported, not fixed here),
#: keyed by (doc, section): (a pattern the error must match, the bug). Such a block is an
#: expected failure only with that error; once it passes, its test fails until the entry goes.
KNOWN_LIBRARY_BUGS: dict[tuple[str, str], tuple[str, str]] = {
    # (doc, section): (error pattern, what is wrong); empty while every block passes
}


@pytest.mark.parametrize("doc_run", ALL_BLOCKS, ids=[b.id for b in ALL_BLOCKS], indirect=True)
def test_doc_block(doc_run: DocRun, request) -> None:
    block: Block = request.node.callspec.params["doc_run"]
    if block.marker is not None:
        assert block.skip_reason, (
            f"{block.doc}:{block.line}: the comment before this block must read "
            f"'<!-- docs-test: skip (why it cannot run here) -->', not {block.marker!r}")
        compile(block.code, block.doc, "exec")  # an excluded block is still valid Python
        return
    error = doc_run.run_until(block)
    bug = KNOWN_LIBRARY_BUGS.get((block.doc, block.section))
    if bug is not None:
        pattern, what = bug
        if error is None:
            pytest.fail(f"{block.id} passes now: remove its KNOWN_LIBRARY_BUGS entry ({what})")
        if re.search(pattern, f"{type(error).__name__}: {error}", re.S):
            pytest.xfail(f"lrkit bug: {what}")
    if error is not None:
        pytest.fail(_report(block, doc_run, error), pytrace=False)


def test_docs_have_python_blocks() -> None:
    assert (ROOT / "README.md") in DOCS and len(DOCS) >= 7
    assert len(ALL_BLOCKS) >= 25


def test_every_excluded_block_says_why() -> None:
    """A docs-test comment is a skip with a reason, right before a python fence."""
    problems = []
    for path in DOCS:
        text = path.read_text()
        by_line = {b.line - 1: b for b in fenced_blocks(path)}  # fence line -> block
        for match in MARKER.finditer(text):
            line = text.count("\n", 0, match.start()) + 1
            body = match.group("body").strip()
            if not SKIP.match(body):
                problems.append(f"{path.name}:{line}: {body!r} is not 'skip (reason)'")
                continue
            lines = text.splitlines()
            after = line
            while after < len(lines) and not lines[after].strip():
                after += 1
            block = by_line.get(after + 1)
            if block is None or block.lang != "python":
                problems.append(f"{path.name}:{line}: the skip comment is not right before a "
                                "```python block")
    assert problems == []
    skipped = [b for b in ALL_BLOCKS if b.marker is not None]
    assert all(b.skip_reason for b in skipped)


def test_section_keys_name_real_sections() -> None:
    sections = {(b.doc, b.section) for b in ALL_BLOCKS}
    for keys in (SECTION_NAMESPACE, KNOWN_LIBRARY_BUGS):
        assert set(keys) <= sections, set(keys) - sections


def test_readme_recipe_file_works_with_lrkit_find(tmp_path, monkeypatch, capsys) -> None:
    """README's `my_recipe.py` block is a file: saved as such, `lrkit find my_recipe.py:make`
    (as its first line says) runs on it."""
    import json

    from lrkit.cli import main

    (block,) = [b for b in python_blocks(ROOT / "README.md")
                if b.code.startswith("# my_recipe.py")]
    (tmp_path / "my_recipe.py").write_text(block.code)
    monkeypatch.chdir(tmp_path)
    assert main(["find", "my_recipe.py:make", "--steps", "40", "--json", "--no-progress"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["suggested_lr"] is not None and len(result["losses"]) > 10
