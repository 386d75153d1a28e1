"""A self-contained HTML page of the annotator report, for the web app's admin view.

The web app can serve ``render_admin_html(annotator_report(store))`` as is (no scripts, no external
assets; every value is escaped) or build its own page from the same JSON.
"""

from __future__ import annotations

from html import escape
from typing import Any

from rlhf_gym.governance.report import consent_cell, rate_cell

_STYLE = """body{font-family:system-ui,sans-serif;margin:.8rem;color:#222}
table{border-collapse:collapse;margin:1rem 0;width:100%;table-layout:fixed}
td,th{border:1px solid #ccc;padding:.25rem .4rem;text-align:left;font-size:.85rem;overflow-wrap:anywhere}
th{background:#f3f3f3}
.flag{color:#a00;font-weight:600}.ok{color:#070}.bad{color:#a00;font-weight:700}"""


def _tradeoff_html(sec: dict[str, Any]) -> str:
    """One run's trade-off section: each annotator's weights, the pairs that disagree, the groups."""
    names = sec["objectives"]
    rows = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in [
        a["id"], str(a["answers"]), *(f"{m:.2f} ± {sd:.2f}" for m, sd in zip(a["mean"], a["sd"], strict=True))])
        + "</tr>" for a in [*sec["annotators"], {"id": "(pooled)", **sec["pooled"]}])
    dis = "".join(f'<li class="flag">{escape(p["a"])} / {escape(p["b"])}: cosine distance {p["distance"]:.3f} '
                  f'(P(&gt; {sec["settings"]["threshold"]:g}) = {p["p_beyond"]:.2f})</li>'
                  for p in sec["disagreements"]) or "<li>none</li>"
    groups = "; ".join("{" + ", ".join(escape(x) for x in g) + "}" for g in sec["groups"]) or "-"
    used = sec["aggregate_used"]
    rule = escape(used.get("describe") or f"{used['rule']}: {used.get('error', '')}")
    return (f"<h3>Run {escape(str(sec['run']))}: {sec['answers']} answers</h3>"
            f"<table><tr><th>annotator</th><th>answers</th>{''.join(f'<th>{escape(n)}</th>' for n in names)}</tr>"
            f"{rows}</table><p>Pairs whose trade-offs differ:</p><ul>{dis}</ul>"
            f"<p>Groups no pair sets apart: {groups}. Aggregation used by the run: {rule}.</p>")


def render_admin_html(report: dict[str, Any]) -> str:
    """The report as one HTML page: annotators, flags, kappas, trade-off weights, flagged models and audit state."""
    rows = []
    for a in report["annotators"]:
        cons = consent_cell(a)
        flags = "<br>".join(f'<span class="flag" title="{escape(f["detail"])}">{escape(f["name"])}</span>'
                            for f in a["flags"]) or "-"
        cells = [a["id"], a["kind"], str(a["labels"]),
                 "-" if a["labels_per_hour"] is None else f"{a['labels_per_hour']:.0f}",
                 rate_cell(a["agreement_majority"]), rate_cell(a["agreement_reward_model"]),
                 f"{a['gold']['failed']}/{a['gold']['n']}" if a["gold"]["n"] else "-",
                 "-" if a["median_response_s"] is None else f"{a['median_response_s']:.1f}",
                 ", ".join(f"{k} {v}" for k, v in a["distribution"].items()) or "-", cons, f"{a['weight']:g}"]
        rows.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + f"<td>{flags}</td></tr>")
    head = ["annotator", "kind", "labels", "per hour", "majority", "reward model", "gold failed", "median s",
            "answers", "consent", "weight", "flags"]
    fl = report["agreement"]["fleiss"]
    cohen = "".join(f"<tr><td>{escape(c['a'])}</td><td>{escape(c['b'])}</td><td>{c['n']}</td><td>"
                    f"{'-' if c['kappa'] is None else format(c['kappa'], '.3f')}</td></tr>"
                    for c in report["agreement"]["cohen"])
    models = "".join(f"<li>{escape(m['id'])} ({escape(m['kind'])}): {escape(m['reason'] or '')}</li>"
                     for m in report["models_flagged"]) or "<li>none</li>"
    au = report["audit"]
    audit_line = (f'<span class="ok">intact, {au["entries"]} entries</span>' if au["ok"]
                  else f'<span class="bad">BROKEN at entry {au["first_bad_seq"]}: {escape(au["reason"])}</span>')
    t = report["totals"]
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Annotators</title>
<style>{_STYLE}</style></head><body>
<h1>Annotators</h1>
<p>{t['labels']} labels from {t['annotators']} annotators; {t['gold_queries']} gold queries.
Answers: {escape(", ".join(f"{k} {v}" for k, v in t["distribution"].items()) or "-")}.
Audit log: {audit_line}.</p>
<table><tr>{"".join(f"<th>{h}</th>" for h in head)}</tr>{"".join(rows)}</table>
<h2>Agreement</h2>
<p>Fleiss' kappa: {'-' if fl['kappa'] is None else format(fl['kappa'], '.3f')} over {fl['n']} queries with two or
more raters.</p>
<table><tr><th>a</th><th>b</th><th>shared</th><th>Cohen's kappa</th></tr>{cohen}</table>
{"<h2>Trade-off weights per annotator</h2>" + "".join(_tradeoff_html(x) for x in report.get("tradeoff", []))
 if report.get("tradeoff") else ""}
<h2>Models to retrain</h2><ul>{models}</ul>
</body></html>"""
