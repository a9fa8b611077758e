"""Review of the public result objects: JSON export with numpy and torch values inside, strict
JSON of a diverged training run, pickling of a long schedule preview, and a documented import."""
from __future__ import annotations

import json
import math
import pickle

import numpy as np
import pytest
import torch

from lrkit.diagnose import Diagnosis
from lrkit.find.result import FinderResult
from lrkit.schedules import preview
from lrkit.training import TrainingRun


def _strict(text: str):
    def refuse(token):
        raise AssertionError(f"not strict JSON: {token}")

    return json.loads(text, parse_constant=refuse)


def test_finder_result_json_takes_numpy_and_tensor_values():
    result = FinderResult.from_dict({"lrs": [1e-3, 1e-2], "losses": [1.0, 0.5]})
    result.settings.update(flag=np.bool_(True), curve=np.array([1.0, np.nan]),
                           tensor=torch.tensor([1.0, 2.0]), one=torch.tensor(3.0))
    result.settings[np.int64(2)] = "numpy key"
    result.losses = np.array(result.losses)
    result.suggested_lr = torch.tensor(0.01, dtype=torch.float64)
    data = _strict(result.to_json())
    assert data["settings"]["flag"] is True
    assert data["settings"]["curve"] == [1.0, None]
    assert data["settings"]["tensor"] == [1.0, 2.0] and data["settings"]["one"] == 3.0
    assert data["settings"]["2"] == "numpy key"
    assert data["losses"] == [1.0, 0.5]
    assert data["suggested_lr"] == pytest.approx(0.01)
    back = FinderResult.from_dict(data)
    assert back.suggested_lr == pytest.approx(0.01) and back.losses == [1.0, 0.5]


def test_diagnosis_to_dict_is_json_ready_with_arrays_and_tensors():
    diagnosis = Diagnosis("healthy", 0.9, {"curve": np.array([1.0, np.inf]),
                                           "tensor": torch.tensor(2.0), "flag": np.bool_(False)},
                          1.0, "fine")
    data = _strict(json.dumps(diagnosis.to_dict(), allow_nan=False))
    assert data["evidence"] == {"curve": [1.0, "inf"], "tensor": 2.0, "flag": False}


def test_training_run_to_dict_is_strict_json_for_a_diverged_run():
    run = TrainingRun(losses=[2.3, math.nan], lrs=[5.0, 5.0], val_loss=math.inf, metric=None,
                      diverged=True, val_curve=[(1, math.inf)])
    data = _strict(json.dumps(run.to_dict(), allow_nan=False))
    assert data == {"losses": [2.3, None], "lrs": [5.0, 5.0], "val_loss": None, "metric": None,
                    "diverged": True, "val_curve": [[1, None]]}
    assert run.val_loss == math.inf  # the object itself is unchanged


@pytest.mark.parametrize("kwargs", [
    {"schedule": "warmup(1000) >> cosine(200000)", "steps": 201000},
    {"schedule": "plateau(cosine(200000), patience=1)", "steps": 200000,
     "metrics": {10: 1.0, 20: 2.0, 30: 3.0}},
])
def test_a_long_preview_pickles(kwargs):
    p = preview(kwargs.pop("schedule"), kwargs.pop("steps"), **kwargs)
    assert p.sampled
    q = pickle.loads(pickle.dumps(p))
    assert q.steps == p.steps and q.peak == p.peak
    assert q.rates[150000] == p.rates[150000] and q.to_dict() == p.to_dict()


def test_batch_factor_is_importable_where_the_docs_name_it():
    # docs/recommend.md: "using `lrkit.schedules.batch_factor`/`rescale`"
    from lrkit.schedules import __all__ as names, batch_factor

    assert "batch_factor" in names
    assert batch_factor(32, 128) == 4.0 and batch_factor(32, 128, "sqrt") == 2.0
