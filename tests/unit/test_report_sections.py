"""The pure parts of self-contained reports: chart, sections, HTML page, reproduce lines,
plain progress lines, and the cache's inode accounting and prune plan."""

from __future__ import annotations

import io
import os
import re

from rich.console import Console

from envbisect import report, report_html
from envbisect.cacheusage import Usage, plan, scan
from envbisect.plan import Cutoff
from envbisect.policy import Judgement, Outcome
from envbisect.progress import Progress
from envbisect.recipes import shown_path
from envbisect.report_chart import chart_for, mermaid, svg
from envbisect.report_parts import Section, fenced, metrics_section, recipe_section, render_markdown
from envbisect.reproduce import index_args, uv_run
from envbisect.search import Verdict


def _probe(version, value, outcome="good", **extra):
    return {"version": version, "outcome": outcome, "metrics": {"max_abs_diff": value, "ok": True}, **extra}


RESULT = {"kind": "bisect", "package": "planted", "status": "found", "last_good": "1.9", "first_bad": "1.10",
          "probes": [_probe("1.10", 41.5, "bad"), _probe("1.2", 0.0), _probe("1.9", 1e-7),
                     _probe("2.0", float("nan"), "bad")]}


def test_chart_orders_versions_and_leaves_out_what_is_not_finite():
    chart = chart_for(RESULT)
    assert chart.metric == "max_abs_diff" and chart.axis == "planted"
    assert [p.label for p in chart.points] == ["1.2", "1.9", "1.10"]  # by version, not text
    assert chart.left_out == ("2.0",)
    lines = mermaid(chart)
    assert lines[0] == "```mermaid" and lines[1] == "xychart-beta"
    assert '    x-axis "planted" ["1.2", "1.9", "1.10"]' in lines and "    line [0, 1e-07, 41.5]" in lines
    assert any("Not drawn" in ln and "2.0" in ln for ln in lines)


def test_chart_prefers_the_threshold_metric_and_date_runs_chart_days():
    probes = [{"version": "2024-02-01", "cutoff": "2024-02-02T00:00:00Z", "outcome": "bad",
               "metrics": {"count": 3, "rtol": 0.5}},
              {"version": "2024-01-05", "cutoff": "2024-01-06T00:00:00Z", "outcome": "good",
               "metrics": {"count": 1, "rtol": 0.1}}]
    chart = chart_for({"kind": "date", "probes": probes}, preferred=["rtol"])
    assert chart.metric == "rtol" and chart.axis == "day"
    assert [p.label for p in chart.points] == ["2024-01-06", "2024-02-02"]
    assert chart_for({"probes": [{"version": "1", "metrics": {"ok": True, "s": "x"}}]}) is None  # no numbers


def test_svg_has_one_point_per_probe_and_escapes_labels():
    chart = chart_for({"package": "p<b>", "probes": [_probe("1.0", 1.0), _probe("1.1", 2.0, "bad")]})
    text = svg(chart)
    assert len(re.findall(r'<circle class="point"', text)) == 2
    assert "p&lt;b&gt;" in text and "<b>" not in text


def test_metrics_section_keeps_every_value_in_full():
    long = "GPU:0 | a device name much longer than twenty-four characters"
    section = metrics_section({}, [{"seq": 1, "version": "1.0", "metrics": {"device": long, "d": 0.1 + 0.2}}])
    text = "\n".join(section.lines)
    assert long.replace("|", "\\|") in text and "0.30000000000000004" in text
    assert section.summary and "Metrics" in section.summary


def test_fences_outlast_backticks_and_collapsed_sections_render_as_details():
    assert fenced("a ```` b", "python")[0] == "`````python"
    md = render_markdown([Section(["# head"]), Section(), Section(["body"], summary="More <stuff>")])
    assert md == "# head\n\n<details><summary>More &lt;stuff&gt;</summary>\n\nbody\n\n</details>\n"


def test_recipe_section_says_when_the_text_was_not_recorded():
    assert "not recorded" in recipe_section({"recipe_path": "/x/r.py"}, []).lines[0]
    shown = recipe_section({"recipe_text": "print(1)\n", "recipe_hash": "ab" * 32, "result": {"recipe": "r.py"}}, [])
    assert shown.summary.startswith("Recipe r.py") and shown.lines == ["```python", "print(1)", "```"]


def test_html_page_never_passes_foreign_html_through():
    run = {"id": 1, "kind": "bisect", "recipe_text": "print('<script>alert(1)</script>')\n",
           "result": dict(RESULT, reproduce=["uv run r.py"])}
    probes = [{"seq": 1, "version": "1.10", "outcome": "bad", "reason": "<script>alert(2)</script>",
               "stderr_tail": "<img src=x onerror=alert(3)>", "metrics": {"max_abs_diff": 41.5}}]
    page = report_html.page("t", report.sections(run, probes))
    assert "<script" not in page and "<img" not in page and "&lt;img src=x" in page and "&lt;script&gt;alert(1)" in page
    assert page.count('<circle class="point"') == 3 and "<details>" in page


def test_reproduce_lines_carry_the_index_and_the_cutoff():
    assert index_args({"index_url": "https://pypi.org/simple"}) == []
    index = {"index_url": "http://127.0.0.1:9/simple", "extra_index_urls": ["http://***@h/x"], "find_links": []}
    line = uv_run("recipes/r.py", ["planted==1.6"], Cutoff("2024-01-01T00:00:00Z", ("planted=2100-01-01T00:00:00Z",)),
                  index)
    assert line == ("uv run --index-url http://127.0.0.1:9/simple --extra-index-url 'http://***@h/x' "
                    "--exclude-newer 2024-01-01T00:00:00Z --exclude-newer-package planted=2100-01-01T00:00:00Z "
                    "--with planted==1.6 recipes/r.py")


def test_recipe_paths_are_shown_relative_under_the_current_directory(tmp_path):
    (tmp_path / "sub").mkdir()
    assert shown_path(tmp_path / "sub" / "r.py", cwd=tmp_path) == "sub/r.py"
    assert shown_path(tmp_path / "r.py", cwd=tmp_path / "sub") == str(tmp_path / "r.py")


def test_progress_without_a_terminal_is_one_plain_line_per_probe():
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=False, width=40)
    with Progress(console, enabled=True) as progress:
        for step, label in enumerate(["1.0", "1.9"], start=1):
            progress.probe_started(label, step, 3)
            progress.probe_finished(label, Judgement(Outcome.BAD, Verdict.BAD, "exit 1:\nlong reason " * 4), False)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 2 and lines[0].startswith("probe 1 of ~3: 1.0: bad exit 1: long reason")
    assert "\x1b" not in buf.getvalue()
    quiet = io.StringIO()
    with Progress(Console(file=quiet), enabled=False) as progress:
        progress.probe_started("1.0", 1, 3)
        progress.probe_finished("1.0", Judgement(Outcome.GOOD, Verdict.GOOD, "exit 0"), False)
        progress.note("resuming")
    assert quiet.getvalue() == ""


def test_cache_usage_counts_hardlinks_once(tmp_path):
    (tmp_path / "uv" / "archive").mkdir(parents=True)
    (tmp_path / "envs" / "k1" / "lib").mkdir(parents=True)
    (tmp_path / "uv" / "archive" / "mod.py").write_bytes(b"x" * 1000)
    os.link(tmp_path / "uv" / "archive" / "mod.py", tmp_path / "envs" / "k1" / "lib" / "mod.py")
    (tmp_path / "envs" / "k1" / "own.txt").write_bytes(b"y" * 10)
    usage = scan(tmp_path)
    assert usage.total == 1010 and usage.size_of("env") == 1010 and usage.size_of("uv") == 1000
    assert usage.freed({"env:k1"}) == 10 and usage.freed({"env:k1", "uv"}) == 1010
    assert scan(tmp_path / "missing").total == 0


def test_prune_plan_removes_the_least_needed():
    usage = Usage({(0, 1): (100, frozenset({"env:a"})), (0, 2): (100, frozenset({"env:b"})),
                   (0, 3): (500, frozenset({"env:a", "env:b", "uv"})), (0, 4): (50, frozenset({"results"}))})
    assert plan(usage, ["a", "b"], 10_000).envs == ()
    assert plan(usage, ["a", "b"], 650) == plan(usage, ["a", "b"], 650).__class__(("a",), False, 650, True)
    shared = plan(usage, ["a", "b"], 200)  # envs alone free 200 of 750: the uv cache must go too
    assert shared.clean_uv and shared.envs == ("a", "b") and shared.fits and shared.size_after == 50
    assert not plan(usage, ["a"], 10).fits


def test_history_columns_fit_the_width_and_the_answer_takes_the_rest():
    from envbisect.cli_records import column_widths

    header = ["run", "kind", "recipe", "package", "status", "answer", "probes", "started"]
    rows = [["12", "bisect", "a_rather_long_recipe_file_name.py", "tensorflow-metal", "done",
             "first bad release of tensorflow-metal: 1.2.0 (last good: 1.1.0)", "9", "11-27 20:39"]]
    for total in (80, 74):
        widths = column_widths(header, rows, total)
        assert sum(widths) + 2 * (len(header) - 1) <= total and min(widths) >= 3
    assert column_widths(header, rows, 200)[5] == len(rows[0][5])  # room enough: nothing cut


def test_the_brief_metrics_of_tables_put_numbers_first_and_cut_long_strings():
    text = report.metrics_brief({"device": "x" * 40, "d": 0.5})
    assert text == "d=0.5, device=" + "x" * 23 + "…"
    assert report.metrics_brief({"a": "y" * 30, "b": "z" * 30}, limit=30).endswith("…")


def test_the_recipe_source_in_a_report_hides_secret_looking_values():
    token = "ghp_" + "a1B2" * 9
    source = (f'GITHUB_TOKEN = "{token}"\nopts = {{"api_key": \'k-123\', "rtol": "1e-3"}}\n'
              f"# pasted: {token}\nurl = 'https://user:pw@host/simple'\nprint('tokenizer', 1)\n")
    lines = recipe_section({"recipe_text": source, "recipe_hash": "0" * 64}, []).lines
    text = "\n".join(lines)
    assert token not in text and "k-123" not in text and ":pw@" not in text
    assert 'GITHUB_TOKEN = "***"' in text and '"rtol": "1e-3"' in text and "print('tokenizer', 1)" in text
