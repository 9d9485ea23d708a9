"""Source notebooks are inputs, not records: they are committed without outputs or execution
counts (the executed copy of a run lives under runs/), and each keeps exactly one cell tagged
`parameters`, where papermill injects a run's parameters after it."""
import json
from pathlib import Path

import pytest

from zfutils import paths

NOTEBOOKS = sorted(paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
CLEAR = ("clear them with `.venv/bin/jupyter nbconvert --clear-output --inplace {nb}` "
         "(or `nbstripout {nb}`; both keep cell tags) and commit the cleared file")


def _cells(notebook: Path) -> list[dict]:
    return json.loads(notebook.read_text(encoding="utf-8"))["cells"]


def _name(notebook: Path) -> Path:
    """The notebook's path as a command in the repository root takes it."""
    return notebook.relative_to(paths.PROJECT_ROOT) if notebook.is_relative_to(paths.PROJECT_ROOT) else notebook


def test_there_are_stage_notebooks():
    assert NOTEBOOKS, f"no stage notebooks (NN_name.ipynb) found in {paths.NOTEBOOKS_DIR}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.name for nb in NOTEBOOKS])
def test_notebook_is_stored_without_outputs(notebook):
    cells = _cells(notebook)
    with_outputs = [i for i, cell in enumerate(cells) if cell.get("outputs")]
    counted = [i for i, cell in enumerate(cells) if cell.get("execution_count") is not None]
    nb = _name(notebook)
    assert not with_outputs, f"{nb}: cells {with_outputs} have outputs; {CLEAR.format(nb=nb)}"
    assert not counted, f"{nb}: cells {counted} have execution counts; {CLEAR.format(nb=nb)}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.name for nb in NOTEBOOKS])
def test_notebook_has_one_parameters_cell(notebook):
    cells = _cells(notebook)
    tagged = [i for i, cell in enumerate(cells) if "parameters" in cell.get("metadata", {}).get("tags", [])]
    nb = _name(notebook)
    assert len(tagged) == 1, (
        f"{nb} has {len(tagged)} cells tagged `parameters` ({tagged}); papermill needs exactly one: tag the "
        f"cell of plain scalars (backbone, preset, seed, ...) with `parameters` (JupyterLab: Property "
        f"Inspector > Cell Tags) and remove the tag from any other cell")
    assert cells[tagged[0]]["cell_type"] == "code", (
        f"{nb} cell {tagged[0]} is tagged `parameters` but is a {cells[tagged[0]]['cell_type']} cell: "
        f"move the tag to the code cell of plain scalars")
