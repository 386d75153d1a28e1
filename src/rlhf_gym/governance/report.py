"""The agreement and bias report: one JSON-able dict for ``rlhf-gym report annotators`` and the web
app's admin page, plus a plain-text table of it and the weights trainers can take from it."""

from __future__ import annotations

import itertools
import statistics
import time
from collections import defaultdict
from typing import Any

import numpy as np

from rlhf_gym.governance.agreement import (
    RewardFn,
    agreement,
    by_hour,
    category,
    cohen_kappa,
    consensus,
    distribution,
    fleiss_kappa,
    labels_per_hour,
    latest_categories,
    load_labels,
    reward_model_reference,
)
from rlhf_gym.governance.bias import BiasSettings, WeightPolicy, annotator_weights, population_flags
from rlhf_gym.store import FeedbackStore


def annotator_report(store: FeedbackStore, reward_fn: RewardFn | None = None, run_id: str | None = None,
                     settings: BiasSettings | None = None, weighting: WeightPolicy | None = None) -> dict[str, Any]:
    """Labels, agreement and flags for every annotator, as plain JSON types.

    Args:
        store: the feedback store (withdrawn labels are never counted).
        reward_fn: optional P(left) predictor for pair queries (the current reward model), for each
            person's agreement with it.
        run_id: restrict to one run's queries.
        settings: flag thresholds.
        weighting: how training treats flagged annotators; the report shows the resulting weight.
    """
    st = settings or BiasSettings()
    weighting = weighting or WeightPolicy()
    labels = load_labels(store, run_id)
    cats = latest_categories(labels)
    gold = {q: c for q, v in store.gold_values().items() if (c := category(v)) is not None}
    rm_ref = reward_model_reference(store, {lab.query_id for lab in labels}, reward_fn) if reward_fn else None
    by_ann: dict[str, list] = defaultdict(list)
    for lab in labels:
        by_ann[lab.annotator_id].append(lab)
    kept_ids = {lab.feedback_id for lab in labels}
    withdrawn_counts: dict[str, int] = defaultdict(int)
    for fb in store.feedback(run_id=run_id, include_withdrawn=True):
        if fb.id not in kept_ids:
            withdrawn_counts[fb.annotator_id] += 1

    anns = store.annotators()
    all_flags = population_flags(labels, gold, [a.id for a in anns if a.kind == "human"], st)
    people = []
    for ann in anns:
        mine = by_ann.get(ann.id, [])
        if not mine and run_id is not None and ann.id not in withdrawn_counts:
            continue
        own = cats.get(ann.id, {})
        majority = consensus(cats, exclude=ann.id)
        flags = all_flags.get(ann.id, [])
        k, n = agreement(own, majority)
        gold_answered = [q for q in own if q in gold]
        entry: dict[str, Any] = {
            "id": ann.id, "kind": ann.kind, "role": ann.role,
            "withdrawn": ann.withdrawn_at is not None, "withdrawn_at": ann.withdrawn_at,
            "consent": store.consent_status(ann.id),
            "labels": len(mine), "labels_withdrawn": withdrawn_counts.get(ann.id, 0),
            "distribution": distribution(mine),
            "labels_per_hour": labels_per_hour(mine), "by_hour": by_hour(mine),
            "first_at": min((lab.answered_at for lab in mine), default=None),
            "last_at": max((lab.answered_at for lab in mine), default=None),
            "median_response_s": statistics.median([lab.response_s for lab in mine]) if mine else None,
            "agreement_majority": {"rate": k / n if n else None, "n": n},
            "agreement_reward_model": None,
            "gold": {"n": len(gold_answered), "failed": sum(own[q] != gold[q] for q in gold_answered)},
            "flags": [f.to_dict() for f in flags],
        }
        if rm_ref is not None:
            k, n = agreement(own, rm_ref)
            entry["agreement_reward_model"] = {"rate": k / n if n else None, "n": n}
        entry["weight"] = weighting.weight(f.name for f in flags)
        people.append(entry)

    names = sorted(cats)
    cohen = []
    for a, b in itertools.combinations(names, 2):
        kp = cohen_kappa(cats[a], cats[b])
        if kp.n >= 2:
            cohen.append({"a": a, "b": b, **kp.to_dict()})
    per_query: dict[str, list[float]] = defaultdict(list)
    for labels_of in cats.values():
        for q, c in labels_of.items():
            per_query[q].append(c)
    fleiss = fleiss_kappa(per_query)
    verify = store.verify_audit()
    tradeoffs = tradeoff_report(store, run_id, st)
    return {
        "generated_at": time.time(),
        "run": run_id,
        "settings": st.to_dict(),
        "weighting": {"mode": weighting.mode, "flagged_weight": weighting.flagged_weight,
                      "flags": list(weighting.flags) if weighting.flags else None},
        "totals": {"labels": len(labels), "annotators": len(by_ann), "distribution": distribution(labels),
                   "by_hour": by_hour(labels), "gold_queries": len(gold)},
        "annotators": people,
        "flagged": [p["id"] for p in people if p["flags"]],
        "agreement": {"cohen": cohen, "fleiss": {**fleiss.to_dict(), "raters": len(cats)}},
        "tradeoff": tradeoffs,
        "models_flagged": [{"id": m.id, "kind": m.kind, "path": m.path, "reason": m.flagged}
                           for m in store.models(flagged_only=True)],
        "audit": {"ok": verify.ok, "entries": verify.entries, "first_bad_seq": verify.first_bad_seq,
                  "reason": verify.reason},
    }


def tradeoff_report(store: FeedbackStore, run_id: str | None = None,
                    settings: BiasSettings | None = None) -> list[dict[str, Any]]:
    """Each annotator's learned trade-off weights, per run with outcome answers (``--feedback tradeoff``).

    Per run: each annotator's posterior refitted from their current (non-withdrawn, non-skipped) answers
    in the store, so a withdrawal since the run is honoured, with the run's ``model_beta`` and
    ``n_samples``; the pooled posterior; the cosine distance between every pair of annotators with the
    pairs that disagree (``tradeoff_distance`` / ``tradeoff_confidence`` / ``tradeoff_min_answers``);
    groups of annotators no pair sets apart; and the weights each aggregation rule gives, with the rule
    the run used. The model's scale is each objective's range over the run's outcome queries, so the
    figures can differ slightly from the run's ``posterior.json`` (whose scale is the range over every
    outcome the run sampled).
    """
    from rlhf_gym.morl.annotators import (
        DisagreementSettings,
        aggregate_weights,
        compare_annotators,
        parse_aggregate,
        per_annotator_posteriors,
        weight_summary,
    )
    from rlhf_gym.morl.weights import WeightPosterior, outcome_scale
    from rlhf_gym.types import OutcomeQuery

    st = settings or BiasSettings()
    queries = [q for q in store.queries(run_id=run_id, kind="outcome") if isinstance(q, OutcomeQuery)]
    if not queries:
        return []
    by_id = {q.id: q for q in queries}
    answers: dict[str | None, list] = defaultdict(list)
    for fb in store.feedback(run_id=run_id, kind="outcome", include_skipped=False):
        q = by_id.get(fb.query_id)
        if q is not None:
            answers[q.run_id].append((q, fb))
    dis = DisagreementSettings(threshold=st.tradeoff_distance, confidence=st.tradeoff_confidence,
                               min_answers=st.tradeoff_min_answers)
    out = []
    for rid, ans in answers.items():
        k = len(ans[0][0].left)
        ans = [(q, fb) for q, fb in ans if len(q.left) == k]
        cfg = (store.run_config(rid) or {}) if rid is not None else {}
        extra = cfg.get("extra") or {}
        beta = extra.get("model_beta", 20.0)
        n_samples = int(extra.get("n_samples", 4000))
        seed = int(cfg.get("seed") or 0)
        scale = outcome_scale(np.array([v for q in queries if q.run_id == rid and len(q.left) == k
                                        for v in (q.left, q.right)]))

        def make(i: int, k: int = k, scale: np.ndarray = scale, beta: Any = beta, n: int = n_samples,
                 seed: int = seed) -> WeightPosterior:
            return WeightPosterior(k, scale, beta=None if beta == "learn" else float(beta), n_samples=n,
                                   rng=np.random.default_rng([seed, 9, i]))

        pooled = make(0)
        for q, fb in ans:
            pooled.update(q.left, q.right, fb.value)
        per = per_annotator_posteriors(ans, make)
        cmp = compare_annotators(per, dis, np.random.default_rng([seed, 11]))
        rule_text = str(extra.get("aggregate", "pooled"))
        means = {a: p.mean for a, p in per.items()}
        aggregates: dict[str, Any] = {"pooled": pooled.mean.tolist(),
                                      "mean": aggregate_weights("mean", pooled.mean, means).tolist()}
        used: dict[str, Any] = {"rule": rule_text}
        try:
            rule = parse_aggregate(rule_text)
            used["describe"] = rule.describe()
            used["weights"] = aggregate_weights(rule, pooled.mean, means).tolist()
        except ValueError as e:  # e.g. the annotator the rule names has withdrawn since
            used["error"] = str(e)
        out.append({
            "run": rid, "objectives": list(ans[0][0].objectives) or [f"objective {i}" for i in range(k)],
            "answers": len(ans), "model_beta": beta,
            "annotators": [{"id": a, **weight_summary(p)} for a, p in per.items()],
            "pooled": weight_summary(pooled),
            "pairs": cmp["pairs"], "disagreements": cmp["disagreements"], "groups": cmp["groups"],
            "ungrouped": cmp["ungrouped"],
            "aggregates": aggregates, "aggregate_used": used,
            "settings": {"threshold": dis.threshold, "confidence": dis.confidence, "min_answers": dis.min_answers},
        })
    return out


def format_tradeoff(section: dict[str, Any]) -> list[str]:
    """Lines of text for one run's trade-off section of the report."""
    names = section["objectives"]

    def vec(w: list[float]) -> str:
        return "[" + ", ".join(f"{x:.2f}" for x in w) + "]"

    head = ["annotator", "answers", *names]
    rows = [[a["id"], str(a["answers"]), *(f"{m:.2f} ±{s:.2f}" for m, s in zip(a["mean"], a["sd"], strict=True))]
            for a in [*section["annotators"], {"id": "(pooled)", **section["pooled"]}]]
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    st = section["settings"]
    lines = ["", f"trade-off weights learned per annotator (run {section['run']}; posterior mean ± sd; "
                 f"{section['answers']} answers)"]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]]
    lines.insert(3, "  ".join("-" * w for w in widths))
    for p in section["pairs"]:
        lo, hi = p["interval90"]
        mark = "DISAGREE" if p["disagree"] else ("too few answers" if not p["enough_answers"] else "agree")
        lines.append(f"cosine distance {p['a']} / {p['b']}: {p['distance']:.3f} (90% {lo:.3f}-{hi:.3f}; "
                     f"P(> {st['threshold']:g}) = {p['p_beyond']:.2f}): {mark}")
    if len(section["annotators"]) > 1:
        lines.append("groups no pair sets apart: " + ("; ".join("{" + ", ".join(g) + "}" for g in section["groups"])
                                                       or "-")
                     + (f" (too few answers to place: {', '.join(section['ungrouped'])})" if section["ungrouped"] else ""))
    for p in section["disagreements"]:
        lines.append(f"FLAG trade-off {p['a']} / {p['b']}: their weights differ (cosine distance {p['distance']:.3f}, "
                     f"P(> {st['threshold']:g}) = {p['p_beyond']:.2f}); pooling their answers hides it")
    ag = section["aggregates"]
    used = section["aggregate_used"]
    lines.append(f"aggregation: pooled {vec(ag['pooled'])}; mean of annotators {vec(ag['mean'])}")
    lines.append("rule used by the run: " + (f"{used['rule']}: ERROR {used['error']}" if "error" in used
                                             else f"{used['describe']} -> {vec(used['weights'])}"))
    return lines


def training_weights(store: FeedbackStore, policy: WeightPolicy, run_id: str | None = None,
                     settings: BiasSettings | None = None) -> dict[str, float]:
    """annotator id -> label weight under ``policy`` (all 1.0 when ``policy.mode == 'off'``).

    For trainers: ``w = training_weights(store, WeightPolicy(mode="exclude"))``, then multiply each
    label's loss by ``w.get(fb.annotator_id, 1.0)`` (see :func:`~rlhf_gym.governance.bias.feedback_weights`).
    """
    if policy.mode == "off":
        return {}
    return annotator_weights(annotator_report(store, run_id=run_id, settings=settings), policy)


def rate_cell(x: dict[str, Any] | None) -> str:
    """An agreement rate as ``"83% (12)"`` (rate and count), or ``"-"`` when there is none."""
    return "-" if not x or x.get("rate") is None else f"{x['rate']:.0%} ({x['n']})"


def consent_cell(a: dict[str, Any], withdrawn: str = "withdrawn") -> str:
    """An annotator's consent state for a table: the agreed version, ``declined``, ``-`` or withdrawn."""
    if a["withdrawn"]:
        return withdrawn
    consent = a["consent"]
    return "-" if consent is None else (consent["version"] if consent["agreed"] else "declined")


def format_report(report: dict[str, Any]) -> str:
    """A plain-text table of the report, for the terminal."""
    pct = rate_cell

    head = ["annotator", "kind", "labels", "per hour", "majority", "reward model", "gold fail", "median s",
            "consent", "flags"]
    rows = []
    for a in report["annotators"]:
        cons = consent_cell(a, withdrawn="WITHDRAWN")
        rows.append([a["id"], a["kind"], str(a["labels"]),
                     "-" if a["labels_per_hour"] is None else f"{a['labels_per_hour']:.0f}",
                     pct(a["agreement_majority"]), pct(a["agreement_reward_model"]),
                     f"{a['gold']['failed']}/{a['gold']['n']}" if a["gold"]["n"] else "-",
                     "-" if a["median_response_s"] is None else f"{a['median_response_s']:.1f}",
                     cons, ", ".join(f["name"] for f in a["flags"]) or "-"])
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    t = report["totals"]
    fl = report["agreement"]["fleiss"]
    lines += ["", f"labels: {t['labels']} from {t['annotators']} annotators; distribution: "
              + (", ".join(f"{k} {v}" for k, v in t["distribution"].items()) or "-"),
              "Fleiss' kappa: " + ("undefined" if fl["kappa"] is None else f"{fl['kappa']:.3f}")
              + f" over {fl['n']} queries with 2+ raters"]
    for c in report["agreement"]["cohen"]:
        kv = "undefined" if c["kappa"] is None else f"{c['kappa']:.3f}"
        lines.append(f"Cohen's kappa {c['a']} / {c['b']}: {kv} over {c['n']} shared queries")
    for a in report["annotators"]:
        for f in a["flags"]:
            lines.append(f"FLAG {a['id']}: {f['name']}: {f['detail']} (p={f['p_value']:.2g})")
    for m in report["models_flagged"]:
        lines.append(f"MODEL {m['id']} ({m['kind']}) must be retrained: {m['reason']}")
    for section in report.get("tradeoff", []):
        lines += format_tradeoff(section)
    au = report["audit"]
    lines.append("audit log: " + (f"intact ({au['entries']} entries)" if au["ok"] else f"BROKEN: {au['reason']}"))
    return "\n".join(lines)
