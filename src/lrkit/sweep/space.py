"""What a sweep searches over: candidate rates (a log range or an explicit list) and optimizers.

Rates of a range lie on a *global* log lattice, ``10 ** (k / points_per_decade)`` for integer
``k``, so that two sweeps over overlapping ranges at the same resolution share their points (a
widened sweep reuses the trials of a narrower one).

Optimizers are named by a short spec that the CLI and Python share::

    sgd                      plain SGD
    sgd-momentum             SGD with momentum 0.9 (``nesterov`` adds Nesterov momentum)
    adam, adamw, rmsprop     the torch.optim classes with their defaults (adamw: weight_decay 0.01)
    adamw(weight_decay=0.1)  any option of the class, as Python literals
    NAdam, torch.optim.RAdam any torch.optim class, by name (case-insensitive) or dotted path
    mypkg.opt:Lion(betas=(0.9, 0.99))   a class from an importable module
    recipe                   the recipe's own optimizer, only its rate changed
"""
from __future__ import annotations

import ast
import dataclasses
import importlib
import math
from typing import Any, Iterable, Sequence

from lrkit.errors import LrkitError, is_real, plain_int, require

DEFAULT_POINTS_PER_DECADE = 8

#: short names -> (torch.optim class name, default options)
ALIASES: dict[str, tuple[str, dict[str, Any]]] = {
    "sgd": ("SGD", {}),
    "sgd-momentum": ("SGD", {"momentum": 0.9}),
    "momentum": ("SGD", {"momentum": 0.9}),
    "nesterov": ("SGD", {"momentum": 0.9, "nesterov": True}),
    "adam": ("Adam", {}),
    "adamw": ("AdamW", {"weight_decay": 0.01}),
    "rmsprop": ("RMSprop", {}),
}
RECIPE = "recipe"


def lr_key(value: float) -> str:
    """A stable text key for a rate (12 significant digits), used to match trials to points."""
    return f"{float(value):.12g}"


# -- rates ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class RateSpace:
    """Candidate rates, ascending. ``kind`` is ``"range"`` (a log lattice between ``low`` and
    ``high``) or ``"list"`` (the values given)."""

    values: tuple[float, ...]
    kind: str
    points_per_decade: int | None = None

    @property
    def low(self) -> float:
        return self.values[0]

    @property
    def high(self) -> float:
        return self.values[-1]

    def __len__(self) -> int:
        return len(self.values)

    def index_of(self) -> dict[str, int]:
        return {lr_key(v): i for i, v in enumerate(self.values)}

    def describe(self) -> str:
        if self.kind == "range":
            return (f"{self.low:.3g}..{self.high:.3g}, {len(self)} rates "
                    f"({self.points_per_decade} per decade)")
        return f"{len(self)} rates: " + ", ".join(f"{v:.3g}" for v in self.values)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "points_per_decade": self.points_per_decade,
                "values": [lr_key(v) for v in self.values]}


def _positive_float(text: Any, what: str) -> float:
    if isinstance(text, bool):  # True is not a rate (float(True) would be 1.0)
        raise LrkitError(f"{what} {text!r} is not a number")
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise LrkitError(f"{what} {text!r} is not a number") from None
    require(math.isfinite(value) and value > 0,
            f"{what} must be a positive finite learning rate, got {text!r}")
    return value


def _require_no_empty_item(items: Sequence[str], name: str, text: str, what: str,
                           example: str) -> None:
    """Refuse ``a,,b`` (or a comma at either end) rather than drop the empty item: a value
    left out by mistake would be swept without a word."""
    empty = [i + 1 for i, item in enumerate(items) if not item]
    if empty:
        which = f"item {empty[0]}" if len(empty) == 1 else f"items {', '.join(map(str, empty))}"
        raise LrkitError(f"{name} {text!r} has an empty item ({which} of {len(items)}); give the "
                         f"{what} separated by single commas, e.g. {example!r}")


def log_lattice(low: float, high: float, points_per_decade: int) -> list[float]:
    """The lattice rates ``10 ** (k / points_per_decade)`` within ``[low, high]`` (both ends are
    included when they lie on the lattice up to rounding)."""
    eps = 1e-9
    first = math.ceil(math.log10(low) * points_per_decade - eps)
    last = math.floor(math.log10(high) * points_per_decade + eps)
    return [float(lr_key(10.0 ** (k / points_per_decade))) for k in range(first, last + 1)]


def _text_points_per_decade(part: str, text: str) -> int:
    """The points per decade written as the third part of a ``LOW:HIGH:N`` rate range."""
    fix = (f"give LOW:HIGH:N with N an integer from 1 to 100, e.g. "
           f"'{':'.join(text.split(':')[:2])}:{DEFAULT_POINTS_PER_DECADE}'")
    try:
        value = int(part)
    except ValueError:
        raise LrkitError(f"lrs {text!r}: the points per decade {part!r} (after the second ':') "
                         f"is not an integer; {fix}") from None
    require(1 <= value <= 100, f"lrs {text!r}: the points per decade {value} (after the second "
            f"':') must be between 1 and 100; {fix}")
    return value


def _rate_range(low_text: Any, high_text: Any, points_per_decade: int, finer: str,
                text: str | None = None) -> RateSpace:
    """The lattice rates of the range ``low_text:high_text``. ``finer`` says how to ask for more
    points per decade where they came from (the parameter or the range's third part); ``text``:
    the range as the user wrote it (``"1e-4:1:16"``), which the errors then name."""
    where = f"lrs {text!r}: " if text is not None else ""
    low = _positive_float(low_text, f"{where}the range's low end")
    high = _positive_float(high_text, f"{where}the range's high end")
    require(low < high, f"{where}the rate range {low_text}:{high_text} is "
            f"{'empty' if low == high else 'inverted'}; give LOW:HIGH with LOW < HIGH")
    values = log_lattice(low, high, points_per_decade)
    require(len(values) >= 2,
            f"{where}the rate range {low_text}:{high_text} holds {len(values)} lattice rate(s) "
            f"at {points_per_decade} per decade; widen it or {finer}")
    return RateSpace(tuple(values), "range", points_per_decade)


def parse_rates(spec: Any, points_per_decade: int | None = None) -> RateSpace:
    """Candidate rates from ``"1e-4:1"`` (log range; ``"1e-4:1:16"`` sets the points per decade),
    ``"0.001,0.01,0.1"`` (explicit list), a ``(low, high)`` tuple, a list of rates or one rate
    (numpy numbers and arrays included). ``points_per_decade``: the resolution of a range
    (default 8); given with a list, or with a range that names another, it is refused rather
    than ignored."""
    given = points_per_decade is not None
    points_per_decade = plain_int(DEFAULT_POINTS_PER_DECADE if points_per_decade is None
                                  else points_per_decade)
    require(isinstance(points_per_decade, int) and not isinstance(points_per_decade, bool)
            and 1 <= points_per_decade <= 100,
            f"points_per_decade must be an integer between 1 and 100, got {points_per_decade!r}")
    if isinstance(spec, RateSpace):
        # built by hand (the class is public): its values checked as a list's are, and its
        # points per decade as a range's (a negative or descending one failed inside Optuna)
        require(spec.kind in ("range", "list"),
                f"RateSpace kind must be 'range' or 'list', got {spec.kind!r}")
        per = plain_int(spec.points_per_decade)  # numpy integers are the numbers they are
        require(per is None if spec.kind == "list" else (
                    isinstance(per, int) and not isinstance(per, bool) and 1 <= per <= 100),
                f"a RateSpace {spec.kind}'s points_per_decade must be "
                + ("None" if spec.kind == "list" else "an integer from 1 to 100")
                + f", got {per!r}")
        values = tuple(float(v) for v in _checked_rates(spec.values))
        require(values == tuple(sorted(set(values))),
                f"a RateSpace's values must be ascending and distinct, got {values!r}")
        require(not given or spec.points_per_decade == points_per_decade,
                f"points_per_decade (--points-per-decade) {points_per_decade} and the RateSpace's "
                f"own ({spec.points_per_decade}) differ: give it once")
        same = (isinstance(spec.values, tuple) and spec.values == values
                and spec.points_per_decade is per)
        return spec if same else dataclasses.replace(spec, values=values, points_per_decade=per)
    if isinstance(spec, str):
        text = spec.strip()
        require(bool(text), "the rate range is empty; give LOW:HIGH (e.g. 1e-4:1) or a list a,b,c")
        if ":" in text:
            parts = [p.strip() for p in text.split(":")]
            require(len(parts) in (2, 3),
                    f"rate range {spec!r} must be LOW:HIGH or LOW:HIGH:POINTS_PER_DECADE")
            if len(parts) == 3:
                # the third part is the user's own points per decade: its errors name the text
                # the user wrote (lrs '1e-4:1:0'), not the points_per_decade parameter
                per = _text_points_per_decade(parts[2], text)
                require(not given or per == points_per_decade,
                        f"the rate range {text!r} sets {per} points per decade and "
                        f"points_per_decade (--points-per-decade) says {points_per_decade}: "
                        "give it once")
                return _rate_range(parts[0], parts[1], per, "raise its points per decade (the "
                                   "third part)", text)
            return _rate_range(parts[0], parts[1], points_per_decade, "raise points_per_decade",
                               text)
        items = [p.strip() for p in text.split(",")]
        _require_no_empty_item(items, "lrs", text, "rates", "0.001,0.01,0.1")
        if len(items) == 1:
            try:
                float(items[0])
            except ValueError:  # one item that is no number: most often a range written otherwise
                raise LrkitError(
                    f"lrs {text!r} is neither a rate nor a range: give a range LOW:HIGH (e.g. "
                    "1e-3:1), LOW:HIGH:N (N rates per decade) or a list of rates a,b,c") from None
        for i, item in enumerate(items):  # the errors name the text the user wrote
            _positive_float(item, f"lrs {text!r}: rate {i + 1}" if len(items) > 1
                            else f"lrs {text!r}: the rate")
        return parse_rates(items, points_per_decade if given else None)
    if is_real(spec) or (getattr(spec, "shape", None) == () and hasattr(spec, "item")):
        # a single rate (a number, a numpy scalar or a 0-dim array/tensor)
        return parse_rates([spec], points_per_decade if given else None)
    if isinstance(spec, tuple) and len(spec) == 2:
        return _rate_range(spec[0], spec[1], points_per_decade, "raise points_per_decade")
    if isinstance(spec, Iterable) and not isinstance(spec, (bytes, dict)):
        values = sorted({float(lr_key(_positive_float(_as_written(v), "rate"))) for v in spec})
        require(len(values) >= 1, "the list of rates is empty; give at least one rate")
        require(not given, f"points_per_decade (--points-per-decade) {points_per_decade} is for a "
                           "LOW:HIGH range; a list of rates is swept as it is: drop it, or give "
                           "a range")
        return RateSpace(tuple(values), "list", None)
    raise LrkitError(f"rates must be 'LOW:HIGH', 'a,b,c', a (low, high) tuple, a list or one "
                     f"rate, got {spec!r}")


def _as_written(value: Any) -> Any:
    """A rate as the user wrote it: a float32 tensor's 1e-3 is 0.0010000000475 as a double,
    stored so, and a later ``lrs="0.001"`` reused none of its trials; such a value is rounded
    to the digits its type holds (7 for float32, 3-4 for 16 bits)."""
    if getattr(value, "shape", None) == () and hasattr(value, "item"):
        digits = {"float32": 7, "float16": 4, "bfloat16": 3}.get(
            str(getattr(value, "dtype", "")).replace("torch.", ""))
        value = value.item()
        if digits is not None and is_real(value) and math.isfinite(value) and value > 0:
            return float(f"{value:.{digits}g}")
    return value


# -- optimizers ----------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    """An optimizer choice: ``target`` is a class path (``torch.optim.SGD``) or ``"recipe"``."""

    label: str
    target: str
    options: tuple[tuple[str, Any], ...] = ()
    #: options that an alias implies and the user did not write (``adamw``'s weight decay): they
    #: do not override options that differ between a recipe's parameter groups
    implied: tuple[str, ...] = ()

    @property
    def kwargs(self) -> dict[str, Any]:
        return dict(self.options)

    def key(self) -> str:
        """The canonical text that identifies this choice in a study (class and options)."""
        if self.target == RECIPE:
            return RECIPE
        opts = ",".join(f"{k}={v!r}" for k, v in self.options)
        return f"{self.target}({opts})"

    def resolve(self) -> type | None:
        return None if self.target == RECIPE else _import_class(self.target)

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, "target": self.target, "options": self.kwargs}


def _torch_optim_names() -> dict[str, str]:
    import torch

    return {name.lower(): name for name in dir(torch.optim)
            if isinstance(getattr(torch.optim, name), type)
            and issubclass(getattr(torch.optim, name), torch.optim.Optimizer)
            and name != "Optimizer"}


def _import_class(path: str) -> type:
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attr)
    except (ImportError, AttributeError, ValueError) as exc:
        raise LrkitError(f"cannot import optimizer class {path!r}: {exc}") from None


def _checked_rates(values: Any) -> list[float]:
    """Each a positive finite rate (a RateSpace's values), at least one."""
    rates = [_positive_float(v, "rate") for v in (() if values is None else values)]
    require(len(rates) >= 1, "the list of rates is empty; give at least one rate")
    return rates


def _literal(node: ast.AST, text: str) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        # (a dict keyed by a list: TypeError, unhashable)
        raise LrkitError(f"optimizer option in {text!r} must be a Python literal "
                         f"(number, string, True/False/None, tuple)") from None


def _split_top_level(text: str) -> list[str]:
    """``text`` split at its commas outside brackets, each item stripped; empty items stay."""
    parts, depth, current = [], 0, []
    for char in text:
        if char in "([{":
            depth += 1
        elif char in ")]}":
            depth -= 1
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return [p.strip() for p in parts]


def _dotted(node: ast.AST) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return None if base is None else f"{base}.{node.attr}"
    return None


def _unknown(name: str) -> LrkitError:
    """The error for an unknown optimizer name, with the closest known name (a typo)."""
    import difflib

    known = sorted(ALIASES) + [RECIPE] + sorted(_torch_optim_names().values())
    lowered = {k.lower(): k for k in reversed(known)}  # an alias wins over torch's class name
    close = [repr(lowered[c]) for c in difflib.get_close_matches(name.lower(), lowered, n=2)]
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    return LrkitError(f"unknown optimizer {name!r}{hint}; use one of {', '.join(known)}, a dotted "
                      "class path (mypkg.module.Class or mypkg.module:Class), or "
                      "name(option=value)")


def parse_optimizer(spec: Any) -> OptimizerSpec:
    """One optimizer from a spec string (see the module docstring), a ``torch.optim`` class,
    a ``(class, options)`` pair or an :class:`OptimizerSpec`."""
    if isinstance(spec, OptimizerSpec):
        return spec
    if isinstance(spec, type):
        return _from_class(spec, {}, spec.__name__)
    if isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict):
        cls, options = spec
        if isinstance(cls, str):
            base = parse_optimizer(cls)
            return _with_options(base, options, f"{base.label}{_fmt(options)}")
        require(isinstance(cls, type), f"optimizer {spec!r}: the first item must be a class")
        return _from_class(cls, options, f"{cls.__name__}{_fmt(options)}")
    require(isinstance(spec, str), f"optimizer must be a name, a class or (class, options), "
            f"got {type(spec).__name__}")
    text = spec.strip()
    require(bool(text), "empty optimizer name")
    name, options = text, {}
    if text.endswith(")") and "(" in text:
        head = text[:text.index("(")].strip()
        try:
            call = ast.parse(f"_f{text[text.index('('):]}", mode="eval").body
        except SyntaxError:
            raise LrkitError(f"cannot parse optimizer spec {text!r}; write name(option=value, ...)"
                             ) from None
        require(isinstance(call, ast.Call) and not call.args,
                f"optimizer options in {text!r} must be keywords: name(option=value, ...)")
        name = head
        for keyword in call.keywords:
            require(keyword.arg is not None, f"cannot use ** in optimizer spec {text!r}")
            require(keyword.arg not in options,  # Python refuses it too; the last one won
                    f"optimizer spec {text!r} gives {keyword.arg!r} twice; give it once")
            options[keyword.arg] = _literal(keyword.value, text)
    lowered = name.lower()
    if lowered == RECIPE:
        require(not options, "the 'recipe' optimizer takes no options; it is the recipe's own")
        return OptimizerSpec(RECIPE, RECIPE)
    if lowered in ALIASES:
        class_name, defaults = ALIASES[lowered]
        merged = {**defaults, **options}
        return _checked(OptimizerSpec(text if options else lowered, f"torch.optim.{class_name}",
                                      tuple(sorted(merged.items())),
                                      tuple(sorted(set(defaults) - set(options)))))
    torch_names = _torch_optim_names()
    if lowered in torch_names:
        return _checked(OptimizerSpec(text, f"torch.optim.{torch_names[lowered]}",
                                      tuple(sorted(options.items()))))
    if "." in name or ":" in name:
        cls = _import_class(name)
        return _from_class(cls, options, text, path=name)
    raise _unknown(name)


def _fmt(options: dict[str, Any]) -> str:
    return "(" + ", ".join(f"{k}={v!r}" for k, v in options.items()) + ")" if options else ""


def _with_options(base: OptimizerSpec, options: dict[str, Any], label: str) -> OptimizerSpec:
    require(base.target != RECIPE, "the 'recipe' optimizer takes no options")
    merged = {**base.kwargs, **options}
    return _checked(OptimizerSpec(label, base.target, tuple(sorted(merged.items())),
                                  tuple(name for name in base.implied if name not in options)))


def _from_class(cls: type, options: dict[str, Any], label: str, path: str | None = None
                ) -> OptimizerSpec:
    import torch

    require(isinstance(cls, type) and issubclass(cls, torch.optim.Optimizer),
            f"optimizer {label!r} is not a torch.optim.Optimizer subclass")
    if path is None:
        path = f"{cls.__module__}:{cls.__qualname__}"
        if getattr(torch.optim, cls.__name__, None) is cls:
            path = f"torch.optim.{cls.__name__}"
    return _checked(OptimizerSpec(label, path, tuple(sorted(options.items()))))


def _checked(spec: OptimizerSpec) -> OptimizerSpec:
    """Build the optimizer once over a dummy parameter so that a bad option fails now."""
    import torch

    from lrkit.adapters.torch import closure_required

    cls = spec.resolve()
    reason = closure_required(cls)
    require(reason is None, f"optimizer {spec.label!r}: {reason}")
    require("lr" not in spec.kwargs,
            f"optimizer {spec.label!r}: do not set lr in its options, the sweep sets it")
    try:
        cls([torch.nn.Parameter(torch.zeros(1))], lr=1e-3, **spec.kwargs)
    except Exception as exc:  # TypeError for unknown options, ValueError/IndexError for bad ones
        raise LrkitError(f"optimizer {spec.label!r} rejects its options {spec.kwargs}: {exc}"
                         ) from None
    return spec


def parse_optimizers(spec: Any) -> list[OptimizerSpec]:
    """A list of optimizers from ``"sgd,adam"``, a list of specs, or None (the recipe's own)."""
    if spec is None:
        return [OptimizerSpec(RECIPE, RECIPE)]
    if isinstance(spec, str):
        items: Sequence[Any] = _split_top_level(spec) if spec.strip() else []
        _require_no_empty_item(items, "optimizers", spec.strip(), "optimizer names", "sgd,adam")
    elif isinstance(spec, (type, OptimizerSpec)) or (
            isinstance(spec, tuple) and len(spec) == 2 and isinstance(spec[1], dict)):
        items = [spec]
    elif isinstance(spec, Iterable) and not isinstance(spec, (bytes, dict)):
        items = list(spec)
    else:
        raise LrkitError("optimizers must be a name or spec such as 'sgd,adam', a torch.optim "
                         f"class, a (class, options) pair or a list of these, got {spec!r}")
    shown = spec.strip() if isinstance(spec, str) else spec
    require(len(items) >= 1, f"optimizers {shown!r} is empty; give at least one optimizer, e.g. "
                             "'sgd,adam'")
    parsed = [parse_optimizer(item) for item in items]
    keys = [_same_training(p) for p in parsed]
    duplicates = sorted({p.label for p, k in zip(parsed, keys) if keys.count(k) > 1})
    require(not duplicates, f"optimizer(s) {duplicates} given twice (the same class and the same "
                            "options, counting the class's own defaults)")
    return parsed


def _same_training(spec: OptimizerSpec) -> str:
    """``spec``'s key without the options its class takes by default: ``adam`` and
    ``adam(weight_decay=0)`` train alike, and were swept as two optimizers."""
    import inspect

    if spec.target == RECIPE:
        return spec.key()
    try:
        params = inspect.signature(_import_class(spec.target).__init__).parameters
    except (LrkitError, TypeError, ValueError):
        return spec.key()
    kept = []
    for name, value in spec.options:
        default = params[name].default if name in params else inspect.Parameter.empty
        try:
            same = default is not inspect.Parameter.empty and bool(default == value)
        except Exception:  # noqa: BLE001 - a tensor default, an odd type: not the same
            same = False
        if not same:
            kept.append((name, value))
    return OptimizerSpec(spec.label, spec.target, tuple(kept)).key()


def rebuild_optimizer(optimizer: Any, spec: OptimizerSpec, lr: float):
    """A new optimizer of ``spec``'s class over the same parameter groups as ``optimizer``.

    Each group keeps its parameters and its rate relative to the first group (so ``lr`` is the
    first group's rate, as in the finder); options that differ between the original groups (for
    example ``weight_decay=0`` on biases) are kept per group unless ``spec`` sets them (an
    alias's own defaults, such as ``adamw``'s weight decay, do not count as set).
    """
    if spec.target == RECIPE:
        return optimizer
    cls = spec.resolve()
    from lrkit.state import base_rates

    groups = optimizer.param_groups
    # (a scheduler's warmup from 0 had set every group's lr to 0: the ratios come from the
    # rates it started from)
    base = (base_rates(optimizer) if all("lr" in g for g in groups)
            else [float(g.get("lr", lr)) for g in groups])
    reference = next((b for b in base if b > 0), 0.0)
    import torch

    accepted = set(cls([torch.nn.Parameter(torch.zeros(1))], lr=1e-3, **spec.kwargs).defaults)
    varying = set()
    for name in (set().union(*(g.keys() for g in groups)) & accepted) - {"params", "lr"}:
        values = [repr(g.get(name)) for g in groups]
        if len(set(values)) > 1:
            varying.add(name)
    new_groups = []
    for group, b in zip(groups, base):
        new = {"params": group["params"], "lr": lr * (b / reference if reference > 0 else 1.0)}
        for name in varying - (set(spec.kwargs) - set(spec.implied)):
            new[name] = group[name]
        new_groups.append(new)
    try:
        return cls(new_groups, lr=lr, **spec.kwargs)
    except (TypeError, ValueError) as exc:
        raise LrkitError(f"cannot build optimizer {spec.label!r} over the recipe's parameter "
                         f"groups: {exc}") from None
