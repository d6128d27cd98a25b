"""Request-to-first-reaction latency of ``/envbisect run`` on the loopback GitHub server.

    .venv/bin/python bench/bench_listen.py [--requests 5] [--poll 1s 0.2s] [--n 16]

Starts the test kit's loopback GitHub server (``tests/support/github_server.py``) and a
loopback index of ``--n`` ``benchpkg`` releases (``bench/_index.py``), then for each poll
interval runs a real ``python -m envbisect watch`` daemon listening on one repository and
posts ``--requests`` requests one after the other (each after the previous one's final
answer). Per request it measures, with the server's clock:

* **first reaction**: from the comment's creation to the daemon's 👀 on it: the poll wait
  (uniform in [0, poll)) plus the pick-up (list, queue, read the issue, react);
* **answer**: to the final answer (``envbisect:state done``), the whole bisection included.

The daemon's start is excluded (requests are posted once it polled); the first request of
each daemon pays for the environment builds the later ones reuse.
Prints figures; always exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _index import build_fixture, clean_environ  # puts tests/ on sys.path

from support.github_server import FakeGitHub  # noqa: E402

TOKEN = "bench-listen-token-not-real"
SLUG = "octo/bench"


def _wait(predicate, timeout: float = 120.0) -> float | None:
    """Poll ``predicate`` until true (its time.time()) or ``timeout`` (None)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return time.time()
        time.sleep(0.01)
    return None


def measure(root: Path, hub: FakeGitHub, fixture, poll: str, requests: int) -> list[tuple[float, float]]:
    slug = f"{SLUG}-{poll.replace('.', '_')}"
    hub.add_issue(slug, 1)
    config = root / f"bisect-{poll}.toml"
    config.write_text(f'[[listen]]\nrepository = "{slug}"\nindex-url = "{fixture.index.url}"\npoll = "{poll}"\n')
    env = clean_environ(GITHUB_TOKEN=TOKEN, GITHUB_API_URL=hub.url)
    gets = hub.count("GET")
    daemon = subprocess.Popen([sys.executable, "-m", "envbisect", "watch", "--config", str(config), "--cache-dir",
                               str(root / "cache")], cwd=root, env=env, stdin=subprocess.DEVNULL,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    recipe = fixture.recipe.read_text()
    out = []
    try:
        _wait(lambda: hub.count("GET") > gets, 60)  # the daemon polled once: figures exclude its start
        for i in range(requests):
            body = f"/envbisect run --good {fixture.versions[0]} --bad {fixture.versions[-1]}\n```python\n" \
                   f"{recipe}# request {poll} {i}\n```\n"
            comment = hub.add_comment(slug, 1, body, user="maint", association="OWNER")
            reacted = _wait(lambda: "eyes" in hub.reactions_on(comment.id))
            answered = _wait(lambda: any(f"request {slug}/{comment.id} " in c.body and "state done" in c.body
                                         for c in list(hub.comments)))
            if reacted is None or answered is None:
                print(f"  poll {poll}: request {i} was not answered in time")
                break
            out.append((reacted - comment.created, answered - comment.created))
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--poll", nargs="+", default=["1s", "0.2s"])
    parser.add_argument("--n", type=int, default=16, help="releases on the index")
    args = parser.parse_args()
    print(f"loopback GitHub server and index on 127.0.0.1; {args.n} releases, {args.requests} requests per poll "
          f"interval; Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory(prefix="bench-listen-") as tmp:
        root = Path(tmp)
        fixture = build_fixture(root / "fixture", args.n, 20240229)
        hub = FakeGitHub(token=TOKEN).start()
        try:
            print("| poll | first reaction: median | min | max | final answer: median | max |")
            print("| --- | --- | --- | --- | --- | --- |")
            for poll in args.poll:
                rows = measure(root, hub, fixture, poll, args.requests)
                if not rows:
                    print(f"| {poll} | ERROR | | | | |")
                    continue
                first, answer = [r[0] for r in rows], [r[1] for r in rows]
                print(f"| {poll} | {statistics.median(first):.2f} s | {min(first):.2f} s | {max(first):.2f} s "
                      f"| {statistics.median(answer):.2f} s | {max(answer):.2f} s |")
        finally:
            hub.stop()
            fixture.index.stop()


if __name__ == "__main__":
    main()
