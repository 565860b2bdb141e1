"""The notebooks run top to bottom, as ``jupyter execute`` runs them, and each draws at
least one figure; their key figures land in ``docs/figures`` for the docs to embed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FIGURES = {
    "01_timeline.ipynb": "01-timeline.png",
    "02_pacing_sweep.ipynb": "02-pauses.png",
    "03_sentences.ipynb": "03-sentence-latency.png",
    "04_generate.ipynb": "04-generate.png",
    "05_continuation.ipynb": "05-seam.png",
}
pytestmark = pytest.mark.timeout(600)


def test_every_notebook_is_listed() -> None:
    assert [n.name for n in NOTEBOOKS] == list(FIGURES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[n.name for n in NOTEBOOKS])
def test_notebook_runs_and_draws_its_figures(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if path.name == "04_generate.ipynb":
        pytest.importorskip("torch")
        pytest.importorskip("transformers")
    figures = ROOT / "docs" / "figures"
    monkeypatch.setenv("PACER_FIGURES", str(figures))  # the kernel inherits it
    monkeypatch.delenv("MPLBACKEND", raising=False)
    notebook = nbformat.read(path, as_version=4)
    key = figures / FIGURES[path.name]
    key.unlink(missing_ok=True)
    nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
    ).execute()  # raises at the first cell that fails
    images = [
        output
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    ]
    assert images, f"{path.name} drew no figure inline"
    warned = [
        (n, output["text"])
        for n, cell in enumerate(notebook.cells)
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if output.get("output_type") == "stream" and output.get("name") == "stderr"
    ]
    assert not warned, f"{path.name} wrote to stderr (a warning?): {warned}"
    assert key.is_file() and key.stat().st_size > 1000, f"{path.name} did not keep {key.name} for the docs"
    assert os.environ["PACER_FIGURES"] == str(figures)
