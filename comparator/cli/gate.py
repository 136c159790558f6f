"""`infercmp capture | inspect | diff | check`: bundles and release gates on the command line.

Registered on the app of comparator.cli.app. Exit codes: 0 pass, 1 regression (or deviation beyond tolerance),
2 usage, configuration or bad-file error, 3 a variant could not run.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from .app import app, plain, quiet_blas
from .progress import stderr_phases
from .outputs import TABLE_HELP
from ..errors import UsageError


def _console(to_stderr: bool = False) -> Any:
    from .outputs import console

    return console(to_stderr)


def _exit(code: int) -> None:
    # SystemExit, not typer.Exit: main() runs the app with standalone_mode=False, where click turns typer.Exit
    # into a return value that main() does not pass on.
    sys.exit(code)


def _size(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


@app.command()
def capture(
    model: Path = typer.Argument(..., help="the .onnx model"),
    backend: list[str] = typer.Option(..., "--backends", "--backend", "-b",
                                      help="variant(s) to run: ort, ort:opt=disable (comma separated for several)"),
    out: Path = typer.Option(..., "--out", "-o", help="the bundle to write (.icmp)"),
    tap: str = typer.Option("outputs", help="outputs (default: a baseline keeps what a gate checks, and a bundle "
                            "of every tensor is as big as all activations) | all | comma-separated names or globs"),
    inputs: Path | None = typer.Option(None, help="feeds from .npz (keys = input names) or .npy"),
    labels: str | None = typer.Option(None, help="class labels in the --inputs .npz (default: `label` "
                                                    "when present); gates score accuracy with them"),
    shape: list[str] = typer.Option([], help="bind dynamic dims: input=1x3x224x224 or dimname=4 (repeatable)"),
    seed: int = typer.Option(0, help="seed of the random feeds"),
    samples: int = typer.Option(1, help="number of random samples (each a separate run)"),
    timeout: float = typer.Option(600.0, help="seconds before a variant's worker is killed"),
    jobs: int = typer.Option(0, help="variants run at the same time (0: one per core)"),
    force: bool = typer.Option(False, "--force", help="replace an existing bundle"),
    compression: str = typer.Option("auto", help="auto (deflate only members that are at least half zero "
                                                 "bytes) | stored | deflate"),
    yes: bool = typer.Option(False, "--yes", help="run a sweep of more than 256 variants"),
) -> None:
    """Run MODEL and save inputs, outputs, tapped tensors and the machine's fingerprint in one .icmp file.

    Diff it or gate against it later, here or on another machine."""
    quiet_blas()
    from .. import api
    from ..gate import bundle
    from ..gate.capture import capture as capture_bundle
    from ..graph.inputs import parse_shapes
    from ..variant import parse_list

    from . import outputs

    outputs.no_stdout("--out", out)
    outputs.guard({"--out": out}, {"--inputs": inputs}, {"the model": model})
    if out.exists() and not force:
        raise UsageError(f"{out} already exists; refusing to overwrite it", "pass --force to replace it")
    variants = parse_list(backend)
    api.check_sweep(variants, yes, jobs)
    timeout_s = api.check_numbers(timeout=timeout, seed=seed, samples=samples, jobs=jobs)
    label_values, label_key = bundle.read_labels(inputs, labels)
    if labels is not None and label_values is None:
        raise UsageError("--labels needs --inputs FILE.npz holding that array")
    with stderr_phases() as events:
        meta = capture_bundle(model, variants, out, inputs, tap_spec=tap, shapes=parse_shapes(shape), seed=seed,
                              samples=samples, timeout=timeout_s, jobs=jobs, labels=label_values,
                              labels_key=label_key, force=force, compression=compression, events=events)
    count = sum(len(v) for r in meta["runs"] for v in r["tensors"].values())
    typer.echo(f"captured {', '.join(str(v) for v in variants)} on {meta['environment']['host']}: "
               f"{count} tensor{'s' if count != 1 else ''}, {_size(out.stat().st_size)} -> {out}")


@app.command()
def inspect(
    path: Path = typer.Argument(..., help="an .icmp bundle, or an .onnx model"),
    tensors: bool = typer.Option(False, "--tensors", help="also list every stored (or, for a model, every) tensor"),
    json_out: bool = typer.Option(False, "--json", help="print the summary as JSON"),
) -> None:
    """Summarise a bundle or a model.

    A bundle: model, variants, machine, inputs, tensors. A model: inputs, outputs, opsets, node counts by op type,
    weights, size."""
    from ..gate.bundle import Bundle

    if path.suffix.lower() == ".onnx":
        _inspect_model(path, tensors, json_out)
        return
    b = Bundle.open(path)
    if json_out:
        from ..fileio import dumps

        typer.echo(dumps({k: v for k, v in b.meta.items() if k != "catalogue" or tensors}))
        return
    m, env, inputs = b.meta["model"], b.meta["environment"], b.meta["inputs"]
    arrays = [size for member, size in b.sizes.items() if member.endswith(".npy")]
    raw, stored = sum(s[1] for s in arrays), sum(s[0] for s in arrays)
    gpus = ", ".join(f"{g['name']} (driver {g['driver']})" for g in env.get("gpus", [])) or "none"
    lines = [
        f"{path}: infercmp bundle, schema {b.meta['schema_version']}, created {b.created}",
        f"model     {m.get('path')} sha256 {b.model_sha256}",
        f"          opsets {m.get('opsets')}, {m.get('nodes')} nodes, producer {m.get('producer') or '-'}, "
        f"outputs {', '.join(m.get('outputs', []))}",
        f"machine   {env.get('host')}: {env.get('cpu')}, {env.get('cores')} cores, {env.get('os')}",
        f"          ISA {' '.join(env.get('cpu_flags', [])) or '-'}",
        f"          GPU {gpus}",
        "software  " + ", ".join(f"{k} {v}" for k, v in {"python": env.get("python"),
                                                         **env.get("packages", {})}.items()),
    ]
    for r in b.meta["runs"]:
        prov = r.get("provenance", {})
        extra = "; ".join(f"{k}: {v}" for k, v in prov.items() if k not in ("environment", "options"))
        lines.append(f"variant   {r['variant']}  ({extra})")
    shapes = ", ".join(f"{k} {e['dtype']} {e['shape']}" for k, e in b.meta["feeds"].items())
    lines.append(f"inputs    {shapes} from {inputs.get('source')}, sha256 {b.feeds_sha256[:16]}")
    if b.meta.get("labels"):
        lines.append(f"labels    {b.meta['labels'].get('key')} {b.meta['labels']['shape']}")
    count = sum(len(v) for r in b.meta["runs"] for v in r["tensors"].values())
    lines.append(f"tensors   {count} in {len(b.meta['runs'])} run(s) (tap: {b.meta['tap'].get('spec')}), "
                 f"{len(b.sizes) - 1} members, {_size(raw)} of arrays, {_size(stored)} in the zip, "
                 f"file {_size(Path(path).stat().st_size)}")
    for line in lines:
        typer.echo(line)
    if tensors:
        for r in b.meta["runs"]:
            for kind, entries in r["tensors"].items():
                for name, e in entries.items():
                    typer.echo(f"  {r['variant']:<20} {kind:<9} {name:<40} {e['dtype']:<8} {e['shape']} "
                               f"{e['file']}")


def _inspect_model(path: Path, tensors: bool, json_out: bool) -> None:
    """What a model holds, read without its weights."""
    from collections import Counter

    from ..graph import model as model_mod

    m = model_mod.load(path)
    graph = m.proto.graph
    ops = Counter(n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}" for n in graph.node)
    weights = sum(_tensor_bytes(t) for t in graph.initializer)
    # exporters such as paddle2onnx keep the weights in Constant nodes, not in initializers
    constants = [a.t for n in graph.node if n.op_type == "Constant" and n.domain in ("", "ai.onnx")
                 for a in n.attribute if a.name == "value"]
    constant_bytes = sum(_tensor_bytes(t) for t in constants)
    data = [f for f in {e.value for t in graph.initializer for e in t.external_data if e.key == "location"}]
    size = sum((m.path.resolve().parent / f).stat().st_size for f in data if f != m.path.resolve().name)
    info = {**m.summary(), "op_types": dict(ops.most_common()), "initializers": len(graph.initializer),
            "weights_bytes": weights, "constants": len(constants), "constant_bytes": constant_bytes,
            "file_bytes": m.path.stat().st_size, "external_data_bytes": size,
            "tensors": len(m.tensors)}
    if tensors:
        info["catalogue"] = [{"name": t.name, "op_type": t.op_type, "dtype": t.dtype, "shape": t.shape}
                             for t in m.tensors]
    if json_out:
        from ..fileio import dumps

        typer.echo(dumps(info))
        return
    lines = [f"{path}: ONNX model, IR {info['ir_version']}, opsets "
             + ", ".join(f"{k} {v}" for k, v in info["opsets"].items()) + f", producer {info['producer'] or '-'}",
             f"sha256    {m.sha256}",
             "inputs    " + ", ".join(f"{i['name']} {i['dtype']} {i['shape']}" for i in info["inputs"]),
             "outputs   " + ", ".join(info["outputs"]),
             f"nodes     {info['nodes']}: " + ", ".join(f"{op} {n}" for op, n in ops.most_common()),
             f"weights   {len(graph.initializer)} initializers, {_size(weights)}"
             + (f"; {len(constants)} Constant nodes, {_size(constant_bytes)}" if constants else "")
             + f"; file {_size(info['file_bytes'])}"
             + (f", external data {_size(size)}" if size else ""),
             f"tensors   {len(m.tensors)} can be tapped ({sum(1 for t in m.tensors if t.scope)} inside subgraphs)"]
    lines += [f"note      {n}" for n in m.notes]
    for line in lines:
        typer.echo(line)
    if tensors:
        for t in m.tensors:
            typer.echo(f"  {t.name:<40} {t.op_type:<20} {t.dtype or '-':<8} {t.shape}")


def _tensor_bytes(t: Any) -> int:
    import math

    import numpy as np
    import onnx

    try:
        item = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        item = 0
    return math.prod(t.dims) * item


@app.command()
def diff(
    bundles: list[Path] = typer.Argument(..., help="two or more .icmp bundles; the first is the reference"),
    atol: float = typer.Option(1e-5, help="absolute tolerance on final outputs"),
    rtol: float = typer.Option(1e-5, help="relative tolerance on final outputs"),
    max_ulp: int | None = typer.Option(None, "--max-ulp", help="also accept elements within this many ULPs"),
    allow_model_change: bool = typer.Option(False, "--allow-model-change",
                                            help="compare bundles of different models (tensors matched by name, "
                                                 "then structure)"),
    json_out: Path | None = typer.Option(None, "--json", help="write the JSON report here (- for stdout)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only the findings, not the tables"),
    table: str = typer.Option("worst", "--table", help=TABLE_HELP),
    top: int = typer.Option(15, "--top", help="rows of the table of the worst tensors"),
    html_out: Path | None = typer.Option(None, "--html", help="write a self-contained HTML report here"),
    junit_out: Path | None = typer.Option(None, "--junit", help="write a JUnit XML report here"),
) -> None:
    """Compare bundles captured on different machines or days (runs named VARIANT@FILE-STEM)."""
    quiet_blas()
    from .. import api
    from ..gate import check as gate
    from ..measure.metrics import Tolerance
    from . import outputs

    reports = {"--json": json_out, "--html": html_out, "--junit": junit_out}
    outputs.check_table(table, top)
    outputs.guard(reports, {"a bundle": bundles})
    tolerance = api.check_tolerance(Tolerance(atol, rtol, max_ulp))
    report = gate.diff(bundles, tolerance, allow_model_change)
    out = _console(outputs.takes_stdout(*reports.values()))
    for v in report.variants:
        env, prov = v.provenance.get("environment", {}), v.provenance
        gpus = ", ".join(g["name"] for g in env.get("gpus", [])) or "no GPU"
        versions = ", ".join(f"{k} {val}" for k, val in env.get("packages", {}).items() if k != "infercmp")
        plain(out, f"{v.name}: captured {prov.get('captured')} on {env.get('host')} ({env.get('cpu')}, "
                   f"{env.get('cores')} cores, {gpus}); {versions}")
    outputs.show(report, out, table, top, quiet)
    outputs.write_reports(out, report, reports)
    _exit(report.exit_code)


@app.command()
def matrix(
    bundles: list[Path] = typer.Argument(..., help="two or more .icmp bundles of one model and one set of inputs, "
                                                   "or folders of them"),
    atol: float = typer.Option(1e-5, help="absolute tolerance on final outputs (against the first run)"),
    rtol: float = typer.Option(1e-5, help="relative tolerance on final outputs (against the first run)"),
    json_out: Path | None = typer.Option(None, "--json", help="write the matrix as JSON here (- for stdout)"),
    html_out: Path | None = typer.Option(None, "--html", help="write the report with the heat map and the "
                                                              "dendrogram here"),
) -> None:
    """Compare any number of bundles from different machines: which agree, and what sets them apart.

    Classes of bit-identical final outputs with each machine's fingerprint and what sets each class apart, the
    pairwise max ULP matrix, and the first tensor where each two runs differ."""
    quiet_blas()
    from .. import api
    from ..gate.matrix import bundle_paths, matrix as build
    from ..measure.metrics import Tolerance
    from . import outputs

    files = bundle_paths(bundles)
    outputs.guard({"--json": json_out, "--html": html_out}, {"a bundle": files})
    result = build(files, api.check_tolerance(Tolerance(atol, rtol, None)))
    outputs.finish(result, json_out, result.lines, html_out, result.report)


@app.command()
def check(
    model: Path = typer.Argument(..., help="the model to release (.onnx)"),
    baseline: Path | None = typer.Option(None, "--baseline", help="bundle captured from the released model"),
    against: Path | None = typer.Option(None, "--against", help="an earlier export (.onnx) to compare with"),
    backends: list[str] = typer.Option([], "--backends", "-b", help="variants (default: the baseline's; "
                                                                    "with --against: ort)"),
    policy: Path | None = typer.Option(None, help="policy file (TOML): tolerances, label budget, "
                                                     "required variants"),
    json_out: Path | None = typer.Option(None, "--json", help="write the gate result (with its reports) here "
                                                              "(- for stdout)"),
    html_out: Path | None = typer.Option(None, "--html", help="write the verdict and its reports as one "
                                                              "self-contained HTML page here"),
    junit_out: Path | None = typer.Option(None, "--junit", help="write a JUnit XML report here: one test case "
                                                                "per gated variant"),
    update_baseline: bool = typer.Option(False, "--update-baseline",
                                         help="rewrite the baseline with this run (previous kept as .prev)"),
    inputs: Path | None = typer.Option(None, help="with --against: feeds from .npz or .npy"),
    labels: str | None = typer.Option(None, help="with --against: labels array in the --inputs .npz"),
    shape: list[str] = typer.Option([], help="with --against: bind dynamic dims (repeatable)"),
    seed: int = typer.Option(0, help="with --against: seed of the random feeds"),
    samples: int = typer.Option(1, help="with --against: number of random samples"),
    tap: str = typer.Option("all", help="with --against: tensors to compare (all | outputs | names/globs)"),
    timeout: float = typer.Option(600.0, help="seconds before a variant's worker is killed"),
    jobs: int = typer.Option(0, help="variants run at the same time (0: one per core)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="print only the gate's verdict, not the reports"),
    table: str = typer.Option("worst", "--table", help=TABLE_HELP),
    top: int = typer.Option(15, "--top", help="rows of the table of the worst tensors"),
    yes: bool = typer.Option(False, "--yes", help="run a sweep of more than 256 variants"),
) -> None:
    """Gate MODEL against a baseline bundle, or against an earlier export (--against).

    With --baseline, MODEL runs now on the baseline's variants and inputs. Exit 0 pass, 1 regression,
    2 usage or configuration error, 3 a variant could not run."""
    quiet_blas()
    from .. import api
    from ..gate import check as gate
    from ..graph.inputs import parse_shapes
    from ..variant import parse_list
    from . import outputs

    if (baseline is None) == (against is None):
        raise UsageError("give exactly one of --baseline BUNDLE and --against OLD.onnx",
                         "--baseline gates against a captured run; --against runs two exports side by side")
    # The baseline is an input here: only --update-baseline replaces it (and keeps the previous one as .prev).
    prev = baseline.with_name(baseline.name + ".prev") if baseline is not None and update_baseline else None
    reports = {"--json": json_out, "--html": html_out, "--junit": junit_out}
    outputs.check_table(table, top)
    outputs.guard({"--update-baseline's .prev": prev, **reports},
                  {"--baseline": baseline, "--policy": policy, "--inputs": inputs},
                  {"the model": model, "--against": against})
    api.check_sweep(parse_list(backends) if backends else [], yes, jobs)
    timeout_s = api.check_numbers(timeout=timeout, seed=seed, samples=samples, jobs=jobs)
    if baseline is not None:
        if inputs is not None or shape or labels is not None:
            raise UsageError("--inputs, --labels and --shape apply to --against only",
                             "the baseline bundle carries its own inputs")
        with stderr_phases() as events:
            result = gate.check(model, baseline, policy, variants=backends or None, timeout=timeout_s, jobs=jobs,
                                update_baseline=update_baseline, events=events)
    else:
        assert against is not None  # exactly one of the two, checked above
        if update_baseline:
            raise UsageError("--update-baseline applies to --baseline only")
        with stderr_phases() as events:
            result = gate.compare_models(against, model, backends or ["ort"], inputs, policy,
                                         shapes=parse_shapes(shape), seed=seed, samples=samples, labels_key=labels,
                                         tap_spec=tap, timeout=timeout_s, jobs=jobs, events=events)
    out = _console(outputs.takes_stdout(*reports.values()))
    if not quiet:
        for report in result.reports:
            outputs.show(report, out, table, top)
            plain(out, "")
    for line in result.lines():
        plain(out, line)
    outputs.write_reports(out, result, reports)
    _exit(result.exit_code)
