"""Serve ``/envbisect run`` requests posted as issue comments (docs/watch.md, "Listening on
issues"). The watch daemon calls :meth:`Listener.cycle` once per cycle.

Per ``[[listen]]`` repository and poll:

1. **Poll.** List the repository's issue comments updated since the stored cursor, with
   ``If-None-Match`` (an unchanged repository is a free ``304``). Each new comment that
   starts with ``/envbisect run`` becomes a ``queued`` row of ``listen_requests`` *before*
   the cursor moves, so a daemon killed at any point loses none and the cursor's overlap
   (``since`` is inclusive) is harmless: a request key is seen once.
2. **Serve** the queued and unfinished rows, oldest first:
   - on an issue without one of the configured ``labels``: ignored, nothing posted;
   - from an author the table does not allow: nothing runs; at most one polite reply per
     author and issue (a hidden marker makes it idempotent);
   - the issue's comments by the daemon's own login (``GET /user``; a marker in anyone
     else's comment is not trusted) are read for an answer with the request's marker: a final
     one means the request was already served (the database was lost): done, nothing
     runs. An unfinished one is the answer to update (the daemon was killed mid-run);
   - a request that cannot be run as written gets one answer saying why (😕);
   - otherwise: 👀 on the request, one answer comment showing the recipe and its hash,
     the bisection (resumed by signature after a restart), the answer updated after each
     probe and at the end (🚀 found, 😕 not reproduced, failed or stopped by a limit).

A failing API call (HTTP 401, 500, rate limit, network) is one logged line; the repository
then backs off (its poll interval doubled per consecutive failure, at most
:data:`MAX_BACKOFF_S`) and the request stays where it was: the markers make the retry post
nothing twice. The recipe runs like any probe: the runner's scrubbed environment, in an
environment built from the ``[[listen]]`` index; it never sees the token (which the
re-executed daemon holds in memory only, see :mod:`envbisect.reexec`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

from envbisect import listenreply, report, secrets
from envbisect.byversion import run_bisection
from envbisect.config import Settings
from envbisect.errors import EnvbisectError, TrackerError
from envbisect.index import IndexConfig
from envbisect.listenapi import CONFUSED, EYES, ROCKET, IssueComment, ListenGitHub
from envbisect.listenconfig import ListenSpec
from envbisect.listenreq import RequestInvalid, RunRequest, is_request, parse_request
from envbisect.policy import Judgement, RegressMode
from envbisect.records import utc_now
from envbisect.requests_model import BisectRequest
from envbisect.session import Session
from envbisect.store import Store
from envbisect.trackers import IssueNotFound, IssueRef

log = logging.getLogger("envbisect.watch")
#: With no cursor (first start, or the database was lost), look back this far.
LOOKBACK_S = 7 * 86400.0
#: The longest wait between polls of a failing repository.
MAX_BACKOFF_S = 3600.0
#: Request statuses still to be served (and resumed after a restart).
OPEN = ("queued", "running", "finished")


class LimitReached(EnvbisectError):
    """A request used up its ``max-probes`` or ``max-wall`` (stops the run)."""


class _Progress:
    """Session events of one request: log lines, the answer updated after each probe, and
    the limits enforced before each probe starts."""

    def __init__(self, listener: Listener, spec: ListenSpec, job: dict, started: float) -> None:
        self.listener, self.spec, self.job, self.started = listener, spec, job, started
        self.lines: list[str] = []
        self.launched = 0

    def probe_started(self, label: str, step: int, estimate: int) -> None:
        if self.launched >= self.spec.max_probes:
            raise LimitReached(f"stopped after {self.launched} probes (max-probes = {self.spec.max_probes})")
        if time.time() - self.started > self.spec.max_wall_s:
            raise LimitReached(f"stopped after {time.time() - self.started:.0f} s "
                               f"(max-wall = {self.spec.max_wall_s:.0f} s)")
        self.launched += 1
        log.info("[listen %s] probe %s (step %d of about %d)", self.job["key"], label, step, estimate)

    def probe_finished(self, label: str, judgement: Judgement, reused: bool) -> None:
        self.lines.append(f"`{label}`: {judgement.outcome.value} ({judgement.reason})"
                          + (", recorded earlier" if reused else ""))
        log.info("[listen %s] %s: %s", self.job["key"], label, judgement.outcome.value)
        try:
            self.listener.say(self.job, listenreply.progress(self.job["key"], self.job["author"], _command(self.job),
                                                             self.job["recipe"], self.job["recipe_hash"], self.lines))
        except TrackerError as exc:  # progress is best effort; the final answer is retried
            log.warning("[listen %s] could not update the answer: %s", self.job["key"], exc)

    def note(self, message: str) -> None:
        log.info("[listen %s] %s", self.job["key"], message)


def _command(job: dict) -> str:
    return " ".join(["/envbisect run", *job["request"].get("tokens", [])])


class Listener:
    """Polls the ``[[listen]]`` repositories and serves their requests (module docstring)."""

    def __init__(self, specs: list[ListenSpec], settings: Settings, store: Store) -> None:
        self.specs, self.settings, self.store = specs, settings, store
        self.api: ListenGitHub | None = None
        self._me = ""  # the token's login, asked once

    def _mine(self, comments: list) -> list:
        """The comments the daemon itself wrote: a marker in anyone else's is not trusted
        (it could silence a request, or make the daemon edit a comment it cannot)."""
        self._me = self._me or self.api.login()
        return [c for c in comments if c.user == self._me]

    # -- scheduling -------------------------------------------------------------

    def _state(self, spec: ListenSpec) -> dict:
        return (self.store.get_listen("listens", spec.repository) or {}).get("state") or {}

    def next_wake(self) -> float:
        """Seconds until the next repository is due (0: now)."""
        return max(0.0, min(self._state(s).get("next_poll", 0.0) for s in self.specs) - time.time())

    def cycle(self, *, force: bool = False) -> int:
        """Poll and serve every due repository (all with ``force``); returns how many failed."""
        failures = 0
        with ListenGitHub() as self.api:
            for spec in self.specs:
                state = self._state(spec)
                if not force and state.get("next_poll", 0.0) > time.time():
                    continue
                try:
                    self.poll(spec)
                    self.serve(spec)
                except Exception as exc:  # a daemon outlives an API outage (TrackerError) or a bug
                    failures += 1
                    count = int(state.get("failures", 0)) + 1
                    wait = min(spec.poll_s * 2 ** count, MAX_BACKOFF_S)
                    what = str(exc) if isinstance(exc, TrackerError) else f"{type(exc).__name__}: {exc}"
                    log.error("[listen %s] %s; backing off %.0f s", spec.repository, what, wait)
                    state = {"failures": count, "last_error": str(exc), "next_poll": time.time() + wait}
                else:
                    state = {"failures": 0, "next_poll": time.time() + spec.poll_s}
                self.store.put_listen("listens", spec.repository, state=state)
        self.api = None
        return failures

    # -- polling ------------------------------------------------------------------

    def poll(self, spec: ListenSpec) -> None:
        """Queue the new request comments of ``spec``'s repository, then move the cursor."""
        row = self.store.get_listen("listens", spec.repository) or {}
        since = row.get("since") or (datetime.now(timezone.utc) - timedelta(seconds=LOOKBACK_S)).strftime(
            "%Y-%m-%dT%H:%M:%SZ")
        listing = self.api.repo_comments(spec.repository, since, row.get("etag") if row.get("since") else None)
        if listing.not_modified:
            return
        for comment in listing.comments:
            key = listenreply.request_key(spec.repository, comment.id)
            if is_request(comment.body) and self.store.get_listen("listen_requests", key) is None:
                self._queue(spec, key, comment)
        cursor = max([since, *(c.updated_at for c in listing.comments)])
        # The ETag belongs to this URL (this ``since``): kept only while the cursor stays.
        self.store.put_listen("listens", spec.repository, since=cursor, etag=listing.etag if cursor == since else None)

    def _queue(self, spec: ListenSpec, key: str, comment: IssueComment) -> None:
        log.info("[listen %s] request by %s (%s) on %s#%d", key, comment.user, comment.association,
                 spec.repository, comment.issue)
        self.store.put_listen("listen_requests", key, repo=spec.repository, issue=comment.issue,
                              comment_id=comment.id, author=comment.user, status="queued", updated_at=utc_now(),
                              request={"body": comment.body, "association": comment.association,
                                       "url": comment.url})

    # -- serving ------------------------------------------------------------------

    def serve(self, spec: ListenSpec) -> None:
        """Serve every open request of ``spec``'s repository, oldest first."""
        for job in self.store.open_requests(spec.repository, OPEN):
            self._serve(spec, job)

    def _set(self, job: dict, **fields) -> None:
        job.update(fields)
        self.store.put_listen("listen_requests", job["key"], updated_at=utc_now(), **fields)

    def say(self, job: dict, body: str) -> None:
        """Create or update the request's one answer comment."""
        issue = IssueRef(*job["repo"].split("/"), job["issue"])
        if job.get("answer_id"):
            try:
                self.api.update(issue, job["answer_id"], body)
                return
            except IssueNotFound:  # someone deleted the answer: post it again
                log.warning("[listen %s] the answer comment %s is gone; posting a new one", job["key"],
                            job["answer_id"])
        self._set(job, answer_id=self.api.create(issue, body).id)

    def _serve(self, spec: ListenSpec, job: dict) -> None:
        repo, issue = spec.repository, IssueRef(*spec.repository.split("/"), job["issue"])
        request = job.get("request") or {}
        if spec.labels and not set(spec.labels) & set(self.api.issue_labels(repo, job["issue"])):
            log.info("[listen %s] %s has none of the labels %s; ignored", job["key"], issue, ", ".join(spec.labels))
            return self._set(job, status="ignored")
        comments = self._mine(self.api.comments(issue))
        if not spec.allows(job["author"], request.get("association", "NONE")):
            key = listenreply.denied_key(repo, job["issue"], job["author"])
            if not any(listenreply.denial_of(c.body) == key for c in comments):
                self.api.create(issue, listenreply.denied(key, job["author"], spec.who_may_ask()))
            log.warning("[listen %s] %s may not ask for runs here; nothing runs", job["key"], job["author"])
            return self._set(job, status="denied")
        answers = [c for c in comments if (listenreply.answer_of(c.body) or ("",))[0] == job["key"]]
        if answers:
            self._set(job, answer_id=min(answers, key=lambda c: c.id).id)
            if any(listenreply.answer_of(c.body)[1] == listenreply.DONE for c in answers):
                log.info("[listen %s] already answered (%s); not run again", job["key"], answers[0].url)
                return self._set(job, status="done")
        path = self.settings.cache.root / "requests" / f"{job['key'].replace('/', '_')}.py"
        try:
            parsed = parse_request(request.get("body", ""), path)
        except RequestInvalid as exc:
            log.warning("[listen %s] cannot run: %s", job["key"], exc)
            self.say(job, listenreply.invalid(job["key"], job["author"], str(exc)))
            self.api.react(repo, job["comment_id"], CONFUSED)
            return self._set(job, status="invalid")
        self._run(spec, job, parsed, path)

    def _run(self, spec: ListenSpec, job: dict, parsed: RunRequest, path: Path) -> None:
        if job["status"] == "queued":
            self.api.react(spec.repository, job["comment_id"], EYES)
            self._set(job, status="running", recipe=parsed.recipe.text, recipe_hash=parsed.recipe.hash,
                      request={**job["request"], "tokens": list(parsed.tokens), "started": time.time()})
        shown = (job["key"], job["author"], _command(job), job["recipe"], job["recipe_hash"])
        if not job.get("answer_id"):
            self.say(job, listenreply.progress(*shown, []))
        if job["status"] == "running":
            result = self._bisect(spec, job, parsed, path)
            self._set(job, status="finished", run_id=result.get("run_id"),
                      request={**job["request"], "result": result})
        result = job["request"]["result"]
        found = result.get("status") == "found"
        if result.get("run_id"):
            run_id = result["run_id"]
            details = report.markdown(self.store.get_run(run_id), self.store.probes_for_run(run_id))
        else:
            details = result["error"]
        title = str(result["status"]).replace("-", " ") if "status" in result else result["title"]
        self.say(job, listenreply.final(*shown, title + (" :rocket:" if found else " :confused:"), details))
        self.api.react(spec.repository, job["comment_id"], ROCKET if found else CONFUSED)
        log.info("[listen %s] answered: %s", job["key"], result.get("status") or result.get("title"))
        self._set(job, status="done")

    def _bisect(self, spec: ListenSpec, job: dict, parsed: RunRequest, path: Path) -> dict:
        """Run the request's bisection (resumed by signature); the outcome as a result dict."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(parsed.recipe.text, encoding="utf-8")
        recipe = replace(parsed.recipe, path=path.resolve(), given=str(path))
        index = IndexConfig.resolve(secrets.environ(), index_url=spec.index_url)
        settings = replace(self.settings, index=index)
        timeout = min(parsed.timeout or recipe.settings.timeout, spec.timeout_s)
        regress = parsed.regress or RegressMode(recipe.settings.regress or RegressMode.EXIT.value)
        req = BisectRequest(recipe=recipe, package=parsed.package, spec=parsed.range or recipe.settings.range,
                            good=parsed.good, bad=parsed.bad, with_=parsed.with_ or recipe.settings.with_,
                            pre=parsed.pre or recipe.settings.pre, timeout=timeout, regress=regress,
                            thresholds=parsed.thresholds, find_fix=parsed.find_fix, retries=parsed.retries,
                            argv=["run", str(path), *parsed.tokens], deps=parsed.deps)
        handler = _Progress(self, spec, job, float(job["request"].get("started") or time.time()))
        try:
            with Session(settings, self.store, handler) as session:
                return run_bisection(session, req)
        except LimitReached as exc:
            return {"title": "stopped by a limit", "error": f"{exc}. A narrower --good/--bad range asks for "
                    "fewer probes; the probes so far are kept and reused by the next request."}
        except TrackerError:
            raise
        except EnvbisectError as exc:
            return {"title": "the request failed", "error": str(exc)}
