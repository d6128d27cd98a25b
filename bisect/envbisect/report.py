"""Text, Markdown, HTML and JSON renderings of a stored run.

Everything here is a pure function of the run row and its probe rows as the store
returns them, so a report can be produced again at any time (``bisect report RUN``).
A report is a list of sections (:func:`sections`, :mod:`envbisect.report_parts`) written
to be pasted into an issue as it is: what was searched, the answer, the upstream compare
link when known, a chart of the numeric metric, the probe table, the diff between the
resolved environments on either side of the boundary, every metric in full, the output
of the probes either side of the boundary, the recipe's source, the host, and a
``Reproduce with:`` block. Markdown and the standalone HTML page render the same list.
"""

from __future__ import annotations

import errno
import json
import math
import os
from pathlib import Path

from envbisect import report_knobs, report_matrix, report_sampling, sourcerange
from envbisect.compare import Reference, brief, differences
from envbisect.errors import EXIT_ENVIRONMENT, ConfigError, EnvbisectError
from envbisect.signatures import Signature
from envbisect import report_parts as parts
from envbisect.host import describe as describe_host
from envbisect.redact import redact, redact_source
from envbisect.nightly import display as shown
from envbisect.nightly import nights_between
from envbisect.report_parts import Section

_STATUS_TEXT = {
    "found": "found",
    "not-reproduced": "not reproduced: the newest candidate is still good",
    "predates-range": "predates the range: the oldest candidate is already bad",
    "inconclusive": "inconclusive",
}


def boundary_keys(result: dict) -> tuple[str, str]:
    """(older key, newer key) of the boundary: last good/first bad, or last bad/first good."""
    return ("last_bad", "first_good") if result.get("find_fix") else ("last_good", "first_bad")


#: Run kinds rendered by :mod:`envbisect.report_matrix` (grids, timelines, culprits).
COMBO_KINDS = ("matrix", "date")


def headline(result: dict) -> str:
    if result.get("kind") == "narrow":
        return result.get("summary") or "narrow"
    if result.get("kind") in COMBO_KINDS:
        return report_matrix.headline(result)
    status = result.get("status", "?")
    pkg = result.get("package") or "?"
    old_key, new_key = boundary_keys(result)
    old, new = shown(result.get(old_key)), shown(result.get(new_key))
    what = "first good (fix)" if result.get("find_fix") else "first bad"
    kind = "nightly" if result.get("nightly") else "release"
    if status == "found":
        return f"{what} {kind} of {pkg}: {new} (last {'bad' if result.get('find_fix') else 'good'}: {old})"
    if status == "inconclusive" and old and new:
        between = ", ".join(shown(v) for v in result.get("untestable_between") or [])
        return f"{pkg}: changed between {old} and {new}; untestable in between: {between or 'none'}"
    old_word, new_word = ("bad", "good") if result.get("find_fix") else ("good", "bad")
    if result.get("stopped"):
        return f"{pkg}: inconclusive: both ends of the range failed the same way, nothing else was tried"
    if result.get("untestable_edge") == "old" and new:
        return f"{pkg}: inconclusive: {new} is {new_word}, and the older releases could not be tested"
    if result.get("untestable_edge") == "new" and old:
        return f"{pkg}: inconclusive: {old} is {old_word}, and the newer releases could not be tested"
    return f"{pkg}: {_STATUS_TEXT.get(status, status)}"


def metrics_brief(metrics: dict | None, limit: int = 60) -> str:
    """A short ``k=v`` rendering of the scalar metrics, for tables: numbers first, each
    string cut to 24 characters with an ellipsis, the whole cut at ``limit`` (no value is
    left out for its length; reports list every one in full)."""
    if not metrics:
        return ""
    numbers, texts = [], []
    for key, value in metrics.items():
        if isinstance(value, float):
            numbers.append(f"{key}={value:.4g}")
        elif isinstance(value, (int, bool)):
            numbers.append(f"{key}={value}")
        elif isinstance(value, str):
            texts.append(f"{key}={value if len(value) <= 24 else value[:23] + '…'}")
    text = ", ".join(numbers + texts)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def env_diff(before: dict | None, after: dict | None) -> list[tuple[str, str, str]]:
    """Packages whose resolved version differs: (name, before, after), '—' when absent."""
    before, after = before or {}, after or {}
    rows = []
    for name in sorted(set(before) | set(after)):
        a, b = before.get(name, "—"), after.get(name, "—")
        if a != b:
            rows.append((name, a, b))
    return rows


def _resolved_of(probes: list[dict], version: str | None) -> dict | None:
    for p in probes:
        if version is not None and p.get("version") == version and p.get("resolved"):
            return p["resolved"]
    return None


def hosts(probes: list[dict]) -> dict[str, tuple[str, str]]:
    """The machines the probes ran on, in order of first use: host id -> (a short name,
    "A", "B", ..., and its description). Rows reused from another run keep the host
    that ran them."""
    seen: dict[str, tuple[str, str]] = {}
    for p in probes:
        host = p.get("host")
        if host and host not in seen:
            fp = p.get("fingerprint") if isinstance(p.get("fingerprint"), dict) else None
            seen[host] = (_letters(len(seen)), describe_host(fp) if fp else f"host {host}")
    return seen


def _letters(n: int) -> str:
    return chr(ord("A") + n) if n < 26 else f"H{n + 1}"


def hosts_lines(probes: list[dict]) -> list[str]:
    """One line per machine: ``A: Linux 6.1 (glibc 2.36), x86_64, ..., no GPU detected``."""
    return [f"{short}: {text}" for short, text in hosts(probes).values()]


def numerics_lines(result: dict) -> list[str]:
    """The reference release, its outputs and tolerances, the outputs that diverged, and a
    failure signature with the probes that failed without it."""
    out = []
    ref = result.get("reference")
    if ref:
        out.append(f"reference: {ref['version']} (outputs {', '.join(sorted(ref['outputs']))}; "
                   f"rtol {ref['rtol']:g}, atol {ref['atol']:g})")
        if result.get("diverged_outputs"):
            out.append(f"diverged outputs: {', '.join(result['diverged_outputs'])}")
    if result.get("signature"):
        missed = result.get("not_signature") or []
        out.append(f"signature: {result['signature']['text']}; {len(missed)} probe(s) failed, but not with the signature"
                   + (f" ({versions_text(missed)})" if missed else ""))
    return out


def _outputs_of(p: dict, reference: dict | None) -> str:
    """A probe row's per-output differences from the run's reference, briefly."""
    if not reference or not (p.get("outputs") or p.get("comparison")):
        return ""
    return brief(differences(p.get("outputs"), p.get("comparison"), Reference(reference["version"],
                                                                             reference["outputs"])))


def probe_rows(probes: list[dict], reference: dict | None = None) -> list[dict]:
    """One display row per probe row: version, outcome, exit, metrics, duration, source,
    the host it ran on (the short name of :func:`hosts`) and, against a ``reference``
    (a result's), the differences of its outputs."""
    names = hosts(probes)
    rows = []
    for p in probes:
        if p.get("timed_out"):
            code = "timeout"
        elif p.get("signal") is not None:
            code = f"signal {p['signal']}"
        else:
            code = "" if p.get("exit_code") is None else str(p["exit_code"])
        rows.append({
            "seq": p.get("seq"), "attempt": p.get("attempt", 0), "version": shown(p.get("version")),
            "outcome": p.get("outcome"), "exit": code, "reason": p.get("reason") or "",
            "metrics": metrics_brief(p.get("metrics")),
            "duration": "" if p.get("duration_s") is None else f"{p['duration_s']:.2f}s",
            "source": "reused" if p.get("reused_from") else "run",
            "flaky": bool(p.get("flaky")),
            "host": names.get(p.get("host") or "", ("", ""))[0],
            "outputs": _outputs_of(p, reference),
        })
    return rows


def probe_table(probes: list[dict], reference: dict | None = None) -> list[str]:
    """The Markdown table of every probe row (with an outputs column against a reference)."""
    extra = ("| outputs ", "|---") if reference else ("", "")
    lines = [f"| # | version | outcome | exit | metrics {extra[0]}| time | host | |",
             f"|---|---|---|---|---{extra[1]}|---|---|---|"]
    for r in probe_rows(probes, reference):
        cell = f" {r['outputs']} |" if reference else ""
        lines.append(f"| {r['seq']}{'.' + str(r['attempt']) if r['attempt'] else ''} | {r['version']} | "
                     f"{r['outcome']}{' (flaky)' if r['flaky'] else ''} | {r['exit']} | {r['metrics']} |{cell} "
                     f"{r['duration']} | {r['host']} | {r['source']} |")
    legend = hosts_lines(probes)
    return lines + (["", *(f"Host {line}" for line in legend)] if legend else [])


def summary_lines(run: dict, probes: list[dict]) -> list[str]:
    """The head of a version bisection's report: the answer and what limits it."""
    result = run.get("result") or {}
    old_key, new_key = boundary_keys(result)
    lines = [f"### envbisect: {headline(result)}", ""]
    lines.append(report_matrix.recipe_line(run))
    spec = result.get("range") or run.get("spec") or "all releases"
    lines.append(f"- **Searched:** `{result.get('package')}` {spec}, {result.get('candidates', '?')} candidates "
                 f"for {result.get('target', '?')}" + (f", with {', '.join(result['with'])}" if result.get("with") else ""))
    lines.append(f"- **Result:** {result.get('status')} — {old_key.replace('_', ' ')} **{result.get(old_key) or '—'}**, "
                 f"{new_key.replace('_', ' ')} **{result.get(new_key) or '—'}**")
    lines += [f"- **{line.split(':', 1)[0]}:**{line.split(':', 1)[1]}" for line in caveats(result)]
    lines += [f"- **{line.split(':', 1)[0]}:**{line.split(':', 1)[1]}" for line in numerics_lines(result)]
    if result.get("flaky"):
        lines.append(f"- **Flaky (runs disagreed, never used as a boundary):** {', '.join(result['flaky'])}")
    return lines + [f"- {line}" for line in nightly_lines(result)]


def diff_lines(run: dict, probes: list[dict]) -> list[str]:
    """The resolved-environment diff across the boundary, as a Markdown table."""
    result = run.get("result") or {}
    old_key, new_key = boundary_keys(result)
    diff = env_diff(_resolved_of(probes, result.get(old_key)), _resolved_of(probes, result.get(new_key)))
    if not diff:
        return []
    return ([f"Resolved environments, {result.get(old_key)} → {result.get(new_key)}:", "",
             "| package | before | after |", "|---|---|---|"] + [f"| {n} | {a} | {b} |" for n, a, b in diff])


def sections(run: dict, probes: list[dict]) -> list[Section]:
    """The sections of a run's report, in order (see :mod:`envbisect.report_parts`)."""
    result = run.get("result") or {}
    old_key, new_key = boundary_keys(result)
    if run.get("kind") == "narrow":  # the knobs of a bad environment (report_knobs)
        head = [Section(report_knobs.markdown(run, probe_table(probes)).rstrip("\n").splitlines())]
        counted = f"{len(probes)} probe rows"
    elif run.get("kind") in COMBO_KINDS:
        head = [Section(report_matrix.body(run, probes, probe_table(probes))), parts.chart_section(run, probes)]
        counted = f"{len(probes)} probe rows"
    else:
        head = [Section(summary_lines(run, probes)), parts.chart_section(run, probes),
                Section(probe_table(probes, result.get("reference"))),
                Section(report_sampling.markdown_lines(result)[1:]),  # --samples auto: the samples per probe
                Section(diff_lines(run, probes)), Section(sourcerange.markdown_lines(result)[1:]),  # compare links
                Section(report_matrix.culprit_section(result, markdown=True)[1:]),  # when a result carries one
                Section(report_knobs.knob_lines(result, markdown=True)[1:])]  # after `bisect narrow`
        counted = f"{len(result.get('probes') or [])} probes"
    return [*head, parts.metrics_section(run, probes), parts.tails_section(run, probes, old_key, new_key),
            parts.recipe_section(run, probes),
            Section(report_matrix.footer(run, counted, parts.reproduce_note(result))[1:])]


def markdown(run: dict, probes: list[dict]) -> str:
    """The self-contained Markdown report of a run (fit to paste in an issue)."""
    return redact(parts.render_markdown(sections(run, probes)))


def html_page(run: dict, probes: list[dict]) -> str:
    """The report as one standalone HTML page (:mod:`envbisect.report_html`)."""
    from envbisect import report_html

    return report_html.page(f"envbisect: {headline(run.get('result') or {})}", sections(run, probes))


def nightly_lines(result: dict) -> list[str]:
    """What a result says about nightlies: the channel used, nights without a build
    next to the boundary, and the nightly phase that followed a release search."""
    lines = []
    channel = result.get("nightly")
    if channel:
        variant = f"variant {channel['variant']} ({channel['variant_source']})" if channel.get("variant") else "no variants"
        lines.append(f"nightly channel: {variant}; {channel.get('builds')} builds {channel.get('first')} .. "
                     f"{channel.get('last')}" + (f", window {channel['window']}" if channel.get("window") else ""))
        old_key, new_key = boundary_keys(result)
        gaps = nights_between(channel, result.get(old_key), result.get(new_key))
        if gaps:
            lines.append(f"no build on {', '.join(gaps)} (between the boundary nightlies)")
    if result.get("release_run"):
        lines.append(f"nightly phase of the release search in run {result['release_run']}")
    phase = result.get("nightly_phase")
    if phase:
        if phase.get("status") == "not-run":
            lines.append(f"nightly phase: not run ({phase.get('reason')})")
        else:
            lines.append(f"nightly phase (run {phase.get('run_id')}): {headline(phase)}")
            lines += [f"  {line}" for line in nightly_lines({k: v for k, v in phase.items() if k != "release_run"})]
            lines += [f"  reproduce: {cmd}" for cmd in phase.get("reproduce") or []]
    return lines


def versions_text(versions: list[str], limit: int = 6) -> str:
    """``1.0, 1.1 and 1.2``; long lists shortened to their ends."""
    shown_ = [shown(v) for v in versions]
    if len(shown_) > limit:
        shown_ = [*shown_[:limit - 2], f"… ({len(versions) - limit + 1} more)", shown_[-1]]
    return shown_[0] if len(shown_) == 1 else f"{', '.join(shown_[:-1])} and {shown_[-1]}"


def caveats(result: dict) -> list[str]:
    """What limits the answer, one line each: an early stop, untestable candidates
    grouped by reason, releases left out between the boundary, and the hint."""
    lines = []
    stopped = result.get("stopped")
    if stopped:
        lines.append(f"stopped: both ends of the range are untestable for the same reason ({stopped['reason']}); "
                     f"{stopped['fix']}")
    groups = result.get("untestable_groups")
    if groups is None:  # results stored before reasons were grouped
        groups = [{"reason": u["reason"], "versions": [u["version"]]} for u in result.get("untestable") or []]
    for g in groups:
        lines.append(f"untestable: {versions_text(g['versions'])}: {g['reason']}")
    between = result.get("excluded_between") or []
    if between:
        old_key, new_key = boundary_keys(result)
        reasons = sorted({e["reason"] for e in between})
        lines.append(f"not tested: {versions_text([e['version'] for e in between])} ({', '.join(reasons)}) "
                     f"lie between {shown(result.get(old_key))} and {shown(result.get(new_key))}")
    if result.get("hint"):
        lines.append(f"hint: {result['hint']}")
    return lines


def text_summary(result: dict) -> list[str]:
    """The lines ``bisect run`` (and ``bisect matrix``) print at the end."""
    if result.get("kind") == "narrow":
        return report_knobs.text_lines(result)
    if result.get("kind") in COMBO_KINDS:
        return report_matrix.text_lines(result)
    lines = [headline(result)]
    lines += [f"  {line}" for line in nightly_lines(result)]
    lines += [f"  {line}" for line in caveats(result)]
    lines += [f"  {line}" for line in numerics_lines(result)]
    if result.get("flaky"):
        lines.append(f"  flaky (runs disagreed): {', '.join(result['flaky'])}")
    lines += [f"  {line}" for line in sourcerange.summary_lines(result)]
    lines.append(f"  probes: {len(result.get('probes') or [])} used, {result.get('executed', 0)} executed, "
                 f"{result.get('candidates', '?')} candidates, {result.get('duration_s', 0):.1f} s; run {result.get('run_id')}")
    lines += report_knobs.knob_lines(result, markdown=False)
    for cmd in result.get("reproduce") or []:
        lines.append(f"  reproduce: {cmd}")
    return [redact(line) for line in lines]


def finite(value):
    """``value`` with every NaN / infinite float replaced by the string ``"NaN"``,
    ``"Infinity"`` or ``"-Infinity"``: JSON has no such numbers, and Python's default
    output (bare ``NaN``) is rejected by strict parsers. Stored metrics keep the floats,
    so a NaN still judges as a divergence."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def dumps(value, **options) -> str:
    """Strict JSON for output (see :func:`finite`), credentials redacted."""
    return redact(json.dumps(finite(value), allow_nan=False, default=str, **options))


def judged_rows(result: dict, probes: list[dict]) -> list[dict]:
    """Probe rows with, against the run's reference, ``output_diffs`` per output and, under a
    signature, ``signature_matched`` (both re-derived from what the row stores)."""
    ref, sig = result.get("reference"), result.get("signature")
    rows = []
    for p in probes:
        row = dict(p)
        if ref and (p.get("outputs") or p.get("comparison")):
            row["output_diffs"] = differences(p.get("outputs"), p.get("comparison"),
                                              Reference(ref["version"], ref["outputs"]))
        if sig and p.get("exit_code") is not None:
            row["signature_matched"] = Signature(sig.get("pattern"), sig.get("exception")).matches(
                p.get("stdout_tail") or "", p.get("stderr_tail") or "")
        rows.append(row)
    return rows


def as_json(run: dict, probes: list[dict]) -> str:
    if run.get("recipe_text"):  # secret-looking values hidden, as in the Markdown report
        run = dict(run, recipe_text=redact_source(run["recipe_text"]))
    payload = dict(run.get("result") or {}, run=run, probe_rows=judged_rows(run.get("result") or {}, probes))
    return dumps(payload, indent=2, sort_keys=True)


def write(text: str, path: Path) -> None:
    """Write a rendering to ``path`` (the only file I/O this module does), whole or not at
    all: a regular file (or a new one) is written beside it under a temporary name and
    renamed over it, so a full disk or a kill leaves what was there as it was; anything
    else (``/dev/stdout``, a FIFO a reader holds open) is written directly. A path that
    cannot be written is one error line: :class:`ConfigError` (a directory, a missing
    folder, no permission), or exit 6 for a full disk."""
    data = text.encode("utf-8")
    try:
        if os.path.exists(path) and not os.path.isfile(path) and not os.path.isdir(path):
            with open(path, "wb") as fh:
                fh.write(data)
            return
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise EnvbisectError(f"no space left to write {path}; free some space or pass another --output",
                                 exit_code=EXIT_ENVIRONMENT) from None
        raise ConfigError(f"cannot write {path} ({exc.strerror or exc}); pass another --output") from None
