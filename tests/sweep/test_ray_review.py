"""The Ray Tune engine as a user meets it: recipe files and their neighbours, the working
directory, addresses that lead nowhere, failing recipes, Ray sessions of the caller.

Runs on a real local Ray with 2 CPUs (one per test module, as tests/sweep/test_ray_engine.py);
each sweep is two or three rates of the built-in ``logreg`` for 20 steps.
"""
import os
import textwrap

import pytest
import ray

import lrkit

QUICK = dict(lrs="0.01,0.1", budget=20, progress=False, workers=2)

RECIPE = textwrap.dedent('''
    import lrkit.examples
    from neighbour import EXAMPLE   # a module beside this file

    def make(seed=0):
        with open("data/scale.txt") as f:   # relative to the directory the sweep ran from
            assert f.read().strip() == "1"
        return lrkit.examples.build(EXAMPLE, seed=seed)
''')


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A project directory holding train.py, its neighbour module and data/, made the cwd."""
    (tmp_path / "train.py").write_text(RECIPE)
    (tmp_path / "neighbour.py").write_text("EXAMPLE = 'logreg'\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "scale.txt").write_text("1\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def assert_all_finished(result):
    assert [r.error for r in result.records if r.error] == []
    assert sorted(r.status for r in result.records) == ["finished", "finished"]


def test_a_relative_recipe_file_its_neighbour_and_its_data_are_found_by_the_trials(
        local_ray, project):
    # Tune runs each trial in a directory of its own: 'train.py' was looked up there (every
    # trial failed with "recipe file 'train.py' does not exist"), and so was the recipe's
    # data/scale.txt, which the Optuna engine's trials find in the directory of the sweep
    result = lrkit.sweep("train.py:make", engine="ray", storage="runs", **QUICK)
    assert_all_finished(result)
    assert os.path.isdir(project / "runs" / result.study_name)
