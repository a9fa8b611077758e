"""One self-contained HTML page from lrkit results: the demo's summary, or saved finder, sweep,
diagnosis, schedule and recipe JSON.

Every result is a plain dict (what the parts' ``to_dict()`` return and their ``--json`` options
write); :func:`detect_kind` tells them apart by their ``"kind"`` key, or by their keys where a part
writes none. :func:`render_page` turns a list of ``(source, dict)`` into HTML with inline CSS and
the plots embedded as base64 PNG, so the page needs no network and no other file. All text that
comes from the results or the user (file names, example and study names, notes) is escaped.
"""
from __future__ import annotations

import base64
import dataclasses
import html
import io
import json
import math
import os
import textwrap
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from lrkit.errors import LrkitError, is_real
from lrkit.files import write_atomically
from lrkit.show.plots import log_rate_axis, plain, thin

FINDER = "lrkit.finder"
SWEEP = "lrkit.sweep"
DIAGNOSIS = "lrkit.diagnosis"
DIAGNOSE_EXAMPLE = "lrkit.diagnose-example"
RECIPE = "lrkit.recipe"
SCHEDULE = "lrkit.schedule"
DEMO = "lrkit.demo"
KINDS = (DEMO, FINDER, SWEEP, DIAGNOSIS, DIAGNOSE_EXAMPLE, RECIPE, SCHEDULE)

VERDICT_CLASS = {"healthy": "good", "diverged": "bad", "unstable": "bad", "too_slow": "warn",
                 "plateaued": "warn", "not_enough_data": "muted"}

WHY = (
    "The learning rate is the one setting that decides whether training works at all. Too high "
    "and the loss jumps around or blows up; too low and the model barely moves for the whole "
    "budget; in between lies a range where the same model, data and number of steps end far "
    "lower. The right value depends on the model, the optimizer, the batch size and the data, so "
    "a default copied from elsewhere is a guess.")


# ------------------------------------------------------------------------------------------------
# kinds
# ------------------------------------------------------------------------------------------------

#: the keys each kind must have for its section to say anything (what its writer always sets)
REQUIRED = {
    FINDER: ("lrs", "losses", "suggested_lr"),
    SWEEP: ("points", "trials"),
    DIAGNOSIS: ("verdict", "confidence"),
    DIAGNOSE_EXAMPLE: ("tables",),
    RECIPE: ("optimizer", "peak_lr", "schedule"),
    SCHEDULE: ("curve", "key_points"),
    DEMO: ("finder", "comparison", "schedules"),
}


def check_fields(kind: str, data: dict) -> None:
    """Refuse a result that says it is ``kind`` but lacks the keys its section is built from."""
    inner = data.get("recipe") if kind == RECIPE and "peak_lr" not in data else None
    fields = inner if isinstance(inner, dict) else data
    missing = [k for k in REQUIRED.get(kind, ()) if k not in fields]
    if missing:
        raise LrkitError(f"says it is {kind!r} but lacks {', '.join(map(repr, missing))}; "
                         "it is incomplete or not written by lrkit: save it again (e.g. with "
                         "--json FILE)")


def _positive(value: Any) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and 0 < value < float("inf"))


def check_values(kind: str, data: dict) -> None:
    """Refuse the values a section shows in its headline when they cannot be lrkit's (a file
    edited by hand: "Suggested learning rate: -0.1", "Verdict: 5" were shown as they were)."""
    from lrkit.diagnose.classify import VERDICTS

    problem = None
    if kind == FINDER and data.get("suggested_lr") is not None \
            and not _positive(data["suggested_lr"]):
        problem = f"suggested_lr is {data['suggested_lr']!r}, not a positive number or null"
    elif kind == RECIPE:
        fields = data["recipe"] if "peak_lr" not in data else data
        if not _positive(fields.get("peak_lr")):
            problem = f"peak_lr is {fields.get('peak_lr')!r}, not a positive number"
        elif not isinstance(fields.get("schedule"), (str, dict)):
            problem = f"schedule is {fields.get('schedule')!r}, not a schedule"
    elif kind == DIAGNOSIS:
        confidence = data.get("confidence")
        if data.get("verdict") not in VERDICTS:
            problem = (f"verdict is {data.get('verdict')!r}, not one of "
                       f"{', '.join(VERDICTS)}")
        elif not (isinstance(confidence, (int, float)) and 0 <= confidence <= 1):
            problem = f"confidence is {confidence!r}, not a number from 0 to 1"
    if problem:
        raise LrkitError(f"says it is a {kind} result, but its {problem}: it was edited or not "
                         "written by lrkit; save it again (e.g. with --json FILE)")


def detect_kind(data: Any) -> str:
    """The kind of a saved result (:func:`_detect_kind`), its headline values checked
    (:func:`check_values`)."""
    kind = _detect_kind(data)
    check_values(kind, data)
    return kind


def _detect_kind(data: Any) -> str:
    """The kind of a saved result: its ``"kind"`` key, or what its keys show it to be; a result
    whose ``"kind"`` names a kind but lacks that kind's keys (:data:`REQUIRED`) is refused."""
    if not isinstance(data, dict):
        raise LrkitError("expected a JSON object (a saved lrkit result), got "
                         f"{type(data).__name__}")
    kind = data.get("kind")
    if isinstance(kind, str) and kind in KINDS:
        check_fields(kind, data)
        return kind
    keys = set(data)
    if {"lrs", "losses", "suggested_lr"} <= keys:
        return FINDER
    if isinstance(data.get("trials"), list) and isinstance(data.get("points"), list):
        return SWEEP
    if {"peak_lr", "schedule", "optimizer"} <= keys:
        return RECIPE
    inner = data.get("recipe")
    if isinstance(inner, dict) and {"peak_lr", "schedule", "optimizer"} <= set(inner):
        return RECIPE  # {"recipe": {...}, ...}, as Recipe.from_dict also accepts
    if isinstance(data.get("tables"), list) and all(
            isinstance(t, dict) and isinstance(t.get("results"), list) for t in data["tables"]):
        return DIAGNOSE_EXAMPLE
    if {"verdict", "confidence"} <= keys:
        return DIAGNOSIS
    if {"curve", "key_points"} <= keys:
        return SCHEDULE
    shown = ", ".join(sorted(map(str, keys))[:12]) or "none"
    raise LrkitError("not a saved lrkit result (finder, sweep, diagnose, schedule, recipe or demo "
                     f"summary JSON); its keys: {shown}")


def load_result(path: str | Path) -> tuple[str, dict]:
    """``(kind, data)`` of a saved result file; a clear :class:`LrkitError` when it is not one."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: a byte-order mark is no error
    except OSError as exc:
        raise LrkitError(f"cannot read {str(path)!r}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:  # a plot or other binary file given by mistake
        raise LrkitError(f"{str(path)!r} is not JSON: it is not UTF-8 text (a plot or another "
                         "binary file?); give the JSON files lrkit saved") from None
    if not text.strip():
        raise LrkitError(f"{str(path)!r} is empty: no result was saved in it")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LrkitError(f"{str(path)!r} is not JSON: {exc}") from None
    except RecursionError:  # nested deeper than the parser goes: no result lrkit saved
        raise LrkitError(f"{str(path)!r} is not a result lrkit saved: its JSON is nested too "
                         "deeply to read") from None
    try:
        return detect_kind(data), data
    except LrkitError as exc:
        raise LrkitError(f"{str(path)!r}: {exc}") from None


# ------------------------------------------------------------------------------------------------
# small helpers
# ------------------------------------------------------------------------------------------------

def esc(value: Any) -> str:
    """``value`` as text, escaped for HTML content and attribute values."""
    return html.escape(str(value), quote=True)


def num(value: Any, spec: str = ".3g", missing: str = "&ndash;") -> str:
    """A number for the page (``missing`` for None); strings such as ``"inf"`` pass escaped."""
    if value is None:
        return missing
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        return esc(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return esc(value)
    if not math.isfinite(number):
        return esc(str(number))
    return format(number, spec)


def pct(value: Any) -> str:
    return num(value, ".0%") if isinstance(value, (int, float)) else num(value)


def finite(value: Any) -> float | None:
    """``value`` as a finite float, else None (JSON writes non-finite numbers as null or text)."""
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def tail_mean(losses: Sequence[Any], share: float = 0.1) -> float | None:
    """Mean of the finite values in the last ``share`` of a curve (the "final loss")."""
    values = [finite(v) for v in losses]
    if not values:
        return None
    window = values[-max(1, int(len(values) * share)):]
    kept = [v for v in window if v is not None]
    return sum(kept) / len(kept) if kept else None


def smooth(values: Sequence[Any], beta: float = 0.9) -> tuple[list[int], list[float]]:
    """Bias-corrected EMA of the finite prefix of a curve: (steps, values)."""
    steps, out = [], []
    avg = 0.0
    for i, v in enumerate(values):
        v = finite(v)
        if v is None:
            break
        avg = beta * avg + (1 - beta) * v
        steps.append(i + 1)
        out.append(avg / (1 - beta ** (i + 1)))
    return steps, out


def json_safe(value: Any) -> Any:
    """Plain JSON types: numpy scalars to Python, non-finite floats to None, tuples to lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        value = dataclasses.asdict(value)
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, bool) or value is None or isinstance(value, (str, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    item = getattr(value, "item", None)
    if callable(item):
        return json_safe(item())
    return str(value)


class Ids:
    """Unique element ids: the first ``new("x")`` is ``x``, later ones ``x-2``, ``x-3``..."""

    def __init__(self) -> None:
        self.used: dict[str, int] = {}

    def new(self, base: str) -> str:
        count = self.used.get(base, 0) + 1
        self.used[base] = count
        return base if count == 1 else f"{base}-{count}"


@dataclasses.dataclass
class Section:
    title: str
    body: str
    anchor: str
    source: str | None = None


# ------------------------------------------------------------------------------------------------
# plots (matplotlib's object API, no pyplot, no display)
# ------------------------------------------------------------------------------------------------

def figure(width: float = 7.5, height: float = 4.0, ncols: int = 1, nrows: int = 1):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    axes = [fig.add_subplot(nrows, ncols, i + 1) for i in range(nrows * ncols)]
    return fig, axes


def png_data_uri(fig, dpi: int = 100) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def img(fig, alt: str, ids: Ids | None = None, name: str = "plot") -> str:
    uri = png_data_uri(fig)
    width, height = (int(round(v * 100)) for v in fig.get_size_inches())
    ident = f' id="{ids.new(name)}"' if ids else ""
    return (f'<figure><img{ident} class="plot" src="{uri}" width="{width}" height="{height}" '
            f'alt="{esc(alt)}"></figure>')


def draw_finder(ax, data: dict) -> None:
    from lrkit.find.result import FinderResult
    from lrkit.show.plots import finder_figure

    finder_figure(FinderResult.from_dict(data), ax=ax)


def draw_runs(ax, runs: Sequence[dict], title: str, *, labels: Callable[[dict], str]) -> None:
    """Training curves (smoothed) on a log axis; a cross where a run stopped on a non-finite
    loss."""
    plotted = False
    for i, run in enumerate(runs):
        losses = run.get("losses") or []
        steps, values = smooth(losses)
        color = f"C{i}"
        if values:
            ax.plot(*thin(steps, values), color=color, linewidth=1.6, label=plain(labels(run)))
            plotted = True
            if len(values) < len(losses):
                ax.plot([steps[-1]], [values[-1]], "x", color=color, markersize=10, mew=2)
        else:
            ax.plot([], [], color=color, label=plain(labels(run)) + " (no finite loss)")
    if plotted and all(v > 0 for line in ax.get_lines() for v in line.get_ydata()):
        ax.set_yscale("log")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("training loss (smoothed)")
    ax.set_title(plain(title), fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if runs:
        ax.legend(fontsize=8, loc="best")


def draw_schedule(ax, preview: dict, title: str | None = None, color: str = "C0") -> None:
    curve = preview.get("curve") or []
    xs = [p[0] for p in curve]
    ys = [p[1] for p in curve]
    ax.plot(xs, ys, color=color, linewidth=1.6)
    for point in preview.get("key_points") or []:
        ax.plot([point["step"]], [point["rate"]], "o", color="black", markersize=3)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("learning rate")
    ax.set_title(plain(title or preview.get("label") or preview.get("spec") or "schedule"),
                 fontsize=9)
    ax.grid(True, alpha=0.3)


def draw_sweep(ax, data: dict) -> None:
    points = data.get("points") or []
    optimizers = sorted({str(p.get("optimizer")) for p in points})
    for i, opt in enumerate(optimizers):
        rows = sorted((p for p in points if str(p.get("optimizer")) == opt),
                      key=lambda p: finite(p.get("lr")) or 0.0)
        done = [(p["lr"], finite(p.get("loss"))) for p in rows
                if p.get("status") == "finished" and finite(p.get("loss")) is not None]
        if done:
            ax.plot([d[0] for d in done], [d[1] for d in done], "o-", color=f"C{i}",
                    label=plain(opt))
        bad = [p["lr"] for p in rows if p.get("status") == "diverged"]
        if bad:
            top = max((d[1] for d in done), default=1.0)
            ax.plot(bad, [top] * len(bad), "x", color=f"C{i}", markersize=8,
                    label=f"{plain(opt)} diverged")
    best = data.get("best") or {}
    if finite(best.get("lr")):
        ax.axvline(best["lr"], color="k", linestyle="--", linewidth=1,
                   label=f"best {best['lr']:.3g}")
    band = data.get("band")
    if band and finite(band[0]) and finite(band[1]) and band[0] < band[1]:
        ax.axvspan(band[0], band[1], color="green", alpha=0.1, label="near-best band")
    log_rate_axis(ax)
    ax.set_xlabel("learning rate")
    ax.set_ylabel("final loss")
    ax.set_title("sweep: final loss against rate", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_lines():
        ax.legend(fontsize=8)


def run_label(run: dict) -> str:
    verdict = run.get("verdict")
    return f"lr {num(run.get('lr'), 'g')}" + (f": {verdict}" if verdict else "")


def overview_figure(summary: dict):
    """The demo at a glance (2 x 2): range test, the three rates, schedules, recipe vs default."""
    fig, axes = figure(13.0, 9.0, ncols=2, nrows=2)
    draw_finder(axes[0], summary["finder"])
    axes[0].set_title("(1) range test: loss against rate", fontsize=10)
    tables = summary["comparison"]["tables"]
    table = tables[-1]
    optimizer = textwrap.shorten(str(table["optimizer"]), width=48, placeholder="...")
    draw_runs(axes[1], table["results"], f"(2) same budget, three rates\n({optimizer})",
              labels=run_label)
    for i, item in enumerate(summary["schedules"]["previews"]):
        curve = item.get("curve") or []
        axes[2].plot([p[0] for p in curve], [p[1] for p in curve], color=f"C{i}", linewidth=1.6,
                     label=plain(item.get("title") or item.get("label")))
    axes[2].set_xlabel("optimizer step")
    axes[2].set_ylabel("learning rate")
    axes[2].set_title("(3) schedule previews", fontsize=10)
    axes[2].grid(True, alpha=0.3)
    axes[2].legend(fontsize=8)
    versus = summary.get("recipe_vs_default") or {}
    if versus.get("runs"):
        draw_runs(axes[3], versus["runs"], "(4) recommended recipe vs untuned default",
                  labels=lambda r: str(r.get("label")))
    else:
        axes[3].axis("off")
        axes[3].text(0.5, 0.5, "no recipe in this run", ha="center", va="center")
    fig.suptitle(plain(f"lrkit demo: {summary.get('example')}, {summary.get('budget_steps')} "
                       f"steps per run, seed {summary.get('seed')}"), fontsize=12)
    fig.tight_layout()
    return fig


# ------------------------------------------------------------------------------------------------
# HTML pieces
# ------------------------------------------------------------------------------------------------

def table(head: Sequence[str], rows: Iterable[Sequence[str]], cls: str = "") -> str:
    """A table from already-escaped cells."""
    head_html = "".join(f"<th>{h}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head_html}</tr></thead><tbody>{body}</tbody></table>'


def verdict_badge(verdict: Any) -> str:
    cls = VERDICT_CLASS.get(str(verdict), "muted")
    return f'<span class="badge {cls}">{esc(verdict)}</span>'


def bullets(items: Iterable[Any], cls: str = "") -> str:
    if isinstance(items, str):  # one note or reason, not one bullet per character
        items = [items]
    items = [f"<li>{esc(i)}</li>" for i in items]
    return f'<ul class="{cls}">{"".join(items)}</ul>' if items else ""


def details(summary: str, data: Any) -> str:
    text = json.dumps(json_safe(data), indent=1)
    return f"<details><summary>{esc(summary)}</summary><pre>{esc(text)}</pre></details>"


def source_line(source: str | None) -> str:
    return f'<p class="source">from <code>{esc(source)}</code></p>' if source else ""


# ------------------------------------------------------------------------------------------------
# sections, one function per kind
# ------------------------------------------------------------------------------------------------

def finder_body(data: dict, ids: Ids) -> str:
    from lrkit.find.result import FinderResult

    # read as the API reads it, older and minimal files included (the raw dict showed
    # "(stopped: None)", and a warning given as a string one bullet a character)
    result = FinderResult.from_dict(data)
    settings = result.settings if isinstance(result.settings, dict) else {}
    lr = finite(result.suggested_lr)
    good = result.good_range
    parts = []
    if lr is None:
        # the reason the result stored (the summary's), else the finder's own warnings (a
        # non-finite first loss, too few points, a loss that never fell): never another guess
        reasons = [w for w in result.warnings if isinstance(w, str)]
        why = settings.get("no_suggestion") or (
            reasons[-1] if reasons and "very first loss" in reasons[-1] else
            reasons[0] if reasons else "the loss never fell over the swept range")
        parts.append(f'<p class="headline">No suggestion: {esc(str(why).rstrip("."))}.</p>')
    else:
        parts.append(
            '<p class="headline">Suggested learning rate: <strong>'
            f'<span id="{ids.new("suggested-lr")}"'
            f' class="rate" data-value="{esc(repr(lr))}">{num(lr)}</span></strong>'
            + (f' &nbsp; good range <span id="{ids.new("good-range")}">{num(good[0])} .. '
               f"{num(good[1])}</span>" if good else "")
            + f' &nbsp; <span class="muted">(method: {esc(result.method)})</span></p>')
    steps = len(result.lrs)
    lrs = result.lrs or [None]
    # (a plain function's state is its own: without save_fn/load_fn nothing was put back)
    restored = ("the model and optimizer were restored afterwards"
                if settings.get("restored", True) else "nothing was restored afterwards")
    parts.append(f"<p>The test took {steps} optimizer steps, the rate going from {num(lrs[0])} "
                 f"to {num(lrs[-1])} ({esc(_stop_reason(result.stop_reason))}); "
                 f"{restored}.</p>")
    from lrkit.find.noise import describe

    noise = result.gradient_noise
    noise = math.inf if is_real(noise) and noise == math.inf else finite(noise)
    if noise is not None and noise >= 0:

        fraction = finite(settings.get("edge_fraction"))
        text = describe(noise)
        parts.append(f'<p id="{ids.new("gradient-noise")}">{esc(text[0].upper() + text[1:])}'
                     + (f"; edge took {fraction:.2g}x the loss minimum's rate" if fraction else "")
                     + ".</p>")
    if steps:
        fig, (ax,) = figure(7.5, 4.2)
        draw_finder(ax, data)
        fig.tight_layout()
        parts.append(img(fig, "loss against learning rate in the range test", ids))
    if result.suggestions:
        # minimum's rate is a tenth of the loss minimum's, as the summary and the plot say
        rows = [[esc("minimum/10" if name == "minimum" else name)
                 + (" (chosen)" if name == result.method else ""), num(value)]
                for name, value in result.suggestions.items()]
        parts.append(table(["method", "rate"], rows, "narrow"))
    if result.warnings:
        parts.append('<div class="warn-box">'
                     + bullets(f"warning: {w}" for w in result.warnings) + "</div>")
    return "".join(parts)


def _stop_reason(reason: Any) -> str:
    return "it ran to the last rate" if reason == "completed" else f"stopped: {reason}"


def runs_table(results: Sequence[dict]) -> str:
    head = ["rate", "verdict", "confidence", "change", "final train loss", "val loss", "accuracy"]
    rows = []
    for r in results:
        rows.append([num(r.get("lr"), "g"), verdict_badge(r.get("verdict")),
                     pct(r.get("confidence")),
                     esc(r["recommendation"]) if r.get("recommendation") else "&ndash;",
                     num(r.get("final_train_loss"), ".4g"), num(r.get("val_loss"), ".4g"),
                     pct(r.get("accuracy"))])
    return table(head, rows)


def comparison_body(data: dict, ids: Ids) -> str:
    parts = [f"<p>The same model trained for the same {esc(data.get('steps'))} steps from the same "
             "initialisation, three times, changing only the learning rate. Each curve is then "
             "read by <code>lrkit.diagnose</code>, which gives a verdict from the loss alone.</p>"]
    tables = data.get("tables") or []
    for t in tables:
        results = t.get("results") or []
        parts.append(f"<h3>{esc(t.get('optimizer'))}</h3>")
        if any(r.get("losses") for r in results):
            fig, (ax,) = figure(7.5, 4.0)
            draw_runs(ax, results, f"three rates, {t.get('optimizer')}", labels=run_label)
            fig.tight_layout()
            parts.append(img(fig, f"training loss at each rate, {t.get('optimizer')}", ids))
        parts.append(runs_table(results))
        parts.append("<ul class='reasons'>" + "".join(
            f"<li><strong>{num(r.get('lr'), 'g')}</strong> {verdict_badge(r.get('verdict'))}: "
            f"{esc('; '.join(map(str, r.get('reasons') or [])) or r.get('explanation') or '')}</li>"
            for r in results) + "</ul>")
    if data.get("note"):
        parts.append(f'<p class="note">{esc(data["note"])}</p>')
    meanings = {}
    for t in tables:
        for r in t.get("results") or []:
            if r.get("verdict") and r.get("explanation"):
                meanings.setdefault(r["verdict"], r["explanation"])
    if meanings:
        parts.append("<dl>" + "".join(f"<dt>{verdict_badge(v)}</dt><dd>{esc(e)}</dd>"
                                      for v, e in meanings.items()) + "</dl>")
    return "".join(parts)


def diagnosis_body(data: dict, ids: Ids) -> str:
    parts = []
    if data.get("file"):
        parts.append(f"<p>Loss log <code>{esc(data['file'])}</code>"
                     + (f" ({esc(data.get('format'))}, {esc(data.get('points'))} values)"
                        if data.get("format") else "") + "</p>")
    suggested = finite(data.get("suggested_lr"))
    parts.append(f'<p class="headline">Verdict: <span id="{ids.new("verdict")}">'
                 f"{verdict_badge(data.get('verdict'))}</span> (confidence "
                 f"{pct(data.get('confidence'))}); change the rate: "
                 f"{esc(data.get('recommendation') or _factor_text(data.get('lr_factor')))}"
                 + (f" &rarr; {num(suggested)}" if suggested is not None else "") + "</p>")
    parts.append(bullets(data.get("reasons") or [], "reasons"))
    if data.get("explanation"):
        parts.append(f"<p>{esc(data['explanation'])}</p>")
    evidence = data.get("evidence") or {}
    flat = [(k, v) for k, v in evidence.items() if not isinstance(v, (dict, list))]
    if flat:
        parts.append(table(["evidence", "value"],
                           [[esc(k), num(v, ".4g") if not isinstance(v, str) else esc(v)]
                            for k, v in flat], "narrow"))
    return "".join(parts)


def _factor_text(factor: Any) -> str:
    f = finite(factor)
    return "none" if f is None else ("keep" if f == 1.0 else f"x{f:g}")


def diagnose_example_body(data: dict, ids: Ids) -> str:
    return comparison_body(data, ids)


def schedule_body(data: dict, ids: Ids, title: str | None = None) -> str:
    """One schedule's preview, and the schedules compared with it (``lrkit schedule show
    --compare``), each drawn on its own axes: an absolute and a relative one (drawn for lr=1)
    share no scale."""
    compared = [c for c in data.get("compare") or [] if isinstance(c, dict)]
    previews = [data, *compared]
    parts = []
    drawn = [p for p in previews if p.get("curve")]
    if drawn:
        fig, axes = figure(7.5 if len(drawn) == 1 else 4.2 * len(drawn), 3.6, ncols=len(drawn))
        for i, (ax, p) in enumerate(zip(axes, drawn)):
            draw_schedule(ax, p, title if p is data else None, color=f"C{i}")
        fig.tight_layout()
        specs = "; ".join(str(p.get("spec") or p.get("label")) for p in drawn)
        parts.append(img(fig, f"learning rate over the run: {specs}", ids))
    for p in previews:
        spec = p.get("spec") or p.get("label")
        parts.append(f"<p>{'compared: ' if p is not data else ''}<code>{esc(spec)}</code>"
                     + (" (absolute rates)" if p.get("absolute") else
                        f" at lr {num(p.get('lr'))}") + f", {esc(p.get('steps'))} steps</p>")
        parts.append(key_points_table(p))
        parts.append(bullets((f"lint: [{w.get('code')}] {w.get('message')}" for w in
                              p.get("warnings") or []), "warnings"))
    return "".join(parts)


def key_points_table(preview: dict) -> str:
    points = preview.get("key_points") or []
    if not points:
        return ""
    return table(["step", "rate", "what"],
                 [[esc(p.get("step")), num(p.get("rate"), ".4g"), esc(p.get("label"))]
                  for p in points], "narrow")


def schedules_body(data: dict, ids: Ids) -> str:
    previews = data.get("previews") or []
    parts = ["<p>A schedule changes the rate during the run. lrkit writes schedules as short "
             "specs, previews them without training and lints them for common mistakes. Three "
             f"schedules over the same {esc(data.get('steps'))} steps "
             f"({esc(data.get('steps_per_epoch'))} steps per epoch):</p>"]
    if previews:
        fig, axes = figure(4.2 * len(previews), 3.4, ncols=len(previews))
        for i, (ax, p) in enumerate(zip(axes, previews)):
            draw_schedule(ax, p, str(p.get("title") or p.get("label")), color=f"C{i}")
        fig.tight_layout()
        parts.append(img(fig, "the three schedules, learning rate against step", ids))
    rows = []
    for p in previews:
        peak = p.get("peak") or {}
        curve = p.get("curve") or [[0, None]]
        rows.append([esc(p.get("title")), f"<code>{esc(p.get('spec') or p.get('label'))}</code>",
                     num(peak.get("rate"), ".4g"), num(curve[-1][1], ".4g"),
                     esc("; ".join(str(w.get("message")) for w in p.get("warnings") or [])
                         or "none")])
    parts.append(table(["schedule", "spec", "peak", "end", "lint"], rows))
    notes = [p for p in previews if p.get("description")]
    parts.append(bullets(f"{p.get('title')}: {p['description']}" for p in notes))
    return "".join(parts)


def recipe_body(data: dict, ids: Ids, *, plot: bool = True) -> str:
    parts = []
    options = data.get("optimizer_options") or {}
    opt_text = str(data.get("optimizer")) + (
        "(" + ", ".join(f"{k}={v}" for k, v in options.items()) + ")" if options else "")
    good = data.get("good_range")
    rows = [["optimizer", f"<code>{esc(opt_text)}</code>"],
            ["peak learning rate",
             f'<span id="{ids.new("recipe-peak-lr")}" '
             f'data-value="{esc(repr(data.get("peak_lr")))}">{num(data.get("peak_lr"))}</span>'],
            ["warmup", f"{esc(data.get('warmup_steps'))} steps"],
            ["total", f"{esc(data.get('total_steps'))} steps"],
            ["schedule", f"<code>{esc(data.get('schedule'))}</code>"],
            ["good range", f"{num(good[0])} .. {num(good[1])}" if good else "&ndash;"],
            ["batch size", esc(data.get("batch_size")) if data.get("batch_size") else "&ndash;"]]
    parts.append(table(["", ""], rows, "narrow fields"))
    recipe = _recipe_object(data)
    steps, rates = _recipe_rates(data, recipe) if plot else ([], [])
    if rates:
        fig, (ax,) = figure(7.5, 3.4)
        # the steps the rates were read at (every stride-th of a long run): plotted against
        # their positions, a 20,000-step recipe's axis ended at 1999 and its warmup read 10x short
        ax.plot(steps, rates, color="C1", linewidth=1.6)
        ax.set_ylim(bottom=0)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("learning rate")
        ax.set_title(plain(f"the recipe's schedule: {data.get('schedule')}"), fontsize=9)
        ax.grid(True, alpha=0.3)
        fig.tight_layout()
        parts.append(img(fig, "the recipe's learning rate over the run", ids))
    parts.append(bullets(data.get("notes") or [], "notes"))
    code = None
    if recipe is not None:
        try:
            code = recipe.to_code()
        except Exception:  # noqa: BLE001 - the page shows what it can
            code = None
    code = code or data.get("code")
    if code:
        parts.append(f"<p>In your training script:</p><pre class='code'>{esc(code)}</pre>")
    if data.get("evidence"):
        parts.append(details("evidence behind the recipe (long curves shortened)",
                             _shorten(data["evidence"])))
    return "".join(parts)


def _shorten(value: Any, limit: int = 12) -> Any:
    """``value`` with every list longer than ``limit`` replaced by a short description."""
    if isinstance(value, dict):
        return {k: _shorten(v, limit) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        if len(value) > limit:
            return f"[{len(value)} values]"
        return [_shorten(v, limit) for v in value]
    return value


def _recipe_object(data: dict):
    try:
        from lrkit.recommend import Recipe
    except ImportError:
        return None
    try:
        return Recipe.from_dict(data)
    except Exception:  # noqa: BLE001 - a recipe from another version: show the fields only
        return None


def _recipe_rates(data: dict, recipe: Any, limit: int = 2000) -> tuple[list[int], list[float]]:
    """``(steps, rates)``: the recipe's rate at every ``total_steps // limit``-th step."""
    total = data.get("total_steps")
    if not isinstance(total, int) or total < 1:
        return [], []
    stride = max(1, total // limit)
    steps = list(range(0, total, stride))
    if recipe is not None:
        try:
            return steps, [float(recipe.lr_at(t)) for t in steps]
        except Exception:  # noqa: BLE001
            pass
    try:
        from lrkit.schedules import preview

        p = preview(data["schedule"], total, lr=float(data["peak_lr"]))
        return steps, [p.rates[t] for t in steps]
    except Exception:  # noqa: BLE001 - no plot for a schedule this version cannot read
        return [], []


def versus_body(data: dict, ids: Ids) -> str:
    runs = data.get("runs") or []
    parts = [f"<p>Both trained from the same initialisation for the same "
             f"{esc(data.get('steps'))} steps on the same batches.</p>"]
    if runs:
        fig, (ax,) = figure(7.5, 4.0)
        draw_runs(ax, runs, "recommended recipe vs untuned default",
                  labels=lambda r: str(r.get("label")))
        fig.tight_layout()
        parts.append(img(fig, "training loss: recipe against the untuned default", ids))
    rows = [[esc(r.get("label")), f"<code>{esc(r.get('optimizer'))}</code>",
             f"<code>{esc(r.get('schedule'))}</code>",
             f'<span id="{esc(ids.new("final-loss-" + str(r.get("key") or i)))}">'
             f"{num(r.get('final_train_loss'), '.4g')}</span>",
             num(r.get("val_loss"), ".4g"), pct(r.get("accuracy"))]
            for i, r in enumerate(runs)]
    parts.append(table(["run", "optimizer", "learning rate", "final train loss", "val loss",
                        "accuracy"], rows))
    if data.get("conclusion"):
        parts.append(f'<p class="headline">{esc(data["conclusion"])}</p>')
    return "".join(parts)


def sweep_body(data: dict, ids: Ids) -> str:
    parts = []
    best = data.get("best") or {}
    name = data.get("study_name")
    attempts = len(data.get("trials") or [])
    counted = data.get("completed_trials")
    counted = counted if isinstance(counted, int) and 0 <= counted <= attempts else attempts
    parts.append(f"<p>Sweep <code>{esc(name)}</code>"
                 + (f" ({esc(data.get('strategy'))})" if data.get("strategy") else "")
                 + f": {counted} trials"
                 + (f" ({attempts} attempts with the retried ones)" if counted != attempts else "")
                 + f", {esc(data.get('total_steps'))} training steps.</p>")
    unfinished = data.get("complete") is False
    if finite(best.get("lr")) is not None:
        band = data.get("band")
        parts.append('<p class="headline">Best learning rate'
                     + (" so far (the sweep is not finished)" if unfinished else "")
                     + ': <strong>'
                     f'<span id="{ids.new("best-lr")}"'
                     f' data-value="{esc(repr(best["lr"]))}">{num(best["lr"])}</span></strong> '
                     f"with {esc(best.get('optimizer'))} (loss {num(best.get('loss'), '.4g')})"
                     + (f"; near-best band {num(band[0])} .. {num(band[1])}" if band else "")
                     + "</p>")
    else:
        parts.append('<p class="headline">No trial finished: every rate diverged or failed.</p>')
    notes = [n for n in data.get("notes") or [] if isinstance(n, str)]
    if notes:  # what qualifies the answer, as the CLI's summary says it (it was left out)
        parts.append('<div class="warn-box">' + bullets(f"note: {n}" for n in notes) + "</div>")
    if data.get("points"):
        fig, (ax,) = figure(7.5, 4.0)
        draw_sweep(ax, data)
        fig.tight_layout()
        parts.append(img(fig, "final loss against learning rate in the sweep", ids))
        rows = [[str(k), esc(p.get("optimizer")), num(p.get("lr")), num(p.get("loss"), ".4f"),
                 num(p.get("loss_sd"), ".4f", ""), esc(p.get("seeds") or ""), esc(p.get("status")),
                 esc(p.get("diagnosis") or "")]
                for k, p in enumerate(data["points"], start=1)]
        parts.append(table(["rank", "optimizer", "lr", "loss", "+/- sd", "seeds", "status",
                            "diagnosis"], rows))
    diverged = {k: v for k, v in (data.get("diverged_from") or {}).items() if v is not None}
    parts.append(bullets(f"{k} diverged at lr >= {v:.3g}" for k, v in diverged.items()))
    cmp = data.get("seed_comparison")
    if cmp:
        se = finite(cmp.get("standard_error"))
        threshold = cmp.get("threshold", 2 * se if se is not None else None)
        parts.append(f"<p>Seeds: best and runner-up differ by {num(cmp.get('difference'), '.4f')}"
                     f", which {'exceeds' if cmp.get('significant') else 'is within'} seed noise "
                     f"(threshold {num(threshold, '.4f')} = 2 x standard error "
                     f"{num(cmp.get('standard_error'), '.4f')}).</p>")
    return "".join(parts)


def demo_sections(summary: dict, ids: Ids, source: str | None) -> list[Section]:
    example = summary.get("example")
    sections = [Section(
        "Why the learning rate matters",
        f"<p>{esc(WHY)}</p><p>This page was made by <code>lrkit demo</code> on the built-in "
        f"example <code id='{ids.new('example-name')}'>{esc(example)}</code>: "
        f"{esc(summary.get('example_description') or '')}. Every run has the same budget of "
        f"<strong>{esc(summary.get('budget_steps'))}</strong> optimizer steps and seed "
        f"{esc(summary.get('seed'))}." + (" (Quick mode: shortened runs.)" if summary.get("quick")
                                          else "") + "</p>"
        + _story(summary), ids.new("why"), source)]
    sections.append(Section("1. Find it: the range test", "<p>The range test trains for a few "
                            "steps while raising the rate exponentially, records the loss at "
                            "each rate and picks a rate where the loss falls fastest before it "
                            "blows up.</p>" + finder_body(summary["finder"], ids),
                            ids.new("find")))
    sections.append(Section("2. Why it matters: three rates, same budget",
                            comparison_body(summary["comparison"], ids), ids.new("compare")))
    sections.append(Section("3. Schedule it: previews", schedules_body(summary["schedules"], ids),
                            ids.new("schedules")))
    recipe = summary.get("recipe")
    body = []
    if recipe:
        body.append("<p><code>lrkit.recommend</code> turns the range test and the training "
                    "budget (plus short confirmation runs where the budget leaves room) into a "
                    "complete recipe: optimizer, peak rate, warmup and schedule, ready to "
                    "paste.</p>")
        body.append(recipe_body(recipe, ids, plot=False))
    else:
        reason = summary.get("recipe_unavailable") or "unavailable"
        body.append(f"<p class='note'>No recipe: {esc(reason)}</p>")
    if summary.get("recipe_vs_default"):
        body.append("<h3>The recipe against the untuned default</h3>")
        body.append(versus_body(summary["recipe_vs_default"], ids))
    sections.append(Section("4. Use it: the recommended recipe", "".join(body),
                            ids.new("recipe")))
    return sections


def _story(summary: dict) -> str:
    lines = summary.get("story") or []
    return bullets(lines, "story") if lines else ""


def sections_for(kind: str, data: dict, ids: Ids, source: str | None) -> list[Section]:
    if kind == DEMO:
        return demo_sections(data, ids, source)
    if kind == RECIPE and "peak_lr" not in data:
        data = data["recipe"]
    title, builder = {
        FINDER: ("Range test", finder_body),
        SWEEP: ("Sweep", sweep_body),
        DIAGNOSIS: ("Diagnosis", diagnosis_body),
        DIAGNOSE_EXAMPLE: ("Diagnosis of three rates", diagnose_example_body),
        RECIPE: ("Recipe", recipe_body),
        SCHEDULE: ("Schedule", schedule_body),
    }[kind]
    return [Section(title, builder(data, ids), ids.new(kind.split(".")[-1]), source)]


# ------------------------------------------------------------------------------------------------
# the page
# ------------------------------------------------------------------------------------------------

CSS = """
:root { --fg: #1d2329; --muted: #65707b; --line: #dfe3e8; --bg: #ffffff; --soft: #f5f7f9;
        --good: #1f7a3a; --bad: #b3261e; --warn: #9a6400; --accent: #2557a7; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--fg);
       font: 15px/1.55 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
main { max-width: 1000px; margin: 0 auto; padding: 24px 20px 60px; }
header h1 { margin: 0 0 4px; font-size: 26px; }
header p { margin: 0; color: var(--muted); }
nav { margin: 14px 0 8px; padding: 8px 12px; background: var(--soft); border-radius: 6px; }
nav { display: flex; flex-wrap: wrap; gap: 4px 16px; }
nav a { color: var(--accent); text-decoration: none; white-space: nowrap; }
section { border-top: 1px solid var(--line); margin-top: 26px; padding-top: 6px; }
h2 { font-size: 21px; margin: 14px 0 8px; }
h3 { font-size: 16px; margin: 18px 0 6px; }
figure { margin: 10px 0; }
img.plot { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 4px; }
table { border-collapse: collapse; margin: 10px 0; font-size: 14px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 10px; text-align: left;
         vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
table.fields thead { display: none; }
code, pre { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace;
            font-size: 13px; }
code { background: var(--soft); padding: 1px 4px; border-radius: 3px; }
pre { background: var(--soft); padding: 10px 12px; border-radius: 6px; overflow-x: auto; }
.headline { font-size: 17px; }
.rate { color: var(--accent); }
.muted, .source { color: var(--muted); }
.source { font-size: 13px; margin: 0; }
.note { background: #fff8e6; border-left: 3px solid var(--warn); padding: 6px 10px; }
.warn-box { background: #fff8e6; padding: 2px 10px; border-radius: 4px; }
.badge { display: inline-block; padding: 0 8px; border-radius: 10px; font-size: 13px;
         font-weight: 600; color: #fff; background: var(--muted); }
.badge.good { background: var(--good); } .badge.bad { background: var(--bad); }
.badge.warn { background: var(--warn); }
dt { margin-top: 6px; } dd { margin: 2px 0 6px 20px; color: var(--muted); }
footer { margin-top: 40px; color: var(--muted); font-size: 13px; }
"""


def _sections_of(source: str | None, data: Any, ids: Ids) -> list[Section]:
    """The sections of one result; a result whose fields do not have the types its writer gives
    them (edited by hand, cut short, from another tool) is refused naming its source, never
    with a traceback from deep inside the page."""
    where = repr(str(source)) if source else "a result"
    try:
        kind = detect_kind(data)
    except LrkitError as exc:
        raise LrkitError(f"{where}: {exc}") from None
    try:
        return sections_for(kind, data, ids, source)
    except LrkitError as exc:
        raise LrkitError(f"{where} ({kind}): {exc}") from exc
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise LrkitError(f"{where} says it is {kind!r} but a field has the wrong shape or type "
                         f"({type(exc).__name__}: {exc}); it is damaged or not written by lrkit: "
                         "save it again (e.g. with --json FILE)") from exc


def render_page(results: Sequence[tuple[str | None, dict]], *, title: str | None = None,
                subtitle: str | None = None) -> str:
    """The HTML page for ``results``, a list of ``(source, data)`` (source: a file name shown
    with the section, or None)."""
    from lrkit import __version__

    ids = Ids()
    sections: list[Section] = []
    for source, data in results:
        sections.extend(_sections_of(source, data, ids))
    if title is None:
        kinds = [detect_kind(d) for _, d in results]
        title = ("lrkit demo" if kinds == [DEMO] else "lrkit report")
    nav = "".join(f'<a href="#{esc(s.anchor)}">{esc(s.title)}</a>' for s in sections)
    body = "".join(
        f'<section id="{esc(s.anchor)}"><h2>{esc(s.title)}</h2>{source_line(s.source)}{s.body}'
        "</section>" for s in sections)
    sub = f"<p>{esc(subtitle)}</p>" if subtitle else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{esc(title)}</title><link rel=\"icon\" href=\"data:,\">"
        f"<style>{CSS}</style></head><body><main>"
        f"<header><h1>{esc(title)}</h1>{sub}</header><nav>{nav}</nav>{body}"
        f"<footer>Made by lrkit {esc(__version__)}. This page is self-contained: plots are "
        "embedded, nothing is loaded from the network.</footer>"
        "</main></body></html>\n")


def write_page(html_text: str, out_dir: str | Path) -> Path:
    """Write ``out_dir/index.html`` (the directory is created when missing; an index.html there
    is replaced); an ``out_dir`` that is an existing file is refused."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise LrkitError(f"{str(out)!r} is an existing file, not a directory; give a directory "
                         "for index.html (created when missing)")
    out.mkdir(parents=True, exist_ok=True)
    path = out / "index.html"
    write_atomically(path, html_text)
    return path


def report(paths: Sequence[str | Path], out_dir: str | Path = "lrkit-report", *,
           title: str | None = None) -> Path:
    """Read saved results (finder, sweep, diagnose, schedule, recipe or demo JSON) and write
    ``out_dir/index.html``; returns its path."""
    if isinstance(paths, (str, os.PathLike)):  # one file, not one per character
        paths = [paths]
    if not paths:
        raise LrkitError("give at least one result JSON file")
    results = []
    for p in paths:
        _kind, data = load_result(p)
        results.append((str(p), data))
    names = ", ".join(Path(p).name for p in paths)
    return write_page(render_page(results, title=title, subtitle=f"from {names}"), out_dir)
