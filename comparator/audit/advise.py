"""Advice: which of the settings a sweep ran make the targets agree, how far each is from the float64 oracle, and
what it costs in latency.

The sweep runs once, with the self-checking float64 oracle as the reference and every variant's untapped run
timed. A target is a backend (or a variant whose options are fixed); its candidate settings are the sweep's
variants of it. A choice is one candidate per target: it agrees when all of them give bit-identical final
outputs (one class), or, with a tolerance, when every two are within it. Choices are ranked: agreeing ones
first (bit-identical before within tolerance), then by their accuracy against the oracle (the worst final output's
SNR, in steps of 20 dB: a tenfold relative error), then by their latency against each target's default
setting. Only settings that ran are ever recommended. The knob that matters most is the one whose change alone
most often splits the classes.
"""
from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import api
from ..errors import UsageError
from ..result import Report
from ..variant import Variant

MAX_CHOICES = 4096


@dataclass
class Advice:
    """The result of `advise`; `to_dict()` is what `--json` writes, `lines()` what the terminal shows."""

    model: dict[str, Any]
    targets: list[str]
    tolerance: dict[str, Any]
    settings: list[dict[str, Any]]  # per sweep variant: class, oracle deviation, latency
    choices: list[dict[str, Any]]  # ranked
    knobs: list[dict[str, Any]]  # per backend knob: how often changing it alone splits the classes
    failed: dict[str, str] = field(default_factory=dict)
    oracle_doubts: int = 0

    @property
    def exit_code(self) -> int:
        """0 when some choice agrees, 1 when none does, 3 when a variant could not run."""
        if self.failed:
            return 3
        return 0 if any(c["agrees"] for c in self.choices) else 1

    def to_dict(self) -> dict[str, Any]:
        return {"format": "infercmp-advice", "schema_version": 1, "model": self.model, "targets": self.targets,
                "tolerance": self.tolerance, "settings": self.settings, "choices": self.choices,
                "knobs": self.knobs, "failed": self.failed, "oracle_doubts": self.oracle_doubts,
                "exit_code": self.exit_code}

    def lines(self, top: int = 10) -> list[str]:
        name = Path(str(self.model["path"])).name
        tol = _tol_text(self.tolerance)
        out = [f"advice for {name}: {len(self.settings)} settings ran against the float64 oracle; targets "
               f"{', '.join(self.targets)}; agreement: {tol}"]
        for variant, why in self.failed.items():
            out.append(f"  {variant} could not run: {why}")
        if self.oracle_doubts:
            out.append(f"  note: the two float64 executions disagree on {self.oracle_doubts} final output(s): "
                       "deviations from the oracle are uncertain there")
        else:
            out.append("  the two float64 executions (ref and torch) agree on the final outputs")
        head = f"{'rank':>4}  {'agrees':<16} {'SNR vs oracle':>13} {'max abs':>9} {'latency':>9}  setting"
        out += ["", head]
        for rank, c in enumerate(self.choices[:top], 1):
            lat = "-" if c["latency_ratio"] is None else f"{c['latency_ratio']:.2f}x"
            out.append(f"{rank:>4}  {c['agreement']:<16} {_db(c['oracle_snr_db']):>13} {_num(c['oracle_max_abs']):>9} "
                       f"{lat:>9}  "
                       + " + ".join(c["variants"]))
        if len(self.choices) > top:
            out.append(f"      ... {len(self.choices) - top} more (in the JSON)")
        best = next((c for c in self.choices if c["agrees"]), None)
        out.append("")
        if best is None:
            out.append(f"no setting that ran makes {', '.join(self.targets)} agree ({tol}); sweep more knobs or "
                       "allow a tolerance")
        else:
            lat = "" if best["latency_ratio"] is None else f", {best['latency_ratio']:.2f}x the default's latency"
            out.append(f"recommended: {' + '.join(best['variants'])} ({best['agreement']}, SNR "
                       f"{_db(best['oracle_snr_db'])} dB and max abs {_num(best['oracle_max_abs'])} against the "
                       f"oracle{lat})")
        splitting = [k for k in self.knobs if k["splits"]]
        if splitting:
            k = splitting[0]
            out.append(f"the knob that matters most: {k['backend']} {k['knob']} (changing it alone splits the "
                       f"classes in {k['splits']} of {k['pairs']} pairs)")
        elif self.knobs:
            out.append("no knob's change alone splits the classes")
        return out


def _num(x: Any) -> str:
    if x is None:
        return "-"
    return "0" if x == 0 else f"{x:.3g}"


def _db(x: Any) -> str:
    return "-" if x is None else "inf" if x == math.inf else f"{x:.1f}"


def _tol_text(tol: dict[str, Any]) -> str:
    parts = [f"atol {tol['atol']:g}" if tol.get("atol") is not None else "",
             f"max_ulp {tol['max_ulp']}" if tol.get("max_ulp") is not None else ""]
    parts = [p for p in parts if p]
    return "bit-identical final outputs" + (f", or within {' and '.join(parts)}" if parts else "")


def _targets(sweep: Sequence[Variant], targets: Sequence[str] | None) -> dict[str, list[Variant]]:
    """Target -> its candidate settings in the sweep."""
    if not targets:
        names = list(dict.fromkeys(v.backend for v in sweep))
        return {n: [v for v in sweep if v.backend == n] for n in names}
    out: dict[str, list[Variant]] = {}
    for spec in targets:
        t = Variant.parse(spec)
        fixed = dict(t.options)
        found = [v for v in sweep if v.backend == t.backend and all(dict(v.options).get(k) == val
                                                                   for k, val in fixed.items())]
        if not found:
            raise UsageError(f"--target {spec}: no variant of the sweep matches it",
                             "sweep that backend too, e.g. -b 'ort:opt=disable|all,torch'")
        out[str(t)] = found
    return out


def advise(model: str | Path, sweep: Sequence[str | Variant] | str, targets: Sequence[str] | None = None,
           inputs: str | Path | None = None, *, atol: float | None = None, max_ulp: int | None = None,
           time: int = 5, **kwargs: Any) -> Advice:
    """Run `sweep` against the float64 oracle with each variant timed (`time` runs), and rank the choices of one
    setting per target. `kwargs` go to comparator.compare (shapes, seed, samples, timeout, jobs, events)."""
    _check_tolerance(atol, max_ulp)
    chosen, _ = api.resolve_variants(sweep, None)
    # Each swept backend's default setting runs too (unless the sweep has it under another spelling): the
    # latency baseline, and a candidate like the others.
    for backend in dict.fromkeys(v.backend for v in chosen):
        if _default_of([v for v in chosen if v.backend == backend]) is None:
            chosen.append(Variant(backend))
    candidates = _targets(chosen, targets)
    count = math.prod(len(v) for v in candidates.values())
    if count > MAX_CHOICES:
        raise UsageError(f"{count:,} choices of one setting per target: too many to rank",
                         f"narrow the sweep or the targets (at most {MAX_CHOICES:,})")
    report = api.compare(model, chosen, inputs, oracle=True, time=time, tap_spec="outputs", **kwargs)
    return _advice(report, chosen, candidates, atol, max_ulp)


def advise_report(report: Report, targets: Sequence[str] | None = None, *, atol: float | None = None,
                  max_ulp: int | None = None) -> Advice:
    """Advice from a sweep already run: a report of `compare(..., oracle=True, time=N)` (`compare --oracle --time N
    --json FILE`). Its variants other than the two oracles are the settings."""
    _check_tolerance(atol, max_ulp)
    hint = "make one with: infercmp compare MODEL -b SWEEP --oracle --time 5 --tap outputs --json sweep.json"
    oracles = list(report.oracle.get("variants") or [])
    if not oracles or report.reference != oracles[0]:
        raise UsageError("the report was not made against the float64 oracle (--oracle)", hint)
    chosen = [Variant.parse(v.name) for v in report.variants if v.name not in oracles]
    if not chosen:
        raise UsageError("the report holds no setting besides the oracles", hint)
    if not any(report.latency(str(v)) for v in chosen):
        raise UsageError("the report holds no latency (--time)", hint)
    return _advice(report, chosen, _targets(chosen, targets), atol, max_ulp)


def _check_tolerance(atol: float | None, max_ulp: int | None) -> None:
    if atol is not None and (isinstance(atol, bool) or not isinstance(atol, (int, float)) or not atol >= 0
                             or math.isinf(atol)):
        raise UsageError(f"--atol {atol}: give a finite number >= 0")
    if max_ulp is not None and (isinstance(max_ulp, bool) or not isinstance(max_ulp, int) or max_ulp < 0):
        raise UsageError(f"--max-ulp {max_ulp}: give an integer >= 0")


def _advice(report: Report, chosen: Sequence[Variant], candidates: dict[str, list[Variant]], atol: float | None,
            max_ulp: int | None) -> Advice:
    runs = {v.name: v for v in report.variants}
    failed = {str(v): runs[str(v)].error or runs[str(v)].status for v in chosen
              if str(v) in runs and runs[str(v)].status != "ok"}
    klass = {name: k for k, members in enumerate(report.equivalence_classes) for name in members}
    pair = report.pairwise
    index = {n: i for i, n in enumerate(pair.get("variants", []))}

    def snr(name: str) -> float | None:
        found = [float(t.metrics[name]["snr_db"]) for t in report.tensors if t.is_output and name in t.metrics
                 and t.metrics[name].get("snr_db") is not None and "error" not in t.metrics[name]]
        return min(found) if found else None

    def deviation(name: str) -> float | None:
        found = [float(t.metrics[name]["max_abs"]) for t in report.tensors if t.is_output and name in t.metrics
                 and t.metrics[name].get("max_abs") is not None and "error" not in t.metrics[name]]
        return max(found) if found else None

    defaults = {}
    for target, vs in candidates.items():
        defaults[target] = report.latency(str(_default_of(vs) or vs[0]))
    settings = []
    for v in chosen:
        lat = report.latency(str(v))
        settings.append({"variant": str(v), "status": runs[str(v)].status if str(v) in runs else "missing",
                         "class": klass.get(str(v)), "oracle_max_abs": deviation(str(v)),
                         "oracle_snr_db": snr(str(v)),
                         "latency_s": None if lat is None else lat["median_s"]})

    def within(a: str, b: str) -> bool:
        if a not in index or b not in index:
            return False
        i, j = index[a], index[b]
        close = atol is not None and pair["max_abs"][i][j] <= atol
        near = max_ulp is not None and pair["max_ulp"][i][j] is not None and pair["max_ulp"][i][j] <= max_ulp
        return close or near

    choices = []
    for combo in itertools.product(*candidates.values()):
        names = [str(v) for v in combo]
        if any(n in failed or n not in runs for n in names):
            continue
        same = len({klass.get(n, n) for n in names}) == 1
        close = same or all(within(a, b) for a, b in itertools.combinations(names, 2))
        label = "bit-identical" if same else ("within tolerance" if close else "no")
        if len(names) == 1:  # one target: nothing to agree with; its class says which settings it shares
            label = f"class {klass[names[0]] + 1}" if names[0] in klass else "-"
        devs = [deviation(n) for n in names]
        snrs = [snr(n) for n in names]
        ratios = []
        for target, n in zip(candidates, names):
            lat, base = report.latency(n), defaults[target]
            if lat is not None and base is not None and base["median_s"] > 0:
                ratios.append(lat["median_s"] / base["median_s"])
        choices.append({"variants": names, "agrees": close,
                        "agreement": label,
                        "oracle_max_abs": max((d for d in devs if d is not None), default=None),
                        "oracle_snr_db": min((x for x in snrs if x is not None), default=None),
                        "latency_ratio": max(ratios) if len(ratios) == len(names) else None})
    choices.sort(key=_rank)
    outputs = {t.name for t in report.tensors if t.is_output}
    doubts = sum(1 for d in report.oracle.get("disagreements", []) if d.get("tensor") in outputs)
    return Advice(dict(report.model), list(candidates), {"atol": atol, "max_ulp": max_ulp}, settings, choices,
                  _knobs(chosen, klass, failed), failed, doubts)


def _rank(choice: dict[str, Any]) -> tuple[Any, ...]:
    """Bit-identical before within tolerance before disagreeing; then accuracy against the oracle in steps of
    20 dB of the worst output's SNR (a tenfold relative error), all above 140 dB (float32 rounding) counting as one;
    then latency; then the exact SNR."""
    snr, lat = choice["oracle_snr_db"], choice["latency_ratio"]
    tier = 0 if choice["agreement"] == "bit-identical" else 1 if choice["agrees"] else 2
    step = -math.inf if snr is None else min(math.floor(snr / 20), 7)
    return (tier, -step, math.inf if lat is None else lat, -math.inf if snr is None else -snr)


def _default_of(variants: Sequence[Variant]) -> Variant | None:
    """The variant among `variants` whose every option has its backend's default value, if any."""
    from .. import backends

    for v in variants:
        backend, options = backends.resolve_variant(v)
        if dict(options) == dict(backends.resolve_variant(Variant(v.backend))[1]):
            return v
    return None


def _knobs(chosen: Sequence[Variant], klass: dict[str, int], failed: dict[str, str]) -> list[dict[str, Any]]:
    """Per backend and knob: of the pairs of variants that differ in that knob alone, how many fall in
    different classes. Most splitting first."""
    out: list[dict[str, Any]] = []
    ok = [v for v in chosen if str(v) not in failed and str(v) in klass]
    for backend in dict.fromkeys(v.backend for v in ok):
        mine = [v for v in ok if v.backend == backend]
        knobs = sorted({k for v in mine for k, _ in v.options})
        for knob in knobs:
            pairs = splits = 0
            for a, b in itertools.combinations(mine, 2):
                da, db = dict(a.options), dict(b.options)
                differ = {k for k in set(da) | set(db) if da.get(k) != db.get(k)}
                if differ == {knob}:
                    pairs += 1
                    splits += klass[str(a)] != klass[str(b)]
            if pairs:
                out.append({"backend": backend, "knob": knob, "pairs": pairs, "splits": splits})
    out.sort(key=lambda k: (-int(k["splits"]) / int(k["pairs"]), -int(k["splits"])))
    return out
