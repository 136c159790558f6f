"""`infercmp fleet MODEL -b VARIANT@LABEL=VALUE,... --cluster ADDRESS -o FOLDER`: one bundle per variant and node of
a Ray cluster, then their matrix. Exit codes: 0 every bundle within tolerance of the first, 1 beyond it, 2 usage
or bad input, 3 a task brought no bundle back (unplaced, failed, node died, timed out)."""
from __future__ import annotations

from pathlib import Path

import typer

from .app import app, plain, quiet_blas


@app.command()
def fleet(
    model: Path = typer.Argument(..., help="the .onnx model"),
    backends: list[str] = typer.Option(..., "--backends", "-b", help="variants and where they run: "
                                       "VARIANT@LABEL=VALUE (one matching node), VARIANT@all-nodes[@LABEL=VALUE] "
                                       "(every matching node), comma separated"),
    cluster: str = typer.Option(..., "--cluster", help="the Ray cluster's address, e.g. 127.0.0.1:6379"),
    out: Path = typer.Option(..., "--out", "-o", help="a new or empty folder for the bundles that come back"),
    inputs: Path | None = typer.Option(None, help="feeds from .npz (keys = input names) or .npy"),
    shape: list[str] = typer.Option([], help="bind dynamic dims: input=1x3x224x224 or dimname=4 (repeatable)"),
    seed: int = typer.Option(0, help="seed of the random feeds"),
    tap: str = typer.Option("outputs", help="outputs | all | names or globs (all: the matrix names the first "
                                            "tensor where two machines differ)"),
    timeout: float = typer.Option(600.0, help="seconds before a task's worker is killed"),
    json_out: Path | None = typer.Option(None, "--json", help="write the tasks and the matrix as JSON here"),
    html_out: Path | None = typer.Option(None, "--html", help="write the matrix's report (heat map, dendrogram)"),
) -> None:
    """Run variants as Ray tasks on the nodes their label selectors pick, then the matrix of their bundles.

    Each task captures a bundle on its node (the model and feeds travel through Ray); the matrix says which
    machines agree."""
    quiet_blas()
    from .. import api
    from ..fleet.cluster import fleet as run_fleet
    from ..graph.inputs import parse_shapes
    from . import outputs

    outputs.guard({"--json": json_out, "--html": html_out}, {"--inputs": inputs}, {"the model": model})
    timeout_s = api.check_numbers(timeout=timeout, seed=seed)
    err = outputs.console(to_stderr=True)
    result = run_fleet(model, backends, cluster, out, inputs, shapes=parse_shapes(shape), seed=seed, tap_spec=tap,
                       timeout=timeout_s,
                       on_task=lambda t: plain(err, f"infercmp: {t.placement.variant}: {t.status}"
                                               + (f" on node {t.node[:12]}" if t.node else "")))
    outputs.finish(result, json_out, result.lines, html_out, None if result.matrix is None else result.matrix.report)
