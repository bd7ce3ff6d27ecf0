"""What a new connection for every request costs oTree, as nginx makes one for each request it
passes on: the example's participant flow (benchmarks/stack_vs_bare.py's) against a bare oTree,
from clients that keep their connections open and from clients that close them after each request
(`Connection: close`), alternated. Prints requests/s and oTree's CPU time a request, medians and
the ratio close/keep.

    .venv-test/bin/python benchmarks/connection_per_request.py [--participants 150] [--pairs 6] [--tiny]

It starts a bare oTree (the stack's oTree image, a Postgres of its own) named otreeconn-bench on
127.0.0.1:19891 and removes it when it ends, also on Ctrl-C.

--tiny: one pair of two participants from one client, the smallest run that still takes every
step, for the test suite (tests/test_benchmarks_run.py), so the script cannot rot unnoticed; its
figures mean nothing."""
import argparse
import os
import signal
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from benchmarks import stack_vs_bare  # noqa: E402
from stack import envfile  # noqa: E402
from tests import bare  # noqa: E402

NAME = "otreeconn-bench"
PORT = 19891


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--participants", type=int, default=150, help="participants per run (default 150)")
    parser.add_argument("--concurrency", type=int, default=10, help="clients at once (default 10)")
    parser.add_argument("--pairs", type=int, default=6, help="keep/close pairs (default 6)")
    parser.add_argument("--tiny", action="store_true", help="one pair of two participants (the test suite's run)")
    arguments = parser.parse_args()
    if arguments.tiny:
        arguments.participants, arguments.concurrency, arguments.pairs = 2, 1, 1
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))

    def closing():
        http = stack_vs_bare.client()
        http.headers["Connection"] = "close"
        return http

    server = None
    try:
        image = bare.build_otree_image("connbench", os.path.join(envfile.REPO_ROOT, "otree_project"))
        server = bare.BareOtree(NAME, image, bare.build_postgres_image("connbench"), PORT).start()
        target = stack_vs_bare.Target("bare", server.url, server.rest_key, f"{NAME}-otree")
        stack_vs_bare.flow(target, arguments.concurrency, arguments.concurrency)  # templates compiled: not measured
        rows = {"keep": [], "close": []}
        for pair in range(arguments.pairs):
            for way in (("keep", "close") if pair % 2 == 0 else ("close", "keep")):
                new_client = closing if way == "close" else stack_vs_bare.client
                rows[way].append(stack_vs_bare.flow(target, arguments.participants, arguments.concurrency, new_client))
                requests_per_second, p95, cpu = rows[way][-1]
                print(f"pair {pair + 1} {way:<5} {requests_per_second:6.1f} req/s p95 {p95:6.1f} ms "
                      f"cpu {cpu:5.2f} ms/req", flush=True)
        print(f"\nMedians of {arguments.pairs} pairs:")
        for index, label in ((0, "requests/s"), (2, "oTree CPU ms/req")):
            keep, close = (statistics.median(row[index] for row in rows[way]) for way in ("keep", "close"))
            ratios = [c[index] / k[index] for k, c in zip(rows["keep"], rows["close"])]
            print(f"  {label:<17} keep {keep:6.2f}  close {close:6.2f}  close/keep x{statistics.median(ratios):.2f} "
                  f"(pairs: {', '.join(f'{r:.2f}' for r in ratios)})")
    finally:
        if server:
            server.stop()


if __name__ == "__main__":
    main()
