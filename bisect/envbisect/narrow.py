"""``bisect narrow RUN``: the knob that flips a found regression.

A bisection names the first bad release; this run mode goes one step further inside that
release's environment. It takes the exact lock the run's first bad probe (the last bad one
of a ``--find-fix`` run, the probed environment of a bad ``bisect check``) was installed
from, and probes the recipe there with knob settings applied (:mod:`envbisect.knobs`: the
recipe's ``[tool.envbisect.knobs]`` and the built-in sets of the frameworks installed),
searching with :mod:`envbisect.knobsearch` (ddmin) for the smallest set that turns the
result good. For a torch.compile recipe it then runs torch's own compiler bisector there
(:mod:`envbisect.compiler_bisect`).

It is a run of its own (kind ``narrow``): every probe is recorded the moment it ends,
labelled by its settings, so an interrupted narrow resumes without running a probe twice
and without a second row; knob settings are environment values of the probe, hence in its
key. The answer is stored with the narrow run and also added to the bisection run's result
(``knobs``), so ``bisect report`` and ``bisect attach`` on that run show it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from envbisect import compiler_bisect
from envbisect.driver import ActiveRun, open_run
from envbisect.errors import ConfigError, RecipeError
from envbisect.knobs import BUILTIN, Knob, Setting, applicable, label, probe_values, recipe_knobs, select
from envbisect.knobsearch import Answer, Narrowing, narrow
from envbisect.plan import Lock
from envbisect.policy import RegressMode, Threshold
from envbisect.recipes import Recipe, load_recipe, parse_recipe_text
from envbisect.requests_model import Judging, signature
from envbisect.search import Verdict
from envbisect.session import Session


@dataclass(frozen=True)
class BadEnv:
    """The environment to narrow: its label in the run, lock, requirements and packages."""

    label: str
    lock: Lock
    requirements: list[str]
    resolved: dict[str, str]
    subject: str


def bad_env(session: Session, run: dict, package: str | None = None) -> BadEnv:
    """The first bad environment of a finished run, or a one-line error saying why not;
    ``package`` names the subject when the run has none (a ``bisect check``)."""
    result, rid = run.get("result") or {}, run["id"]
    kind = run.get("kind")
    if kind == "check":
        wanted, ok = None, result.get("verdict") == "bad"
        why = f"its outcome is {result.get('outcome')}, not bad"
    elif kind in ("bisect", "date"):
        wanted = result.get("last_bad" if result.get("find_fix") else "first_bad")
        ok = run.get("status") == "done" and result.get("status") == "found" and bool(wanted)
        why = f"it ended {result.get('status') or run.get('status')}, without a first bad candidate"
    else:
        raise ConfigError(f"run {rid} is a {kind} run; narrow a bisection (`bisect run`) or a bad `bisect check`")
    if not ok:
        raise ConfigError(f"run {rid} has no bad environment to narrow: {why}; pick a found regression "
                          "from `bisect history`")
    rows = [r for r in session.store.probes_for_run(rid)
            if r.get("lock_hash") and r.get("verdict") == "bad" and (wanted is None or r.get("version") == wanted)]
    text = session.store.get_lock(rows[0]["lock_hash"]) if rows else None
    if not text:
        raise ConfigError(f"run {rid}'s bad probe has no stored lock (recorded by an older envbisect?); "
                          "run the bisection again, then narrow it")
    row = rows[0]
    package = None if kind == "date" else (result.get("package") or run.get("package") or package)
    version = (row.get("resolved") or {}).get(package or "", wanted)
    subject = f"{package} {version}" if package and version else f"the environment of {row.get('version')}"
    return BadEnv(row.get("version") or "", Lock.from_text(text), list(row.get("requirements") or []),
                  dict(row.get("resolved") or {}), subject)


def stored_judging(run: dict, recipe: Recipe) -> Judging:
    """The judging settings the bisection used, so "good" means what it meant there."""
    settings = run.get("settings") or {}
    j = settings.get("judging") or settings
    return Judging(float(j.get("timeout") or recipe.settings.timeout), RegressMode(j.get("regress") or "exit"),
                   tuple(Threshold.parse(t) for t in j.get("thresholds") or []), int(j.get("retries") or 0))


def phrase(knob: Knob, value) -> str:
    """``turning off Grappler's remapping`` / ``setting TF_ENABLE_ONEDNN_OPTS=0``."""
    if knob.env is not None:
        return f"setting {knob.env}={value}"
    if isinstance(value, bool):
        return f"turning {'on' if value else 'off'} {knob.text}"
    return f"setting {knob.text} to {value}"


def summary(n: Narrowing, knobs: dict[str, Knob], subject: str) -> str:
    """One sentence for the summary, the report and the issue comment."""
    def said(settings) -> str:
        return " and ".join(phrase(knobs[s.knob], s.value) for s in settings)

    if n.answer is Answer.NO_KNOBS:
        return (f"no knob applies to {subject}: no TensorFlow or torch in the environment and none declared in "
                "[tool.envbisect.knobs]")
    if n.answer is Answer.NONE:
        return f"no knob tried ({len(n.tried)}) makes {subject} good, alone or together"
    if n.answer is Answer.COARSE:
        return f"only a coarse switch makes {subject} good: {'; '.join(said([s]) for s in n.coarse)}"
    text = f"{said(n.minimal)} makes {subject} good"
    if n.also:
        text += f" (so does {', '.join(said([s]) for s in n.also)})"
    if n.coarse:
        text += f"; coarser switches do too: {', '.join(said([s]) for s in n.coarse)}"
    return text


def _entry(s: Setting, knobs: dict[str, Knob]) -> dict:
    return dict(s.to_dict(), text=phrase(knobs[s.knob], s.value), env=knobs[s.knob].env)


def narrow_run(session: Session, run_id: int, *, only: tuple[str, ...] = (), bisector: bool = True,
               argv: list[str] | None = None) -> dict:
    """Narrow run ``run_id`` (see the module docstring); returns the narrow run's result."""
    started = time.monotonic()
    parent = session.store.get_run(run_id)
    recipe = load_recipe(parent["recipe_path"])
    env = bad_env(session, parent, recipe.settings.package)
    if recipe.hash != parent["recipe_hash"]:
        raise RecipeError(f"recipe {parent['recipe_path']} changed since run {run_id}; narrow needs the recipe the "
                          "run bisected: restore it, or bisect again with the new one and narrow that run")
    judging = stored_judging(parent, recipe)
    every = applicable([*recipe_knobs(dict(recipe.settings.knobs)), *BUILTIN], env.resolved)
    chosen = select(every, only)
    if only and not chosen:
        raise ConfigError(f"--knob {', '.join(only)} matches none of the knobs that apply here: "
                          f"{', '.join(k.name for k in every) or 'none'}")
    knobs = {k.name: k for k in chosen}
    sig = signature({"narrow": run_id, "recipe": recipe.hash, "lock": env.lock.hash, "knobs": sorted(knobs),
                     "bisector": bisector})
    with open_run(session, kind="narrow", recipe=recipe, judging=judging, signature=sig, argv=argv or [],
                  settings={"narrows": run_id, "knobs": sorted(knobs), "bisector": bisector},
                  package=parent.get("package")) as run:
        probes = []

        def test(settings: tuple[Setting, ...]) -> Verdict:
            session.handler.probe_started(label(settings, knobs), len(probes) + 1, len(probes) + 2)
            probes.append(run.probe(label(settings, knobs), env.requirements, package=None, lock=env.lock,
                                    knobs=probe_values(settings, knobs)))
            return probes[-1].judgement.verdict

        if test(()) is not Verdict.BAD:  # the plain environment first: reused from the bisection's probe
            raise ConfigError(f"the bad environment of run {run_id} ({env.label}) is not bad now "
                              f"({probes[0].judgement.reason}); the recipe may be flaky: try --retries on the run")
        found = narrow(chosen, test)
        result = {
            "run_id": run.id, "kind": "narrow", "narrows": run_id, "env": env.label, "subject": env.subject,
            "answer": found.answer.value, "summary": summary(found, knobs, env.subject),
            "settings": [_entry(s, knobs) for s in found.minimal], "also": [_entry(s, knobs) for s in found.also],
            "coarse": [_entry(s, knobs) for s in found.coarse], "tried": list(found.tried),
            "trials": [t.to_dict() for t in found.trials], "probes": len(probes),
            "executed": sum(p.executed for p in probes), "compiler_bisector": None,
        }
        if bisector and compiler_bisect.applies(recipe, env.resolved):
            result["compiler_bisector"] = _compiler_bisector(session, run, recipe, env, judging)
        result["duration_s"] = round(time.monotonic() - started, 3)
        final = run.finish(result)
    parent_result = dict(parent.get("result") or {}, knobs=final)
    session.store.update_run(run_id, status=parent["status"], result=parent_result)
    return final


def _compiler_bisector(session: Session, run: ActiveRun, recipe: Recipe, env: BadEnv, judging: Judging) -> dict:
    """torch's compiler bisector as one more probe of the narrow run (its own wrapper recipe)."""
    text = compiler_bisect.wrapper_text(recipe)
    folder = session.settings.cache.root / "narrow"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"compiler-bisect-{recipe.hash[:16]}.py"
    if not path.exists():
        path.write_text(text, encoding="utf-8")
    wrapper = parse_recipe_text(text, Path(path))
    name = "torch compiler bisector"
    rows = run.rows(name)
    if rows:  # a resumed narrow: the bisector already ran
        return compiler_bisect.answer(rows[0].get("metrics"), rows[0].get("reason") or "")
    plain = Judging(judging.timeout * compiler_bisect.TIMEOUT_FACTOR)
    session.handler.probe_started(name, 1, 1)
    probe = session.probe(run.id, wrapper, name, env.requirements, package=None, judging=plain, lock=env.lock)
    return compiler_bisect.answer(probe.metrics, probe.judgement.reason)
