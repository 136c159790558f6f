"""A gate's verdict as the files CI keeps: an HTML page and a JUnit XML suite (`check --html/--junit`).

The HTML page opens with the verdict (what was gated against what, each variant's findings) and then holds each
report the verdict rests on, one per variant, as the ordinary report page in its own frame (`srcdoc`: the page
stays one self-contained file, and each report keeps its own plot, filter and links). The JUnit suite has one
test case per gated variant: a required variant that fails is a <failure>, one that could not run an <error>, one
the policy does not require is <skipped> with what it found.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from ..fileio import write_text
from ..report import html
from ..report.markup import esc
from ..report.html_assets import CSS
from ..report.junit import document, xml_text
from .verdict import GateResult, verdict_lines

# Each frame grows to its page's height once loaded; without script it keeps the CSS height and scrolls.
_FIT = """(function(){var frames=document.querySelectorAll('iframe.report');function fit(f){try{
f.style.height=(f.contentDocument.documentElement.scrollHeight+24)+'px';}catch(e){}}
frames.forEach(function(f){f.addEventListener('load',function(){fit(f);});fit(f);});
window.addEventListener('load',function(){frames.forEach(fit);});})();"""
_STYLE = ("iframe.report{width:100%;height:80vh;border:1px solid #ccc;border-radius:4px}"
          "pre.verdict{white-space:pre-wrap;padding:.6em;border-radius:4px}"
          "pre.pass{background:#eef7ee}pre.fail{background:#fbeeee}")


def render_html(result: GateResult) -> str:
    """The whole page as one string."""
    name = Path(str(result.candidate.get("path", "model"))).name
    state = "pass" if result.passed else "fail"
    parts = [f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>infercmp gate: {esc(name)} '
             f'{state.upper()}</title><meta name="viewport" content="width=device-width"><style>{CSS}{_STYLE}'
             f'</style></head><body><h1>infercmp gate: {esc(name)}</h1>',
             f'<pre class="verdict {state}" id="verdict">{esc(chr(10).join(result.lines()))}</pre>']
    for k, report in enumerate(result.reports):
        compared = ", ".join(v.name for v in report.variants if v.name != report.reference)
        parts.append(f'<section id="report{k}"><h2>{esc(compared)} against {esc(report.reference)}</h2>'
                     f'<iframe class="report" title="report {k + 1}" srcdoc="{esc(html.render(report))}">'
                     '</iframe></section>')
    parts.append(f"<script>{_FIT}</script></body></html>\n")
    return "".join(parts)


def build_junit(result: GateResult) -> ET.Element:
    """The <testsuite name="infercmp-gate"> element, one <testcase> per gated variant."""
    model = Path(str(result.candidate.get("path", "model"))).name
    suite = ET.Element("testsuite", name="infercmp-gate")
    props = ET.SubElement(suite, "properties")
    for key, value in (("mode", result.mode), ("candidate", result.candidate.get("path", "")),
                       ("candidate_sha256", result.candidate.get("sha256", "")),
                       ("reference", result.reference.get("path", "")),
                       ("reference_sha256", result.reference.get("sha256", "")),
                       ("model_changed", result.model_changed), ("exit_code", result.exit_code)):
        ET.SubElement(props, "property", name=key, value=xml_text(value))
    counts = {"failures": 0, "errors": 0, "skipped": 0}
    for variant, v in result.verdicts.items():
        case = ET.SubElement(suite, "testcase", classname=xml_text(model), name=xml_text(variant))
        messages = [f["message"] for f in v["findings"]]
        summary = f"{len(messages)} finding(s): " + "; ".join(messages[:3]) + ("; ..." if len(messages) > 3 else "")
        if v["status"] != "pass" and not v["required"]:
            counts["skipped"] += 1
            ET.SubElement(case, "skipped", message=xml_text(f"not required by the policy; {v['status']}: {summary}"))
        elif v["status"] == "error":
            counts["errors"] += 1
            ET.SubElement(case, "error", type="CouldNotRun", message=xml_text(summary)).text = \
                xml_text("\n".join(messages))
        elif v["status"] == "fail":
            counts["failures"] += 1
            ET.SubElement(case, "failure", type="GateFailure", message=xml_text(summary)).text = \
                xml_text("\n".join(messages))
        ET.SubElement(case, "system-out").text = xml_text("\n".join(verdict_lines(variant, v)))
    suite.set("tests", str(len(result.verdicts)))
    for key, n in counts.items():
        suite.set(key, str(n))
    return suite


def render_junit(result: GateResult) -> str:
    """The XML document as a string."""
    return document(build_junit(result))


def write_html(result: GateResult, path: str | Path) -> None:
    """Write the page atomically (`-`: standard output)."""
    write_text(path, render_html(result))


def write_junit(result: GateResult, path: str | Path) -> None:
    """Write the XML atomically (`-`: standard output)."""
    write_text(path, render_junit(result))
