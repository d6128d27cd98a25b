"""``bisect.toml`` validation, durations, and the daemon's pure schedule/state helpers.

Recipes are real files in a temporary directory (the config checks they parse); nothing
runs, nothing touches the network.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import pytest

from envbisect.errors import ConfigError
from envbisect.records import utc_now
from envbisect.trackers import IssueRef
from envbisect.watch import Known, WatchState, due_in
from envbisect.watchconfig import DEFAULT_EVERY_S, WatchSpec, parse_config, parse_duration
from envbisect.watchdaemon import _MaskSecrets

RECIPE = """# /// script
# dependencies = ["planted"]
# [tool.envbisect]
# {tool}
# ///
import sys
sys.exit(0)
"""


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "with_pkg.py").write_text(RECIPE.format(tool='package = "planted"'))
    (tmp_path / "recipes" / "no_pkg.py").write_text(RECIPE.format(tool="timeout = 30"))
    return tmp_path


def _errors(text: str, base: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, base=base, source="bisect.toml")
    message = str(info.value)
    count = int(re.search(r"has (\d+) mistake", message).group(1))
    lines = [line.strip() for line in message.splitlines()[1:]]
    assert len(lines) == count
    return lines


def test_full_watch_is_parsed(base):
    [spec] = parse_config(
        '[[watch]]\nname = "metal"\nrecipe = "recipes/no_pkg.py"\npackage = "tensorflow-metal"\n'
        'with = ["tensorflow==2.18.1", "numpy"]\nindex-url = "https://idx.example/simple"\n'
        'issue = "octo/demo#12"\nevery = "1h30m"\npre = true\n', base=base)
    assert spec == WatchSpec("metal", (base / "recipes" / "no_pkg.py").resolve(), "tensorflow-metal",
                             ("tensorflow==2.18.1", "numpy"), "https://idx.example/simple",
                             IssueRef("octo", "demo", 12), 5400.0, True, 1)


def test_defaults_name_from_the_recipe_and_package_from_its_tool_table(base):
    first, second = parse_config('[[watch]]\nrecipe = "recipes/with_pkg.py"\n\n'
                                 '[[watch]]\nname = "other"\nrecipe = "recipes/with_pkg.py"\n', base=base)
    assert (first.name, first.package, first.every_s, first.issue, first.pre) == \
        ("with_pkg", "planted", DEFAULT_EVERY_S, None, False)
    assert (second.name, second.line) == ("other", 4)


@pytest.mark.parametrize("value, seconds", [("6h", 21600), ("1h30m", 5400), ("90s", 90), ("2d", 172800),
                                            ("1w", 604800), ("6 h", 21600), (45, 45), (0.5, 0.5), ("1.5m", 90)])
def test_durations(value, seconds):
    assert parse_duration(value) == seconds


@pytest.mark.parametrize("value", ["soon", "", "6", "h", "-5m", "0s", 0, -1, True, [], "6h later"])
def test_bad_durations(value):
    with pytest.raises(ValueError):
        parse_duration(value)


def test_every_mistake_is_reported_at_once_with_its_line(base):
    text = (
        "# header comment\n"                      # 1
        "[[watch]]\n"                             # 2
        'recipe = "recipes/missing.py"\n'         # 3
        'every = "soon"\n'                        # 4
        "pre = 1\n"                               # 5
        "\n"                                      # 6
        "[[watch]]  # second\n"                   # 7
        'recipe = "recipes/no_pkg.py"\n'          # 8
        '"index-url" = "ftp://x"\n'               # 9
        'issue = "octo/demo"\n'                   # 10
        "with = \"numpy\"\n"                      # 11
        "\n"                                      # 12
        "[[watch]]\n"                             # 13
        'name = "bad name!"\n'                    # 14
        'recipe = "recipes/with_pkg.py"\n'        # 15
        "with = [\"ok\", 3, \"no good==\"]\n"     # 16
        "colour = \"blue\"\n"                     # 17
    )
    errors = _errors(text, base)
    assert [e.split(":")[1] for e in errors] == ["3", "4", "5", "7", "9", "10", "11", "14", "16", "16", "17"]
    joined = "\n".join(errors)
    for needle in ("watch[1].recipe: recipe", "watch[1].every: 'soon' is not a duration", "watch[1].pre: must be",
                   "watch[2]: no package to watch", "watch[2].index-url: 'ftp://x'", "watch[2].issue: issue",
                   "watch[2].with: must be a list", "watch[3].name:", "watch[3].with: 3 is not",
                   "watch[3].with: 'no good==' is not", "watch[3].colour: unknown key"):
        assert needle in joined, joined


def test_missing_recipe_key_points_at_the_table_header(base):
    errors = _errors('[[watch]]\npackage = "x"\n\n[[watch]]\nrecipe = "recipes/with_pkg.py"\nrecipee = 1\n', base)
    assert errors == ["bisect.toml:1: watch[1]: missing required key 'recipe'",
                      "bisect.toml:6: watch[2].recipee: unknown key; did you mean 'recipe'?"]


def test_duplicate_names_name_both_lines(base):
    errors = _errors('[[watch]]\nrecipe = "recipes/with_pkg.py"\n[[watch]]\nrecipe = "recipes/with_pkg.py"\n', base)
    assert errors == ["bisect.toml:3: name: watch name 'with_pkg' is used twice (also at line 1); "
                      "give each watch its own name"]


@pytest.mark.parametrize("text, needle", [
    ("", "bisect.toml:1: watch: no [[watch]] table"),
    ('watch = "x"\n', "bisect.toml:1: watch: must be an array of tables"),
    ('title = "x"\n[[watch]]\nrecipe = "recipes/with_pkg.py"\n', "bisect.toml:1: title: unknown top-level key"),
    ("[watch]\nrecipe = 1\n", "watch: must be an array of tables"),
])
def test_top_level_mistakes(base, text, needle):
    assert needle in "\n".join(_errors(text, base))


def test_toml_syntax_error_keeps_tomllibs_position(base):
    with pytest.raises(ConfigError, match=r"bisect.toml is not valid TOML: .*line 3"):
        parse_config('[[watch]]\nrecipe = "a"\nevery = \n', base=base, source="bisect.toml")


def test_due_in_follows_the_last_check_and_the_interval(base):
    [spec] = parse_config('[[watch]]\nrecipe = "recipes/with_pkg.py"\nevery = "1h"\n', base=base)
    now = time.time()
    assert due_in(spec, None, now) == 0.0
    assert due_in(spec, {"last_check": None}, now) == 0.0
    remaining = due_in(spec, {"last_check": utc_now()}, now)
    assert 3590 < remaining <= 3600.5
    assert due_in(spec, {"last_check": utc_now()}, now + 7200) < 0


def test_watch_state_round_trips_through_its_json():
    state = WatchState(Known("1.2", "good"), Known("1.8", "bad"), [{"run_id": 3, "issue": "o/r#1", "kind": "fix"}])
    again = WatchState.load({"state": state.dump()})
    assert again == state
    assert WatchState.load(None) == WatchState() == WatchState.load({"state": None})


def test_log_filter_masks_the_token_and_url_credentials(monkeypatch):
    monkeypatch.setenv("GITHUB_TOKEN", "s3cr3t-token")
    record = logging.LogRecord("envbisect.watch", logging.INFO, __file__, 1,
                               "posting with %s via %s\nsecond line", ("s3cr3t-token", "https://u:pw@idx/simple"), None)
    assert _MaskSecrets().filter(record)
    assert record.getMessage() == "posting with *** via https://***@idx/simple second line"


def test_log_filter_keeps_a_commenters_escape_sequences_off_the_terminal():
    # A request's error quotes the comment that asked: any GitHub user can write one.
    record = logging.LogRecord("envbisect.watch", logging.WARNING, __file__, 1, "[listen o/r] cannot run: %s",
                               ("--good '1.0\x1b[2J\x1b]52;c;ZXZpbA==\x07' is not a version\u202e",), None)
    assert _MaskSecrets().filter(record)
    assert record.getMessage() == "[listen o/r] cannot run: --good '1.0' is not a version\\u202e"


WATCH = '[[watch]]\nrecipe = "recipes/with_pkg.py"\n'


def test_executor_table_sets_where_the_daemon_probes(base):
    from envbisect.watchconfig import parse_file

    specs, executor = parse_file(WATCH + '[executor]\nkind = "dask"\nscheduler = "tcp://10.0.0.5:8786"\njobs = 3\n',
                                 base=base)
    assert len(specs) == 1
    assert (executor.kind, executor.scheduler, executor.jobs, executor.prefetch) == ("dask", "tcp://10.0.0.5:8786", 3, 2)
    _, default = parse_file(WATCH, base=base)
    assert (default.kind, default.jobs, default.scheduler) == ("local", 1, None)


@pytest.mark.parametrize("table, needle", [
    ('[executor]\nkind = "slurm"\n', "executor: kind: must be"),
    ('[executor]\nkind = "dask"\n', 'kind = "dask" needs scheduler'),
    ('[executor]\njobs = 0\n', "executor: jobs: must be a whole number of at least 1"),
    ('[executor]\njobs = "3"\n', "executor: jobs: must be"),
    ('[executor]\nworkers = 3\n', "executor: workers: unknown key"),
    ('executor = 3\n', "executor: must be a table"),
])
def test_executor_table_mistakes_are_reported(base, table, needle):
    text = (table + WATCH) if not table.startswith("[") else (WATCH + table)
    errors = _errors(text, base)
    assert any(needle in e for e in errors), errors
