"""The demo pipeline when the recipe part cannot run: the other parts still make a page."""
from lrkit.show import demo


def test_a_failing_recommend_leaves_a_page_with_the_reason(monkeypatch, tmp_path):
    def broken(*args, **kwargs):
        raise RuntimeError("boom <b>")

    monkeypatch.setattr(demo, "_recommend", lambda: (broken, None))
    lines = []
    summary = demo.run_demo(seed=1, quick=True, progress=False, log=lines.append)
    assert summary["recipe"] is None and summary["recipe_vs_default"] is None
    assert summary["recipe_unavailable"] == "lrkit.recommend failed: RuntimeError: boom <b>"
    assert any(line.startswith("warning: lrkit.recommend failed") for line in lines)
    assert len(summary["schedules"]["previews"]) == 2
    paths = demo.write_demo(summary, tmp_path / "out")
    page = paths["page"].read_text()
    assert "No recipe: lrkit.recommend failed: RuntimeError: boom &lt;b&gt;" in page
    assert paths["overview"].stat().st_size > 10_000
