"""Sections 7-11 of the card: drift, fairness, serving and controls, data lineage, asset checks.

These are what operators and auditors look at month after month, so each states its status
first, then the numbers behind it, and says plainly when a measurement does not exist yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import partial
from typing import Any

from finai_models.governance import plots
from finai_models.governance.common import (
    Plot,
    Section,
    blocks,
    bullets,
    describe,
    fairness_verdict,
    fairness_violations,
    interval,
    is_num,
    listing,
    no_violation,
    num,
    short_hash,
    slug,
    table,
    verdict,
)


def _feature_drift(drift: Mapping[str, Any], thresholds: Mapping[str, Any]) -> Section:
    feats = drift.get("features") or {}
    head = (f"**Feature drift: {feats.get('status') or drift.get('feature_status') or 'n/a'}.** "
            f"{num(feats.get('rows_reference'))} reference rows vs {num(feats.get('rows_current'))} current rows over "
            f"{num(feats.get('columns'))} columns: {num(feats.get('warning'))} at warning, "
            f"{num(feats.get('critical'))} at critical, max PSI {num(feats.get('max_psi'))}.")
    top = feats.get("top") or []
    top_part = (blocks("Top drifting features:", table(("feature", "group", "PSI", "severity"),
                       [(t.get("feature"), t.get("group"), t.get("psi"), t.get("severity")) for t in top]))
                if top else "No top-drifting feature list was recorded: no feature PSI was computed above zero.")
    groups = feats.get("by_group") or {}
    plot_list, group_part = [], "No per-group PSI was recorded, so no group plot is drawn."
    if groups:
        worst = max(groups, key=lambda g: groups[g] if is_num(groups[g]) else -1.0)
        group_part = f"Most drifted of {len(groups)} feature groups: {worst} (PSI {num(groups[worst])})."
        plot_list = [Plot("drift_feature_groups", "PSI by feature group against the reference month",
                          partial(plots.psi_plot, groups, thresholds.get("warning"), thresholds.get("critical"),
                                  "Feature drift by group (PSI vs reference month)"))]
    return Section("drift-features", "Feature drift", blocks(head, top_part, group_part), plot_list)


def _prediction_drift(drift: Mapping[str, Any], thresholds: Mapping[str, Any]) -> Section:
    pred = drift.get("predictions") or {}
    tasks = pred.get("tasks") or {}
    if not pred.get("available") or not tasks:
        why = ("there is no previous month to compare this month's predictions with (first scored month)"
               if not drift.get("previous_month")
               else f"the predictions of the previous month {drift['previous_month']} were not found or are empty")
        return Section("drift-predictions", "Prediction drift",
                       f"**Prediction drift: not available** — {why}. Only feature drift is judged this month.")
    head = (f"**Prediction drift: {pred.get('status') or 'n/a'}** against {drift.get('previous_month')}: "
            f"{num(pred.get('warning'))} task(s) at warning, {num(pred.get('critical'))} at critical, "
            f"max PSI {num(pred.get('max_psi'))}.")
    rows = [(task, (v or {}).get("psi"), (v or {}).get("severity") or "n/a") for task, v in tasks.items()]
    plot = Plot("drift_predictions", "PSI of each task's predictions against the previous month",
                partial(plots.psi_plot, {t: (v or {}).get("psi") for t, v in tasks.items()},
                        thresholds.get("warning"), thresholds.get("critical"),
                        "Prediction drift per task (PSI vs previous month)"))
    return Section("drift-predictions", "Prediction drift", blocks(head, table(("task", "PSI", "severity"), rows)),
                   [plot])


def drift(facts: Mapping[str, Any]) -> Section:
    report = facts["drift"] or {}
    th = report.get("thresholds") or {}
    body = blocks(
        f"Overall drift status **{report.get('status') or 'n/a'}** for {report.get('month') or facts['month']}: "
        f"features against the reference month {report.get('reference_month') or 'n/a'}, predictions against the "
        f"previous month {report.get('previous_month') or 'n/a (none)'}.",
        f"Thresholds: PSI warning ≥ {num(th.get('warning'))}, critical ≥ {num(th.get('critical'))}; feature drift is "
        f"critical when at least {num(th.get('min_critical_features'))} features are critical; a retrain is requested "
        f"after {num(th.get('retrain_after_months'))} consecutive critical months.",
        f"Critical streak: {num(report.get('critical_streak'))} month(s); retrain requested: "
        f"**{num(bool(report.get('retrain_requested')))}**.")
    return Section("drift", "Drift", body, subsections=[_feature_drift(report, th), _prediction_drift(report, th)])


def _percent(value: Any) -> str:
    return f"{value:.0%}" if is_num(value) else "n/a"


def _attribute(name: str, block: Mapping[str, Any], band: Any) -> Section:
    rows = block.get("rows") or []
    groups = block.get("groups") or {}
    judged = [r for r in rows if r.get("judged")]
    head = (f"Reference group **{block.get('reference') or 'n/a'}**; group sizes: "
            f"{listing(f'{g} {num(n)}' for g, n in groups.items())}. {len(judged)} of {len(rows)} product × group rows "
            f"were judged; result **{verdict(block.get('passed')) if judged else 'not judged'}**.")
    if not rows:
        return Section(f"fairness-{slug(name)}", f"Attribute: {name}",
                       blocks(head, "No product × group row was computed for this attribute, so no disparity can be "
                                    "reported (for example, only the reference group is present)."))
    flagged = [(r.get("product"), r.get("group"), r.get("n"), r.get("rate"), r.get("rate_reference"),
                r.get("disparate_impact"), interval(r.get("di_ci")), r.get("parity_difference"),
                interval(r.get("spd_ci")), r.get("opportunity_difference"), interval(r.get("eod_ci")),
                num(bool(r.get("judged"))),
                ("VIOLATION: " + listing(describe(v) for v in r["violations"])) if r.get("violations") else "none")
               for r in rows]
    no_judge = ("" if judged else
                "No row was judged: every group was below the minimum group size (or had no qualified customers), "
                "so the ratios below are shown for transparency and carry no verdict.")
    unobservable = block.get("not_observable") or []
    notes = (blocks("Not observable:", bullets(str(n) for n in unobservable)) if unobservable
             else "Every measure of this attribute was observable.")
    body = blocks(head, no_judge, table(("product", "group", "n", "rate", "ref. rate", "DI", "DI CI", "SPD",
                                         "SPD CI", "EOD", "EOD CI", "judged", "violations"), flagged), notes)
    with_di = [r for r in rows if is_num(r.get("disparate_impact"))]
    plot_list = ([Plot(f"fairness_{slug(name).replace('-', '_')}", f"Disparate impact by product and {name} group",
                       partial(plots.fairness_plot, with_di, band if isinstance(band, list | tuple) else (),
                               f"Disparate impact by product, {name} (reference {block.get('reference') or 'n/a'})"))]
                 if with_di else [])
    if not with_di:
        body = blocks(body, "No disparate-impact ratio could be computed, so no plot is drawn.")
    return Section(f"fairness-{slug(name)}", f"Attribute: {name}", body, plot_list)


def fairness(facts: Mapping[str, Any]) -> Section:
    report = facts["fairness"] or {}
    th = report.get("thresholds") or {}
    band = th.get("disparate_impact") or []
    violations = fairness_violations(facts)
    body = blocks(
        f"Verdict: **{fairness_verdict(facts)}** over {num(report.get('customers'))} customers.",
        f"Thresholds: disparate impact (DI) within {interval(band)}, |statistical parity difference (SPD)| ≤ "
        f"{num(th.get('max_parity_difference'))}, |equal opportunity difference (EOD)| ≤ "
        f"{num(th.get('max_opportunity_difference'))}, groups of at least {num(th.get('min_group'))} customers, "
        f"{_percent(th.get('confidence'))} confidence intervals.",
        blocks("Violations:", bullets(violations)) if violations else no_violation(facts))
    attributes = report.get("attributes") or {}
    if not attributes:
        body = blocks(body, "No protected attribute was available in the month's data, so fairness could not be "
                            "measured; this is a gap to close, not a pass.")
    subs = [_attribute(name, block or {}, band) for name, block in attributes.items()]
    return Section("fairness", "Fairness", body, subsections=subs)


def serving(facts: Mapping[str, Any]) -> Section:
    serve = facts["serving"] or {}
    bundle = serve.get("bundle") or {}
    bundle_part = (table(("bundle", "value"), [("path", f"`{bundle.get('path') or 'n/a'}`"),
                                               ("sha256", short_hash(bundle.get("sha256"), 16)),
                                               ("size (MB)", bundle.get("zip_mb")), ("files", bundle.get("files")),
                                               ("uri", f"`{bundle.get('uri') or 'n/a'}`")])
                   if bundle else "No serving bundle was built this month, so nothing new is being served.")
    paths = serve.get("paths") or {}
    total = sum(v for v in paths.values() if is_num(v)) or 0
    path_part = (table(("path", "customers", "share"),
                       [(p, n, f"{n / total:.1%}" if total and is_num(n) else "n/a") for p, n in paths.items()])
                 if paths else "No serving path counts were recorded (the monthly batch did not run).")
    top = serve.get("top_products") or {}
    top_part = (table(("product", "share of customers recommended"), top.items()) if top
                else "No product was recommended this month.")
    controls = serve.get("controls") or {}
    control_part = (table(("control", "setting"), controls.items()) if controls
                    else "No customer-protection controls were recorded: treat serving as unverified.")
    body = blocks(
        f"{num(serve.get('customers'))} customers scored, {num(serve.get('recommendations_per_customer'), 2)} "
        f"recommendations each on average; cold start {num(serve.get('cold_start_seconds'), 2)} s.",
        bundle_part, "Serving paths (model vs rule fallback):", path_part, top_part, "Controls:", control_part)
    return Section("serving", "Serving and controls", body)


def lineage(facts: Mapping[str, Any]) -> Section:
    lin = facts["lineage"] or {}
    dataset = lin.get("dataset") or {}
    files = lin.get("raw_files") or []
    file_part = (table(("table", "month", "rows", "sha256", "path"),
                       [(f.get("table"), f.get("month"), f.get("rows"), short_hash(f.get("sha256")),
                         f"`{f.get('path') or 'n/a'}`") for f in files])
                 if files else "No raw file was recorded for this month: the raw layer was not materialised.")
    split = lin.get("split") or {}
    split_part = (table(("split", "first month", "last month"),
                        [(name, *(list(span or [])[:2] + ["n/a", "n/a"])[:2]) for name, span in split.items()])
                  if split else "No train/validation/test split was recorded.")
    groups = lin.get("feature_groups") or []
    group_part = (blocks(f"{len(groups)} feature groups, "
                         f"{num(sum(g.get('columns') or 0 for g in groups))} columns in all:",
                         table(("feature group", "columns"), [(g.get("name"), g.get("columns")) for g in groups]))
                  if groups else "No feature group was recorded.")
    runs = lin.get("runs") or []
    run_part = (table(("asset", "run id", "timestamp"), [(r.get("asset"), f"`{r.get('run_id')}`", r.get("timestamp"))
                                                          for r in runs])
                if runs else "No Dagster run was recorded for this month's assets.")
    body = blocks(
        f"Dataset **{dataset.get('name') or 'n/a'}** (source {dataset.get('source') or 'n/a'}), fingerprint "
        f"{short_hash(dataset.get('fingerprint'))}. Phase-0 state `{lin.get('phase0_state') or 'n/a'}`, training set "
        f"`{lin.get('training_set') or 'n/a'}`.",
        "Raw files:", file_part, "Split:", split_part, group_part, "Dagster runs:", run_part)
    return Section("lineage", "Data lineage of the month", body)


def checks(facts: Mapping[str, Any]) -> Section:
    results = facts["checks"] or []
    if not results:
        return Section("checks", "Asset checks of the month",
                       "No asset check result was recorded for this month: the checks have not run yet, so no "
                       "check-based assurance is given.")
    pending = [c for c in results if c.get("pending")]
    done = [c for c in results if not c.get("pending")]
    failed = [c for c in done if not c.get("passed")]
    blocking = [c for c in failed if str(c.get("severity", "")).upper() == "ERROR"]

    def names(items: list[Mapping[str, Any]]) -> str:
        return listing(f"{c.get('asset') or '?'}/{c.get('check') or '?'} ({c.get('partition') or 'no partition'})"
                       for c in items)

    head = (f"{len(done) - len(failed)} of {len(done)} checks passed"
            + (f"; failed: {names(failed)} ({len(blocking)} blocking)" if failed else "")
            + (f"; still running in this run when the card was written: {names(pending)} (their verdicts are in "
               "the sections above and on the asset pages)" if pending else "") + ".")
    rows = [(c.get("asset"), c.get("check"), c.get("partition") or "", c.get("severity"),
             "pending" if c.get("pending") else verdict(c.get("passed"))) for c in results]
    return Section("checks", "Asset checks of the month",
                   blocks(head, table(("asset", "check", "partition", "severity", "result"), rows)))
