"""The typed schema of a recipe's PEP 723 block and of ``bisect.toml`` (envbisect.schema).

A value of the wrong TOML type is one error line that names the file, the line, the key
and the type expected, never a coercion ("false" taken as true, 3.11 as "3.11") and never
a TypeError from deep inside. Both files share the field types where their keys overlap,
so the same mistake reads the same in both. Pure: recipes are text or files in tmp_path.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from envbisect.errors import ConfigError, RecipeError
from envbisect.recipes import DEFAULT_TIMEOUT, RecipeSettings, parse_recipe_text
from envbisect.schema import EnvbisectTable, WatchTable
from envbisect.schema_issues import KeyLines, keys_of
from envbisect.watchconfig import WATCH_KEYS, parse_config

PATH = Path("/recipes/r.py")


def recipe_text(top: str = 'dependencies = ["toypkg"]', tool: str = 'package = "toypkg"') -> str:
    """A recipe whose line 3 is ``top`` and line 6 is ``tool`` (inside [tool.envbisect])."""
    return (
        "#!/usr/bin/env python\n"       # 1
        "# /// script\n"                # 2
        f"# {top}\n"                    # 3
        "# [tool.envbisect]\n"          # 4
        "# # the key under test:\n"     # 5
        f"# {tool}\n"                   # 6
        "# ///\n"                       # 7
        "import sys\nsys.exit(0)\n"
    )


def recipe_error(text: str) -> str:
    with pytest.raises(RecipeError) as info:
        parse_recipe_text(text, PATH)
    message = str(info.value)
    assert "\n" not in message, message
    assert info.value.exit_code == 2
    return message


@pytest.mark.parametrize(("line", "key", "expected", "got"), [
    ("python = 3.11", "python", 'a Python version string, e.g. "3.11"', "3.11 (a float)"),
    ("with = 5", "with", "a requirement string or a list of them", "5 (an integer)"),
    ('package = ["x"]', "package", "a package name string", "['x'] (an array)"),
    ('pre = "false"', "pre", "true or false", "'false' (a string)"),
    ("pre = 1", "pre", "true or false", "1 (an integer)"),
    ('env = "ADDMM_RTOL"', "env", "a list of environment variable names", "'ADDMM_RTOL' (a string)"),
    ('timeout = "600"', "timeout", "a positive number of seconds", "'600' (a string)"),
    ("timeout = true", "timeout", "a positive number of seconds", "True (a boolean)"),
    ("timeout = 0", "timeout", "a positive number of seconds", "0 (an integer)"),
    ("timeout = inf", "timeout", "a positive number of seconds", "inf (a float)"),
    ("regress = 1", "regress", 'one of the strings "exit", "error" or "crash"', "1 (an integer)"),
    ("range = 2", "range", "a PEP 440 specifier string", "2 (an integer)"),
    ("index-url = 3", "index-url", "a URL string", "3 (an integer)"),
    ("nightly-index = false", "nightly-index", "a URL string", "False (a boolean)"),
    ("nightly-package = [1]", "nightly-package", "a package name string", "[1] (an array)"),
    ("variant = true", "variant", "a variant string", "True (a boolean)"),
    ('python = ""', "python", "a Python version string", "'' (a string)"),
])
def test_a_wrong_type_in_the_tool_table_is_one_line_with_key_type_and_line(line, key, expected, got):
    message = recipe_error(recipe_text(tool=line))
    assert message.startswith(f"recipe {PATH}:6: [tool.envbisect] {key}: must be {expected}"), message
    assert message.endswith(f", not {got}"), message


@pytest.mark.parametrize(("line", "needle"), [
    ("with = [3]", "[tool.envbisect] with: 3 is not a string (item 1 of the array); expected a requirement string"),
    ('with = ["numpy", "no good=="]', "[tool.envbisect] with: 'no good==' is not a requirement ("),
    ('env = ["OK", 5]', "[tool.envbisect] env: 5 is not a string (item 2 of the array)"),
    ('env = ["not-a-name"]', "[tool.envbisect] env: 'not-a-name' is not an environment variable name"),
    ('regress = "sometimes"', "[tool.envbisect] regress: 'sometimes' is not a mode; use one of: exit, error, crash"),
    ('range = "=>1.0"', "[tool.envbisect] range: '=>1.0' is not a PEP 440 specifier"),
    ('index-url = "ftp://x"', "[tool.envbisect] index-url: 'ftp://x' is not an http(s):// or file:// URL"),
])
def test_a_wrong_value_names_the_item_or_the_rule(line, needle):
    message = recipe_error(recipe_text(tool=line))
    assert message.startswith(f"recipe {PATH}:6: {needle}"), message


@pytest.mark.parametrize(("top", "needle"), [
    ('dependencies = "toypkg"',
     'dependencies: must be a list of requirement strings, e.g. ["numpy>=1.26"], not \'toypkg\' (a string)'),
    ('dependencies = ["toypkg", 5]', "dependencies: 5 is not a string (item 2 of the array)"),
    ('dependencies = ["toypkg=="]', "dependencies: 'toypkg==' is not a requirement ("),
    ("requires-python = 3.10", 'requires-python: must be a specifier string, e.g. ">=3.10", not 3.1 (a float)'),
    ('requires-python = ">>3"', "requires-python: '>>3' is not a valid specifier"),
])
def test_the_pep723_keys_are_typed_too(top, needle):
    message = recipe_error(recipe_text(top=top))
    assert message.startswith(f"recipe {PATH}:3: {needle}"), message


def test_a_string_of_dependencies_is_not_read_letter_by_letter():
    with pytest.raises(RecipeError, match="dependencies: must be a list"):
        parse_recipe_text(recipe_text(top='dependencies = "toypkg"'), PATH)


def test_every_mistake_of_a_block_is_on_the_one_line_in_file_order():
    text = recipe_text(top="requires-python = 3", tool='timout = 5\n# pre = "no"\n# colour = "red"')
    message = recipe_error(text)
    assert message.startswith(f"recipe {PATH}:3: requires-python: must be a specifier string"), message
    assert ("; line 6: unknown key(s) in [tool.envbisect]: timout (did you mean 'timeout'?), colour; "
            f"known keys are {', '.join(sorted(keys_of(EnvbisectTable)))}") in message
    assert "; line 7: [tool.envbisect] pre: must be true or false, not 'no' (a string)" in message


def test_unknown_keys_keep_the_known_key_list_and_gain_a_suggestion_and_a_line():
    message = recipe_error(recipe_text(tool="pakage = 'x'"))
    assert message == (f"recipe {PATH}:6: unknown key(s) in [tool.envbisect]: pakage (did you mean 'package'?); "
                       "known keys are atol, confidence, direction, env, exclusive, index-url, knobs, max-samples, "
                       "metric, nightly-index, nightly-package, package, pre, python, range, reference, regress, "
                       "resources, rtol, samples, signature, signature-exception, timeout, variant, with")


@pytest.mark.parametrize(("block", "line"), [
    ('# /// script\n# tool.envbisect.pre = "no"\n# ///\n', 2),             # dotted key, no header
    ('# /// script\n# [tool]\n# envbisect = {pre = "no"}\n# ///\n', 3),    # inline table
    ('# /// script\n# [tool.envbisect]\n# "pre" = "no"\n# ///\n', 3),      # quoted key
])
def test_the_line_is_found_however_the_table_is_written(block, line):
    message = recipe_error("# leading comment\n" + block)
    assert message.startswith(f"recipe {PATH}:{line + 1}: [tool.envbisect] pre: must be true or false"), message


def test_a_tool_table_that_is_not_a_table():
    message = recipe_error("# /// script\n# [tool]\n# envbisect = 5\n# ///\n")
    assert message.startswith(f"recipe {PATH}:3: [tool] envbisect: must be a table: write [tool.envbisect]")


def test_toml_syntax_errors_name_the_recipe_files_line_not_the_blocks():
    text = "# one\n# two\n# /// script\n# dependencies = [\"a\"]\n# timeout = = 3\n# ///\n"
    message = recipe_error(text)
    assert "not valid TOML" in message and "line 5" in message, message


def test_valid_values_still_give_the_same_settings():
    text = ('# /// script\n# requires-python = ""\n# dependencies = ["toypkg"]\n# [tool.envbisect]\n'
            '# package = " toypkg "\n# timeout = 5\n# pre = true\n# with = "numpy==1.26.4"\n# python = "3.11"\n'
            '# regress = "crash"\n# env = ["B", "A", "B"]\n# [tool.other]\n# anything = 1\n# ///\n')
    recipe = parse_recipe_text(text, PATH)
    assert recipe.requires_python is None and recipe.dependency_names() == ["toypkg"]
    assert recipe.settings == RecipeSettings(package="toypkg", timeout=5.0, pre=True, with_=("numpy==1.26.4",),
                                             python="3.11", regress="crash", env=("B", "A"))
    assert isinstance(recipe.settings.timeout, float)
    assert parse_recipe_text("# /// script\n# dependencies = []\n# ///\n", PATH).settings == RecipeSettings()
    assert RecipeSettings().timeout == DEFAULT_TIMEOUT


# --- bisect.toml ----------------------------------------------------------------

RECIPE = "# /// script\n# dependencies = [\"planted\"]\n# [tool.envbisect]\n# package = \"planted\"\n# {}\n# ///\n"


@pytest.fixture
def base(tmp_path: Path) -> Path:
    (tmp_path / "ok.py").write_text(RECIPE.format("timeout = 30"))
    return tmp_path


def config_errors(text: str, base: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_config(text, base=base, source="bisect.toml")
    return [line.strip() for line in str(info.value).splitlines()[1:]]


def test_the_watch_keys_are_the_schemas():
    assert WATCH_KEYS == ("name", "recipe", "package", "with", "index-url", "issue", "every", "pre", "batch-probes")
    assert WATCH_KEYS == keys_of(WatchTable)


@pytest.mark.parametrize(("line", "expected"), [
    ('pre = "false"', "watch[1].pre: must be true or false, not 'false' (a string)"),
    ("package = 5", 'watch[1].package: must be a package name string, e.g. "numpy", not 5 (an integer)'),
    ("with = 5", 'watch[1].with: must be a list of requirement strings, e.g. ["numpy==1.26.4"], not 5 (an integer)'),
    ("index-url = []", 'watch[1].index-url: must be a URL string, e.g. "https://pypi.org/simple", not [] (an array)'),
    ("issue = 12", 'watch[1].issue: must be an issue string, e.g. "owner/repo#123", not 12 (an integer)'),
    ("name = 1.5", "watch[1].name: must be a name string of letters, digits"),
    ("every = true", "watch[1].every: is a boolean; write e.g."),
    ("batch-probes = 0", "watch[1].batch-probes: must be a whole number of at least 1"),
])
def test_a_wrong_type_in_a_watch_names_line_key_and_type(base, line, expected):
    errors = config_errors(f'[[watch]]\nrecipe = "ok.py"\n{line}\n', base)
    assert len(errors) == 1 and errors[0].startswith(f"bisect.toml:3: {expected}"), errors


def test_a_recipe_with_wrong_types_is_a_config_problem_not_a_crash(base):
    (base / "bad.py").write_text(RECIPE.format("with = 5"))
    errors = config_errors('[[watch]]\nrecipe = "bad.py"\n', base)
    assert errors == [f"bisect.toml:2: watch[1].recipe: recipe {(base / 'bad.py').resolve()}:5: "
                      "[tool.envbisect] with: must be a requirement string or a list of them, "
                      'e.g. ["numpy==1.26.4"], not 5 (an integer)']


@pytest.mark.parametrize(("key", "value"), [("pre", '"false"'), ("index-url", '"ftp://x"'), ("index-url", "5"),
                                            ("package", "[1]"), ("with", '[3, "no good=="]')])
def test_shared_keys_accept_and_refuse_alike_in_both_files(base, key, value):
    """One field type per shared key: the same mistake reads the same in a recipe and a watch."""
    in_recipe = recipe_error(recipe_text(tool=f"{key} = {value}"))
    in_watch = config_errors(f'[[watch]]\nrecipe = "ok.py"\n{key} = {value}\n', base)
    said = in_recipe.split(f"[tool.envbisect] {key}: ", 1)[1].split("; line ")[0]
    watch_said = [e.split(f"watch[1].{key}: ", 1)[1] for e in in_watch]
    if key == "with":  # one message per item in bisect.toml, joined on the recipe's one line;
        # the item rule is shared, the container is not (a recipe may give one string)
        assert said.split("; expected")[0] == watch_said[0].split("; expected")[0]
        assert watch_said[1] in in_recipe
    else:
        assert watch_said == [said]


def test_key_lines_skip_other_tables_and_count_array_tables():
    lines = KeyLines('a = 1\n[x]\npre = 1\n[[w]]\npre = 2\n[[w]]\n# c\npre = 3\n', first_line=10)
    assert lines.key((), "a") == 10
    assert lines.key(("x",), "pre") == 12
    assert lines.key(("w",), "pre", 1) == 17
    assert lines.table(("w",), 1) == 15 and lines.table(("w",), 2) is None
    assert lines.key(("y",), "pre") == 10  # no such table: the text's first line


@pytest.mark.parametrize("tool, needle", [
    ("resources = {gpu = 0}", "[tool.envbisect.resources] gpu: must be a table of resource names to positive "
                              "amounts, e.g. {gpu = 1}, not 0"),
    ("resources = {gpu = 'one'}", "[tool.envbisect.resources] gpu: must be a table of resource names"),
    ("resources = {'a b' = 1}", "is not a resource name"),
    ("resources = 'gpu'", "resources: must be a table of resource names"),
    ("exclusive = 'yes'", "exclusive: must be true or false"),
])
def test_exclusive_and_resources_are_checked(tool, needle):
    assert needle in recipe_error(recipe_text(tool=tool))


def test_exclusive_and_resources_reach_the_recipe_settings():
    recipe = parse_recipe_text(recipe_text(tool="exclusive = true\n# resources = {metal = 1, gpu = 0.5}"), PATH)
    assert recipe.settings.exclusive is True
    assert recipe.settings.resources == (("gpu", 0.5), ("metal", 1.0))
