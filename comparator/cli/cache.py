"""`infercmp cache info` and `infercmp cache clear`: the caches under infercmp's cache root (comparator/caches.py).

Registered on the app of comparator.cli.app as the command group `cache`.
"""
from __future__ import annotations

import typer

from .app import Typer, app

cache_app = Typer(no_args_is_help=True, help="Show or empty infercmp's caches (TVM compiles, real models).")
app.add_typer(cache_app, name="cache")


@cache_app.command("info")
def info(
    json_out: bool = typer.Option(False, "--json", help="print the figures as JSON instead of a table"),
) -> None:
    """Where each cache lives, how big it is and how many entries it holds."""
    import json
    import os

    from .. import caches
    from ..backends.tvm.cache import size_cap

    rows = [caches.usage(name) for name in caches.CACHES]
    cap = size_cap()
    if json_out:
        typer.echo(json.dumps({"root": str(caches.root()), "disabled": caches.disabled(), "caches": [
            {"name": u.name, "path": str(u.path), "exists": u.exists, "bytes": u.size, "entries": u.entries,
             "description": caches.CACHES[u.name].description,
             **({"cap_bytes": cap} if caches.CACHES[u.name].cap_env else {})} for u in rows]}, indent=1))
        return
    source = f"${caches.ROOT_ENV}" if os.environ.get(caches.ROOT_ENV, "").strip() else \
        "the platform's user cache directory"
    typer.echo(f"cache root: {caches.root()}  ({source})")
    if caches.disabled():
        typer.echo("INFERCMP_NO_CACHE is set: the TVM compile cache and the model digests are neither read nor written")
    for u in rows:
        spec = caches.CACHES[u.name]
        typer.echo(f"{u.name:<12} {caches.format_size(u.size):>10} {u.entries:>7,} entries  {u.path}"
                   + ("" if u.exists else " (not created yet)"))
        notes = [spec.description]
        if spec.cap_env:
            default = ", default" if not os.environ.get(spec.cap_env, "").strip() else ""
            notes.append(f"no size limit (${spec.cap_env}=0)" if not cap else
                         f"capped at {caches.format_size(cap)} (${spec.cap_env}{default}); least recently used go "
                         "first")
        if spec.env:
            notes.append(f"${spec.env} overrides its folder")
        for note in notes:
            typer.echo(f"{'':<12} {note}")


@cache_app.command("clear")
def clear(
    names: list[str] = typer.Argument(None, help="caches to empty (default: every one): "
                                                 "tvm, real-models, bench", show_default=False),
) -> None:
    """Empty one cache, several, or every one (their folders are kept)."""
    from .. import caches

    chosen = list(names) if names else list(caches.CACHES)
    for name in chosen:  # every name checked before anything is removed
        caches.folder(name)
    for name in chosen:
        before = caches.clear(name)
        if before.exists:
            typer.echo(f"cleared {name}: {before.entries} entries, {caches.format_size(before.size)} "
                       f"({before.path})")
        else:
            typer.echo(f"{name}: empty ({before.path} does not exist)")
