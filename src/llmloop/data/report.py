"""The HTML report of a ``DataProfile``: one self-contained page with inline SVG plots.

Plots are drawn with matplotlib (Agg backend) into inline SVG; styles are inline; the page loads
nothing from the network. Every value is HTML-escaped, since sample rows are user data.

It does not compute anything: all numbers come from the profile.
"""

from __future__ import annotations

import html
import io
from collections.abc import Sequence

from llmloop.data.profile import DataProfile, FieldProfile, Finding, Histogram
from llmloop.errors import MissingExtraError

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;max-width:1100px;color:#222}
table{border-collapse:collapse;margin:.5rem 0 1.5rem}td,th{border:1px solid #ccc;padding:4px 8px;
text-align:left;vertical-align:top}th{background:#f3f3f3}code{white-space:pre-wrap;word-break:break-all}
.plots{display:flex;flex-wrap:wrap;gap:1rem}.plots figure{margin:0;max-width:100%}
.plots svg{max-width:100%;height:auto}.bad{color:#a00;font-weight:bold}
table{display:block;max-width:100%;overflow-x:auto}
@media (max-width:600px){body{margin:.75rem}}
"""


def _svg_bar(labels: Sequence[str], values: Sequence[float], title: str, xlabel: str) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise MissingExtraError("eval", "The HTML data report (matplotlib)")
    figure, axes = plt.subplots(figsize=(5, 3))
    axes.bar(range(len(values)), values, color="#4c72b0")
    step = max(1, len(labels) // 8)
    axes.set_xticks(range(0, len(labels), step), [labels[i] for i in range(0, len(labels), step)])
    axes.tick_params(axis="x", labelsize=7, rotation=30)
    axes.set_title(title)
    axes.set_xlabel(xlabel)
    figure.tight_layout()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg")
    plt.close(figure)
    svg = buffer.getvalue()
    return svg[svg.index("<svg") :]


def _histogram_svg(histogram: Histogram, title: str, xlabel: str) -> str:
    labels = [f"{edge:.0f}" for edge in histogram.edges[:-1]]
    return _svg_bar(labels, histogram.counts, title, xlabel)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(cell))}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _interval(bounds: tuple[float, float] | None) -> str:
    return f"{bounds[0]:.2%} to {bounds[1]:.2%}" if bounds is not None else "exact"


def _count_and_rate(finding: Finding) -> tuple[str, str]:
    """Exact counts as they are; sampled ones as estimates with their interval and sample."""
    if not finding.estimated:
        return str(finding.count), f"{finding.rate:.2%}"
    return (
        f"~{finding.count} (estimate from {finding.sample_size} rows scored)",
        f"~{finding.rate:.2%} (95% interval {_interval(finding.ci95)})",
    )


def _field_values(field: FieldProfile, rows: int) -> str:
    """What stands out in a column: no values at all, or one value in every row."""
    if field.null_count == rows:
        return "all null or missing"
    if field.empty_count + field.null_count == rows:
        return "all empty"
    if field.constant:
        value = repr(field.constant_value)
        return f"constant: {value[:80]}{'…' if len(value) > 80 else ''}"
    return ""


def render_report(profile: DataProfile, title: str = "Dataset profile") -> str:
    """The report as one HTML document (no external resources)."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{html.escape(title)}</title>",
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
        f"<p>{profile.row_count} rows, shape <b>{html.escape(profile.shape)}</b>, tokenizer "
        f"<code>{html.escape(profile.tokenizer)}</code>.</p>",
        "<h2>Findings</h2>",
        _table(
            ["finding", "rows", "rate"],
            [(name, *_count_and_rate(f)) for name, f in profile.findings.items()],
        ),
        "<h2>Lengths</h2><div class='plots'>",
    ]
    for lengths, label in ((profile.chars, "characters"), (profile.tokens, "tokens")):
        svg = _histogram_svg(lengths.histogram, f"{label.capitalize()} per row", label)
        parts.append(f"<figure>{svg}</figure>")
    if profile.languages:
        top = list(profile.languages.items())[:12]
        languages_svg = _svg_bar([k for k, _ in top], [v for _, v in top], "Languages", "code")
        parts.append(f"<figure>{languages_svg}</figure>")
    if profile.pii_counts:
        kinds = sorted(profile.pii_counts.items())
        pii_svg = _svg_bar([k for k, _ in kinds], [v for _, v in kinds], "PII hits", "kind")
        parts.append(f"<figure>{pii_svg}</figure>")
    parts.append("</div>")
    stats = [
        (name, s.mean, s.std, s.min, s.p50, s.p90, s.p99, s.max)
        for name, s in (("chars", profile.chars), ("tokens", profile.tokens))
    ]
    parts.append(
        _table(
            ["", "mean", "std", "min", "p50", "p90", "p99", "max"],
            [(n, f"{a:.1f}", f"{b:.1f}", c, d, e, f, g) for n, a, b, c, d, e, f, g in stats],
        )
    )
    parts.append("<h2>Fields</h2>")
    parts.append(
        _table(
            ["field", "types", "null rate", "empty strings", "values"],
            [
                (
                    f.name,
                    ", ".join(f"{k}: {v}" for k, v in f.types.items()),
                    f"{f.null_rate:.2%}",
                    f.empty_count,
                    _field_values(f, profile.row_count),
                )
                for f in profile.fields
            ],
        )
    )
    parts.append(f"<h2>Languages</h2><p>Sample of {profile.language_sample_size} rows.</p>")
    parts.append(
        _table(
            ["language", "share", "95% interval"],
            [
                (k, f"{v:.1%}", _interval(profile.language_ci95.get(k)))
                for k, v in profile.languages.items()
            ],
        )
    )
    parts.append("<h2>Top n-grams</h2>")
    for n, grams in profile.top_ngrams.items():
        parts.append(f"<h3>{html.escape(n)}-grams</h3>" + _table(["n-gram", "count"], grams))
    parts.append("<h2>Samples per finding</h2>")
    for name, finding in profile.findings.items():
        if finding.samples:
            parts.append(f"<h3>{html.escape(name)}</h3>")
            parts.append(
                _table(
                    ["row", "detail", "text"], [(s.row, s.detail, s.text) for s in finding.samples]
                )
            )
    if profile.notes:
        parts.append(
            "<h2>Notes</h2><ul>"
            + "".join(f"<li>{html.escape(n)}</li>" for n in profile.notes)
            + "</ul>"
        )
    parts.append("</body></html>")
    return "\n".join(parts)
