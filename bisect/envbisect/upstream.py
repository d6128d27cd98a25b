"""Put the upstream change range into a finished run's result (``source_range(s)``).

Runs layer: the one hook :mod:`envbisect.byversion` and :mod:`envbisect.bydate` call
once a search has named its boundary. It reads the boundary probes' rows (their
``resolved`` sets and the ``source`` records :mod:`envbisect.sourceprobe` stored with
them), derives one range per package that moved (:mod:`envbisect.sourcerange`) and, when
a GitHub token is configured, has the tags confirmed (:mod:`envbisect.sourcecheck`).

* ``source_ranges``: every package whose version differs between the two boundary envs
  (the bisected package first), each a range or the reason it has none;
* ``source_range``: the range of the bisected package (``bisect run``), or of the one
  culprit / the one package that moved (``--by date``); None otherwise, with
  ``source_range_reason`` saying why.
"""

from __future__ import annotations

from collections.abc import Mapping

from packaging.utils import canonicalize_name

from envbisect import sourcecheck, sourcerange


def _source(rows: list[dict]) -> dict | None:
    return next((r["source"] for r in rows if r.get("source") is not None), None)


def _resolved(rows: list[dict]) -> dict[str, str]:
    found = next((r.get("resolved") for r in rows if r.get("resolved")), None) or {}
    return {canonicalize_name(k): v for k, v in found.items()}


def source_ranges(result: dict, rows: list[dict], *, primary: str | None = None,
                  environ: Mapping[str, str] | None = None) -> dict:
    """The ``source_range``/``source_ranges`` entries for ``result`` (see the module
    docstring); ``rows`` are the run's probe rows (its own and those it reused), ``primary``
    is the bisected package (None in date mode)."""
    old_key, new_key = ("last_bad", "first_good") if result.get("find_fix") else ("last_good", "first_bad")
    old_label, new_label = result.get(old_key), result.get(new_key)
    if not old_label or not new_label:
        return {"source_range": None, "source_ranges": [],
                "source_range_reason": f"the search named no {old_key.replace('_', ' ')} / "
                                       f"{new_key.replace('_', ' ')} pair"}
    old_rows, new_rows = ([r for r in rows if r.get("version") == label] for label in (old_label, new_label))
    old_res, new_res = _resolved(old_rows), _resolved(new_rows)
    names = sourcerange.moved(old_res, new_res)
    if primary is not None:
        key = canonicalize_name(primary)
        names = [key, *(n for n in names if n != key)]
        old_res.setdefault(key, old_label)
        new_res.setdefault(key, new_label)
    old_src, new_src = _source(old_rows), _source(new_rows)
    ranges = [sourcerange.derive(n, old_res.get(n), new_res.get(n), old_src, new_src) for n in names]
    ranges = sourcecheck.confirm(ranges, environ)
    if primary is not None:
        return {"source_range": ranges[0], "source_ranges": ranges}
    blamed = [canonicalize_name(c["package"]) for c in (result.get("culprit") or {}).get("culprits") or []]
    pick = blamed if len(blamed) == 1 else names if len(names) == 1 else []
    chosen = next((r for r in ranges if r["package"] == pick[0]), None) if pick else None
    out = {"source_range": chosen, "source_ranges": ranges}
    if chosen is None:
        out["source_range_reason"] = (f"{len(names)} packages moved and no single culprit was isolated; "
                                      "see source_ranges" if names else
                                      "no package version differs between the boundary environments")
    return out
