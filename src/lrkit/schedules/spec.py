"""Text and config forms of a schedule, both round-tripping to an equal schedule.

Grammar (a small subset of Python expressions, parsed with :mod:`ast` and never evaluated)::

    spec     := chain
    chain    := term ('>>' term)*           # a >> b: switch to b where a ends
    term     := call | term '*' NUMBER | NUMBER '*' term | '(' chain ')'
    call     := NAME '(' [arg (',' arg)*] ')'
    arg      := value | NAME '=' value
    value    := NUMBER | STRING | True | False | length | '[' value, ... ']' | spec
    length   := whole steps | NUMBER '*' epoch | NUMBER '*' total | length ('+'|'-') length

``warmup(n) >> s`` ramps into ``s``; any other ``a >> b`` joins ``b`` after ``a`` ends (each
piece counts steps from its own start). ``s * 0.5`` scales. Only the schedule names in
:data:`~lrkit.schedules.base.REGISTRY` may be called, and only the operators above are allowed:
there is no attribute access, indexing, comprehension or lambda, so a spec cannot run code.

The config form is plain data for JSON/YAML: ``{"type": "cosine", "steps": 10000, "floor": 0.1}``;
a list is a ``>>`` chain; lengths in units are strings (``"2*epoch"``); a string anywhere a
schedule is expected is parsed as a text spec.
"""
from __future__ import annotations

import ast
import json
from dataclasses import MISSING, fields, replace
from typing import Any

from lrkit.errors import LrkitError, is_real, require
from lrkit.schedules.base import REGISTRY, Join, Scale, Schedule, Warmup, _fmt_num, chain
from lrkit.schedules.units import Duration, epoch, total

__all__ = ["parse", "to_spec", "from_config", "to_config", "from_json", "to_json", "from_yaml",
           "to_yaml", "load"]

_MAX_SPEC = 20_000
_NAMES = {"epoch": epoch, "total": total}
_OPERATORS = ">> (then), * (scale by a number), and + - * / on numbers and lengths"


#: torch's names for lrkit's parameters, as a user of torch's schedulers writes them first
_TORCH_NAMES = {"t_max": "steps", "eta_min": "floor", "gamma": "factor", "step_size": "every",
                "total_steps": "steps", "pct_start": "pct", "anneal_strategy": "anneal",
                "base_lr": "low", "t_0": "period", "t_mult": "mult", "step_size_up": "up",
                "step_size_down": "down"}


def _did_you_mean(name: str, choices: Any) -> str:
    """" (did you mean 'cosine'?)" for a name close to one of ``choices`` (a typo, another
    case, torch's name for the parameter), else ""."""
    import difflib

    choices = list(choices)
    torch_name = _TORCH_NAMES.get(name.lower())
    if torch_name in choices:
        return f" (did you mean {torch_name!r}? {name!r} is torch's name for it)"
    lowered = {c.lower(): c for c in choices}
    close = ([lowered[name.lower()]] if name.lower() in lowered
             else difflib.get_close_matches(name, choices, n=1, cutoff=0.75))
    return f" (did you mean {close[0]!r}?)" if close else ""


def _allowed_names() -> str:
    return ", ".join(sorted(REGISTRY))


# ------------------------------------------------------------------------------------------
# parsing
# ------------------------------------------------------------------------------------------

#: Python's syntax, as a user calls it (an error said "Compare", "ListComp")
_NODE_WORDS = {"Lambda": "a lambda", "ListComp": "a list comprehension", "Subscript":
               "indexing ([...])", "Attribute": "an attribute (a.b)", "BoolOp": "and/or",
               "IfExp": "if/else", "Dict": "a dict", "Set": "a set", "Starred": "*",
               "NamedExpr": ":=", "JoinedStr": "an f-string"}


class _Evaluator:
    def __init__(self, text: str) -> None:
        self.text = text

    def fail(self, node: ast.AST, message: str) -> LrkitError:
        segment = ast.get_source_segment(self.text, node) or self.text
        if segment.strip() == self.text.strip():
            return LrkitError(f"bad schedule spec {self.text!r}: {message}")
        return LrkitError(f"bad schedule spec {self.text!r}: in {segment!r}: {message}")

    def eval(self, node: ast.AST) -> Any:
        method = getattr(self, "visit_" + type(node).__name__, None)
        if method is None:
            if isinstance(node, ast.Compare):  # "warmup(100) > cosine(900)": '>>' meant
                raise self.fail(node, "a comparison (<, >, ==) is not allowed; to run one "
                                      "schedule after another, write '>>' (a >> b)")
            what = _NODE_WORDS.get(type(node).__name__, type(node).__name__)
            raise self.fail(node, f"{what} is not allowed; a spec may only call schedules "
                                  f"({_allowed_names()}) and use {_OPERATORS}")
        return method(node)

    def visit_Constant(self, node: ast.Constant) -> Any:
        if isinstance(node.value, (bool, int, float, str)) or node.value is None:
            return node.value
        raise self.fail(node, f"the value {node.value!r} is not allowed; use numbers, strings, "
                              "True/False, lists and lengths")

    def visit_Name(self, node: ast.Name) -> Any:
        if node.id in _NAMES:
            return _NAMES[node.id]
        if node.id in REGISTRY:
            raise self.fail(node, f"{node.id} is a schedule; call it: {REGISTRY[node.id].signature()}")
        raise self.fail(node, f"unknown name {node.id!r}"
                              f"{_did_you_mean(node.id, [*REGISTRY, 'epoch', 'total'])}; "
                              "allowed names are the units epoch and "
                              f"total, and the schedules {_allowed_names()}")

    def visit_List(self, node: ast.List) -> tuple:
        return tuple(self.eval(e) for e in node.elts)

    visit_Tuple = visit_List

    def visit_UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.eval(node.operand)
        if isinstance(node.op, (ast.USub, ast.UAdd)) and _is_quantity(value):
            return -value if isinstance(node.op, ast.USub) else value
        raise self.fail(node, f"this unary operator is not allowed; allowed: {_OPERATORS}")

    def visit_BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.eval(node.left), self.eval(node.right)
        op = node.op
        try:
            if isinstance(op, ast.RShift):
                if isinstance(left, Schedule) and isinstance(right, Schedule):
                    return chain(left, right)
                raise self.fail(node, ">> needs a schedule on both sides, e.g. "
                                      "warmup(500) >> cosine(10000)")
            if isinstance(op, ast.Mult):
                if isinstance(left, Schedule) and is_real(right):
                    return Scale(left, right)
                if isinstance(right, Schedule) and is_real(left):
                    return Scale(right, left)
                if _is_quantity(left) and _is_quantity(right) and (
                        is_real(left) or is_real(right)):
                    return left * right
                raise self.fail(node, "* multiplies a schedule or a length by a number")
            if isinstance(op, (ast.Add, ast.Sub)) and _is_quantity(left) and _is_quantity(right):
                return left + right if isinstance(op, ast.Add) else left - right
            if isinstance(op, ast.Div) and _is_quantity(left) and is_real(right):
                require(right != 0, "division by zero")
                return left * (1.0 / right) if isinstance(left, Duration) else left / right
        except LrkitError as exc:
            if str(exc).startswith("bad schedule spec"):
                raise
            raise self.fail(node, str(exc)) from None
        raise self.fail(node, f"this operator is not allowed here; allowed: {_OPERATORS}")

    def visit_Call(self, node: ast.Call) -> Schedule:
        if not isinstance(node.func, ast.Name):
            raise self.fail(node, f"only schedule names can be called: {_allowed_names()}")
        name = node.func.id
        cls = REGISTRY.get(name)
        if cls is None:
            raise self.fail(node, f"unknown schedule {name!r}{_did_you_mean(name, REGISTRY)}; "
                                  f"allowed: {_allowed_names()}")
        args = []
        for a in node.args:
            if isinstance(a, ast.Starred):
                raise self.fail(a, "*args is not allowed")
            args.append(self.eval(a))
        kwargs: dict[str, Any] = {}
        for kw in node.keywords:
            if kw.arg is None:
                raise self.fail(kw, "**kwargs is not allowed")
            if kw.arg in kwargs:
                raise self.fail(kw, f"{name}(): {kw.arg} is given twice")
            kwargs[kw.arg] = self.eval(kw.value)
        try:
            return build(cls, args, kwargs)
        except LrkitError as exc:
            raise self.fail(node, str(exc)) from None



def _is_quantity(x: object) -> bool:
    return is_real(x) or isinstance(x, Duration)


def build(cls: type[Schedule], args: list | tuple, kwargs: dict[str, Any]) -> Schedule:
    """Construct ``cls`` from positional and keyword values with spec-grade error messages."""
    names = [f.name for f in fields(cls) if f.init]
    sig = cls.signature()
    if len(args) > len(names):
        raise LrkitError(f"{cls.name}() takes at most {len(names)} values, got {len(args)}; "
                         f"signature: {sig}")
    values = dict(zip(names, args))
    for key, value in kwargs.items():
        if key not in names:
            raise LrkitError(f"{cls.name}() has no parameter {key!r}{_did_you_mean(key, names)}; "
                             f"allowed: {', '.join(names)} "
                             f"(signature: {sig})")
        if key in values:
            raise LrkitError(f"{cls.name}(): {key} is given twice; signature: {sig}")
        values[key] = value
    missing = [f.name for f in fields(cls) if f.init and f.default is MISSING
               and f.default_factory is MISSING and f.name not in values]
    if missing:
        raise LrkitError(f"{cls.name}() is missing {', '.join(missing)}; signature: {sig}")
    return cls(**values)


def parse(text: str) -> Schedule:
    """A schedule from its text spec, e.g. ``"warmup(500) >> cosine(10000, floor=0.1)"``."""
    require(isinstance(text, str), f"a schedule spec must be a string, got {type(text).__name__}")
    text = text.strip()
    require(text != "", "the schedule spec is empty; e.g. 'warmup(500) >> cosine(10000)'")
    require(len(text) <= _MAX_SPEC, f"the schedule spec is longer than {_MAX_SPEC} characters")
    if "\n" in text or "\r" in text:
        # a spec over several lines (a YAML block, a shell string broken over lines) read
        # "unexpected indent": one line (whitespace means nothing in a spec), each line's
        # comment cut first (joined, a comment took the rest of the schedule with it)
        text = " ".join(" ".join(line.split("#", 1)[0] for line in text.splitlines()).split())
    try:
        tree = ast.parse(text, mode="eval")
    except (RecursionError, MemoryError):  # "1+1+...+1" 3,000 times: Python's own parser
        raise LrkitError("bad schedule spec: nested too deeply") from None
    except SyntaxError as exc:
        col = (exc.offset or 1) - 1
        pointer = text[max(col - 10, 0): col + 10]
        raise LrkitError(f"bad schedule spec {text!r}: not valid syntax near {pointer!r} "
                         f"(column {col + 1}): {exc.msg}") from None
    try:
        value = _Evaluator(text).eval(tree.body)
    except RecursionError:
        raise LrkitError(f"bad schedule spec: nested too deeply") from None
    except OverflowError:  # 10**400 * 1.0, an integer past float range in arithmetic
        raise LrkitError(f"bad schedule spec: a number in it is too large for a float "
                         "(beyond 1.8e308)") from None
    if not isinstance(value, Schedule):
        # named as written: the evaluator keeps lists as tuples
        kind = "list" if isinstance(tree.body, ast.List) else type(value).__name__
        raise LrkitError(f"bad schedule spec {text!r}: it is a {kind}, not a "
                         f"schedule; schedules: {_allowed_names()}")
    return value


def _parse_value(text: str) -> Any:
    """A value (number, length, schedule) written as text inside a config."""
    require(len(text) <= _MAX_SPEC, f"a value in the schedule config is longer than "
                                    f"{_MAX_SPEC} characters")
    try:
        tree = ast.parse(text, mode="eval")
        return _Evaluator(text).eval(tree.body)
    except (RecursionError, MemoryError):
        raise LrkitError(f"bad value in the schedule config: nested too deeply") from None
    except OverflowError:
        raise LrkitError(f"bad value in the schedule config: a number in it is too large for "
                         "a float (beyond 1.8e308)") from None


# ------------------------------------------------------------------------------------------
# printing
# ------------------------------------------------------------------------------------------

def _fmt_value(value: Any) -> str:
    if isinstance(value, Schedule):
        return _pretty(value)[0]
    if isinstance(value, Duration):
        return value.to_spec()
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        return _fmt_num(value)
    if isinstance(value, tuple):
        return "[" + ", ".join(_fmt_value(v) for v in value) + "]"
    return repr(value)


def _call_text(s: Schedule, skip: tuple[str, ...] = (), explicit: bool = False) -> str:
    render = _explicit if explicit else (lambda node: _pretty(node)[0])
    parts = []
    n_pos = s.positional
    for i, f in enumerate(fields(s)):
        if f.name in skip:
            continue
        value = getattr(s, f.name)
        if isinstance(value, Schedule):
            text = render(value)
        elif f.metadata.get("kind") == "schedules":
            text = "[" + ", ".join(render(v) for v in value) + "]"
        else:
            text = _fmt_value(value)
        if f.default is MISSING or value != f.default:
            if n_pos is None:
                in_place = f.default is MISSING
            else:
                in_place = i < n_pos and len(parts) == i
            parts.append(text if in_place else f"{f.name}={text}")
    return f"{s.name}({', '.join(parts)})"


def _pretty(s: Schedule) -> tuple[str, bool]:
    """(text, is a top-level ``>>`` chain)."""
    if isinstance(s, Join):
        lengths_ok = True
        at: Any = 0
        for child, boundary in zip(s.schedules, s.boundaries):
            n = child.length
            if n is None:
                lengths_ok = False
                break
            at = at + n
            if not _same_length(at, boundary):
                lengths_ok = False
                break
        if lengths_ok:
            texts = []
            for i, child in enumerate(s.schedules):
                text, is_chain = _pretty(child)
                texts.append(f"({text})" if is_chain and i > 0 else text)
            return " >> ".join(texts), True
        return _call_text(s), False
    if isinstance(s, Warmup) and s.then is not None:
        then, is_chain = _pretty(s.then)
        return f"{_call_text(s, skip=('then',))} >> {'(' + then + ')' if is_chain else then}", True
    if isinstance(s, Scale):
        inner, is_chain = _pretty(s.schedule)
        return f"{'(' + inner + ')' if is_chain else inner} * {_fmt_num(s.factor)}", False
    return _call_text(s), False


def _same_length(a: Any, b: Any) -> bool:
    from lrkit.schedules.units import as_length

    try:
        return as_length(a, "length", allow_zero=True) == b
    except LrkitError:
        return False


def _explicit(s: Schedule) -> str:
    """Every node as a call: always parses back to the same tree."""
    return _call_text(s, explicit=True)


def to_spec(schedule: Schedule) -> str:
    """The shortest text form that parses back to an equal schedule."""
    if not isinstance(schedule, Schedule):
        raise LrkitError(f"to_spec() needs a schedule, got {schedule!r}")
    text = _pretty(schedule)[0]
    try:
        if parse(text) == schedule:
            return text
    except LrkitError:
        pass
    return _explicit(schedule)


# ------------------------------------------------------------------------------------------
# config (dict / list / JSON / YAML)
# ------------------------------------------------------------------------------------------

def _config_value(kind: str, value: Any, explicit: bool) -> Any:
    if isinstance(value, Schedule):
        return _to_config(value, explicit)
    if kind == "schedules":
        return [_to_config(v, explicit) for v in value]
    if isinstance(value, Duration):
        return value.to_spec()
    if isinstance(value, tuple):
        return [v.to_spec() if isinstance(v, Duration) else v for v in value]
    return value


def _to_config(s: Schedule, explicit: bool) -> Any:
    if not explicit and isinstance(s, Join) and _pretty(s)[1]:
        items = [_to_config(child, explicit) for child in s.schedules]
        if isinstance(items[0], list):  # a chain is left-associative: splice the first piece
            items = items[0] + items[1:]
        return items
    if not explicit and isinstance(s, Warmup) and s.then is not None:
        return [_to_config(replace(s, then=None), explicit), _to_config(s.then, explicit)]
    out: dict[str, Any] = {"type": s.name}
    for f in fields(s):
        value = getattr(s, f.name)
        if f.default is not MISSING and value == f.default:
            continue
        out[f.name] = _config_value(f.metadata.get("kind", ""), value, explicit)
    return out


def to_config(schedule: Schedule) -> Any:
    """Plain data (dicts, lists, numbers, strings) for JSON or YAML."""
    if not isinstance(schedule, Schedule):
        raise LrkitError(f"to_config() needs a schedule, got {schedule!r}")
    pretty = _to_config(schedule, explicit=False)
    try:
        if from_config(pretty) == schedule:
            return pretty
    except LrkitError:
        pass
    return _to_config(schedule, explicit=True)


def _from_value(kind: str, value: Any, where: str) -> Any:
    if kind.startswith("schedule") and kind != "schedules":
        return None if value is None and kind == "schedule?" else from_config(value, where)
    if kind == "schedules":
        require(isinstance(value, (list, tuple)), f"{where} must be a list of schedules")
        return tuple(from_config(v, f"{where}[{i}]") for i, v in enumerate(value))
    if kind.startswith("length") and isinstance(value, str):
        try:
            return _parse_value(value)
        except (LrkitError, SyntaxError) as exc:
            raise LrkitError(f"{where}: {value!r} is not a length like 500, '2*epoch' or "
                             f"'0.1*total' ({exc})") from None
    if kind in ("float", "int") and isinstance(value, str):
        try:  # YAML reads 1e-4 (no dot) as a string
            return float(value)
        except ValueError:
            return value
    if kind == "lengths" and isinstance(value, (list, tuple)):
        return tuple(_from_value("length", v, f"{where}[{i}]") for i, v in enumerate(value))
    return value


def from_config(config: Any, where: str = "schedule") -> Schedule:
    """A schedule from a spec string, a ``{"type": ...}`` dict, a list (chain) or a schedule."""
    if isinstance(config, Schedule):
        return config
    if isinstance(config, str):
        return parse(config)
    if isinstance(config, (list, tuple)):
        require(len(config) > 0, f"{where}: an empty list is not a schedule")
        items = [from_config(c, f"{where}[{i}]") for i, c in enumerate(config)]
        out = items[0]
        for item in items[1:]:
            out = chain(out, item)
        return out
    if not isinstance(config, dict):
        raise LrkitError(f"{where}: expected a spec string, a dict with 'type', or a list; "
                         f"got {config!r}")
    kind = config.get("type")
    cls = REGISTRY.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise LrkitError(f"{where}: 'type' must be one of {_allowed_names()}; got {kind!r}")
    kinds = {f.name: f.metadata.get("kind", "") for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in config.items():
        if key == "type":
            continue
        if key not in kinds:
            raise LrkitError(f"{where}: {cls.name} has no parameter {key!r}; allowed: "
                             f"{', '.join(kinds)} (signature: {cls.signature()})")
        values[key] = _from_value(kinds[key], value, f"{where}.{key}")
    if cls is Join and "boundaries" not in values and "schedules" in values:
        return from_config(list(values["schedules"]), where)
    try:
        return build(cls, [], values)
    except LrkitError as exc:
        raise LrkitError(f"{where}: {exc}") from None


def to_json(schedule: Schedule, **kwargs: Any) -> str:
    return json.dumps(to_config(schedule), **kwargs)


def from_json(text: str) -> Schedule:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LrkitError(f"schedule JSON is not valid: {exc}") from None
    return from_config(data)


def to_yaml(schedule: Schedule) -> str:
    try:
        import yaml
    except ImportError:  # pyyaml is in the 'yaml' extra (from_yaml said so; this raised bare)
        raise LrkitError("to_yaml needs PyYAML: pip install 'lrkit[yaml]'") from None

    return yaml.safe_dump(to_config(schedule), sort_keys=False)


def from_yaml(text: str) -> Schedule:
    try:
        import yaml
    except ImportError:  # pragma: no cover
        raise LrkitError("reading YAML needs PyYAML: pip install 'lrkit[yaml]'") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise LrkitError(f"schedule YAML is not valid: {exc}") from None
    return from_config(data)


def load(source: Any) -> Schedule:
    """A schedule from a spec string, a config, or a path to a ``.json``/``.yaml`` file.

    A mapping with a ``schedule`` key (a larger config file) is read from that key. A file that
    cannot be read or parsed is an :class:`LrkitError` naming the file (and the line).
    """
    import os

    if is_config_file(source):
        path = os.fspath(source)
        data = read_config_file(path)
        if isinstance(data, dict) and "schedule" in data and "type" not in data:
            data = data["schedule"]
        return from_config(data, where=path)
    return from_config(source)


def is_config_file(source: Any) -> bool:
    """Whether ``source`` names a ``.json``/``.yaml`` schedule file (not a spec string)."""
    import os

    return isinstance(source, (str, os.PathLike)) and str(source).endswith(
        (".json", ".yaml", ".yml"))


def read_config_file(path: str) -> Any:
    """The parsed content of a ``.json`` or ``.yaml`` file; an :class:`LrkitError` names the
    file (and the line) when it cannot be read or parsed."""
    import os

    require(os.path.exists(path), f"schedule file {path!r} does not exist")
    require(not os.path.isdir(path), f"schedule file {path!r} is a directory, not a file")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except UnicodeDecodeError as exc:
        raise LrkitError(f"schedule file {path!r} is not UTF-8 text ({exc.reason} at byte "
                         f"{exc.start})") from None
    except OSError as exc:
        raise LrkitError(f"schedule file {path!r} cannot be read: "
                         f"{exc.strerror or exc}") from None
    if not path.endswith(".json"):
        return _yaml_load(text, path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise LrkitError(f"schedule file {path!r} is not valid JSON: {exc.msg} at line "
                         f"{exc.lineno}, column {exc.colno}") from None


def _yaml_load(text: str, path: str) -> Any:
    try:
        import yaml
    except ImportError:  # pragma: no cover
        raise LrkitError("reading YAML needs PyYAML: pip install 'lrkit[yaml]'") from None

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise LrkitError(f"schedule file {path!r} is not valid YAML: {problem}{where}") from None
