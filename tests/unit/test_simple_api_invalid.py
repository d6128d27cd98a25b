"""Malformed PEP 691 JSON project pages: one IndexInvalid line naming the page and the
problem (an index failure, exit 6), never a KeyError/TypeError traceback. Pure parsing."""

from __future__ import annotations

import json

import pytest

from envbisect.errors import EXIT_ENVIRONMENT, IndexInvalid, IndexUnreachable
from envbisect.simple_api import JSON_TYPE, parse_page, parse_simple_json

PAGE = "https://user:s3cret@files.example.org/simple/demo/"
INDEX = "https://***@files.example.org/simple"
IN_WHEEL = "files[0] (demo-1.0-py3-none-any.whl): "
GOOD = {"filename": "demo-1.0-py3-none-any.whl", "url": "demo-1.0-py3-none-any.whl", "hashes": {"sha256": "a" * 64}}


def page(*files: dict) -> str:
    return json.dumps({"meta": {"api-version": "1.1"}, "name": "demo", "files": list(files)})


@pytest.mark.parametrize(("body", "problem"), [
    ('{"files": [', "it is not valid JSON (Expecting value: line 1 column 12"),
    (b"\xff\xfe", "it is not valid JSON ("),
    ('{"files": ' + "[" * 100_000 + "]" * 100_000 + "}", "it is not valid JSON (nested too deeply)"),
    ("[]", "the page is an array, not a JSON object"),
    ('{"name": "demo"}', 'it has no "files" array'),
    ('{"files": {}}', '"files" is an object, not an array'),
    (page(GOOD, 5), "files[1] is a number, not an object"),
    (page({"url": "x.whl"}), 'files[0] has no "filename"'),
    (page({"filename": "demo-1.0.tar.gz"}), 'files[0] has no "url"'),
    (page(dict(GOOD, url=5)), 'files[0]."url" must be a non-empty string, not 5'),
    (page(dict(GOOD, filename=None)), 'files[0]."filename" must be a non-empty string, not null'),
    (page(dict(GOOD, hashes="zzz")),
     IN_WHEEL + '"hashes" must be an object of hash names to hex digests, not "zzz"'),
    (page(dict(GOOD, hashes={"sha256": 5})), IN_WHEEL + '"hashes"."sha256" must be a string, not 5'),
    (page(dict(GOOD, **{"upload-time": 12345})), IN_WHEEL + '"upload-time" must be an ISO 8601 string, not 12345'),
    (page(dict(GOOD, **{"requires-python": [">=3"]})), IN_WHEEL + '"requires-python" must be a string, not an array'),
    (page(dict(GOOD, yanked=1)), IN_WHEEL + '"yanked" must be a boolean or a string (the reason), not 1'),
])
def test_a_malformed_page_is_one_index_error_naming_the_page(body, problem):
    with pytest.raises(IndexInvalid) as info:
        parse_simple_json(body, page_url=PAGE, index_url=INDEX)
    message = str(info.value)
    assert isinstance(info.value, IndexUnreachable) and info.value.exit_code == EXIT_ENVIRONMENT
    assert "\n" not in message
    assert message.startswith("package index https://***@files.example.org/simple/demo/ sent an invalid "
                              "PEP 691 project page: "), message
    assert problem in message and message.endswith("tell its maintainers, or pass another --index-url"), message
    assert "s3cret" not in message


def test_parse_page_raises_it_too():
    with pytest.raises(IndexInvalid, match='has no "filename"'):
        parse_page(page({"url": "x"}).encode(), JSON_TYPE, page_url=PAGE, index_url=INDEX)


def test_what_pep_691_allows_still_parses():
    """Nulls for optional keys, a yanked reason, keys this parser does not read, no hashes."""
    entry = dict(GOOD, yanked="broken", **{"requires-python": None, "upload-time": None, "core-metadata": True,
                                           "size": 12, "data-future-key": [1]})
    sdist = {"filename": "demo-0.9.tar.gz", "url": "/files/demo-0.9.tar.gz"}
    [wheel, tarball] = parse_simple_json(page(entry, sdist), page_url=PAGE, index_url=INDEX)
    assert (wheel.yanked, wheel.requires_python, wheel.upload_time, wheel.sha256) == ("broken", None, None, "a" * 64)
    assert tarball.sha256 is None and tarball.url.endswith("/files/demo-0.9.tar.gz")
    assert parse_simple_json({"files": []}, page_url=PAGE, index_url=INDEX) == []
