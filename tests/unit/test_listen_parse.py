"""The pure parts of listening on issues: ``[[listen]]`` validation, request parsing (the
whitelist of options and recipe keys) and the answers' markers and bodies."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from envbisect.errors import ConfigError
from envbisect.listen import LimitReached, _Progress
from envbisect.listenconfig import DEFAULT_ASSOCIATIONS, ListenSpec
from envbisect.listenreply import (DONE, RUNNING, answer_of, denial_of, denied, denied_key, final, invalid, progress,
                                   recipe_block, request_key)
from envbisect.listenreq import RequestInvalid, is_request, parse_request
from envbisect.requests_model import DepsMode
from envbisect.watchconfig import parse_daemon

RECIPE = """# /// script
# dependencies = ["planted"]
# [tool.envbisect]
# package = "planted"
{extra}# ///
import sys
sys.exit(0)
"""


def _body(options: str = "", extra: str = "", fence: str = "```python") -> str:
    return f"/envbisect run {options}\nWhy: it broke.\n{fence}\n{RECIPE.format(extra=extra)}```\n"


def _parse(body: str):
    return parse_request(body, Path("request.py"))


def _invalid(body: str) -> str:
    with pytest.raises(RequestInvalid) as info:
        _parse(body)
    assert "\n" not in str(info.value)
    return str(info.value)


# ----------------------------------------------------------------- requests


def test_a_request_is_the_command_on_its_first_line_only() -> None:
    assert is_request("/envbisect run --package x") and is_request("\n  /envbisect run\n")
    assert not is_request("please /envbisect run this") and not is_request("/envbisect running")
    assert not is_request("> /envbisect run")


def test_options_and_recipe_are_parsed_with_the_recipe_defaults() -> None:
    req = _parse(_body("--good 1.4 --bad=1.8 --with numpy==1.26.4 --deps as-of-release --regress crash "
                       "--threshold 'max_abs_diff>1e-3' --retries 1 --timeout 30 --find-fix --pre"))
    assert (req.package, req.good, req.bad, req.with_) == ("planted", "1.4", "1.8", ("numpy==1.26.4",))
    assert req.deps is DepsMode.AS_OF_RELEASE and req.regress.value == "crash" and req.find_fix and req.pre
    assert req.timeout == 30 and req.retries == 1 and str(req.thresholds[0]) == "max_abs_diff>0.001"
    assert req.recipe.text == RECIPE.format(extra="") and len(req.recipe.hash) == 64
    assert req.tokens[0] == "--good"


@pytest.mark.parametrize("options, needle", [
    ("--index-url http://evil/simple", "--index-url cannot be set by a request"),
    ("--python /tmp/py", "--python cannot be set by a request"),
    ("--allow-build", "--allow-build cannot be set"),
    ("--cache-dir /", "--cache-dir cannot be set"),
    ("--good banana", "--good 'banana' is not a version"),
    ("--range '>=one'", "--range '>=one' is not valid"),
    ("--deps sometimes", "--deps 'sometimes' is not valid; use one of: latest, as-of-release"),
    ("--regress maybe", "use one of: exit, error, crash"),
    ("--threshold nonsense", "nonsense"),
    ("--timeout -1", "--timeout -1 is not a positive number"),
    ("--timeout inf", "--timeout inf is not a positive number"),
    ("--retries 9", "--retries"),
    ("--good 'unclosed", "close every quote"),
    ("stray", "unexpected extra argument"),
])
def test_a_bad_option_is_one_sentence_naming_it(options: str, needle: str) -> None:
    assert needle in _invalid(_body(options))


@pytest.mark.parametrize("extra, key", [
    ('# index-url = "http://evil/simple"\n', "index-url"), ('# env = ["HOME"]\n', "env"),
    ('# python = "3.12"\n', "python"), ('# nightly-index = "http://evil/simple"\n', "nightly-index"),
])
def test_a_recipe_may_not_choose_where_code_comes_from(extra: str, key: str) -> None:
    assert f"sets {key}, which a request may not set" in _invalid(_body(extra=extra))


def test_the_recipe_is_required_once_and_must_be_valid() -> None:
    assert "no recipe" in _invalid("/envbisect run --package planted\nno code here")
    assert "more than one fenced block" in _invalid(_body() + "```\nmore\n```\n")
    assert "recipe" in _invalid(_body(fence="```python").replace("# /// script", "# no block"))
    assert "no package to bisect" in _invalid(_body().replace('# package = "planted"\n', ""))


def test_a_recipe_with_backticks_is_shown_in_a_longer_fence() -> None:
    block = recipe_block('print("```")\n', "ab" * 32)
    assert "````python" in block and "abababababababab" in block


# ------------------------------------------------------------------ answers


def test_markers_name_the_request_and_its_state() -> None:
    key = request_key("octo/demo", 1234)
    running = progress(key, "maria", "/envbisect run", "code", "f" * 64, ["`1.4`: good"])
    done = final(key, "maria", "/envbisect run", "code", "f" * 64, "found", "details")
    assert answer_of(running) == (key, RUNNING) and answer_of(done) == (key, DONE)
    assert answer_of(invalid(key, "maria", "no recipe")) == (key, DONE)
    assert answer_of("a human comment") is None
    refusal = denied(denied_key("octo/demo", 7, "Mallory"), "Mallory", "owner or @carol")
    assert denial_of(refusal) == "octo/demo/7/mallory" and answer_of(refusal) is None
    assert "owner or @carol" in refusal


def test_answers_mask_credentials() -> None:
    body = final("k", "maria", "/envbisect run", "URL = 'https://user:pw@host/simple'\n", "f" * 64, "failed", "x")
    assert "user:pw" not in body


# ------------------------------------------------------------------- config


def test_listen_tables_default_to_maintainers_and_allow_authors() -> None:
    specs, _executor, [spec] = parse_daemon('[[listen]]\nrepository = "octo/demo"\nauthors = ["carol"]\n'
                                            'max-wall = "30m"\n', base=Path("."))
    assert specs == [] and spec.associations == DEFAULT_ASSOCIATIONS and spec.max_wall_s == 1800
    assert spec.allows("Carol", "NONE") and spec.allows("x", "MEMBER") and not spec.allows("x", "CONTRIBUTOR")
    assert spec.who_may_ask() == "owner, member, collaborator or @carol"
    assert not ListenSpec("a/b", associations=()).allows("x", "OWNER")


def test_listen_mistakes_are_reported_with_their_lines() -> None:
    text = ('[[listen]]\nrepository = "not a repo"\nmax-probes = 0\npoll = "soon"\nlabel = ["x"]\n'
            'associations = ["BOSS"]\n[[listen]]\nauthors = ["bob"]\n')
    with pytest.raises(ConfigError) as info:
        parse_daemon(text, base=Path("."))
    message = str(info.value)
    for line in ("bisect.toml:2: listen[1].repository: 'not a repo' is not owner/repo",
                 "bisect.toml:3: listen[1].max-probes", "bisect.toml:4: listen[1].poll: 'soon' is not a duration",
                 "bisect.toml:5: listen[1].label: unknown key; did you mean 'labels'?",
                 "bisect.toml:6: listen[1].associations", "bisect.toml:7: listen[2]: missing required key"):
        assert line in message, message


def test_limits_stop_a_request_before_its_next_probe():
    """max-wall and max-probes are checked before each probe starts."""
    job = {"key": "octo/demo/1"}
    late = _Progress(None, ListenSpec("octo/demo", max_wall_s=5), job, started=time.time() - 10)
    with pytest.raises(LimitReached, match=r"max-wall = 5 s"):
        late.probe_started("1.4", 1, 4)
    busy = _Progress(None, ListenSpec("octo/demo", max_probes=2), job, started=time.time())
    busy.probe_started("1.4", 1, 4)
    busy.probe_started("1.8", 2, 4)
    with pytest.raises(LimitReached, match=r"stopped after 2 probes \(max-probes = 2\)"):
        busy.probe_started("1.6", 3, 4)
