"""What one database round trip costs oTree: from inside a study's oTree container, the same
queries over Postgres's Unix socket (how the stack's oTree connects) and over TCP on the study's
internal network (how oTree usually connects: DATABASE_URL with a host name), alternated.
Prints the medians in microseconds and the ratio socket/TCP.

    .venv-test/bin/python benchmarks/postgres_round_trip.py [--study NAME] [--rounds 5] [--tiny]

--tiny: one round of a few queries, the smallest run that still takes every step, for the test
suite (tests/test_benchmarks_run.py), so the script cannot rot unnoticed; its figures mean nothing.

It uses the stack of the env file in OTREE_STACK_ENV (or .env), which must be running. It only
reads, and writes one row back unchanged: an UPDATE of a scratch temporary table and a COMMIT,
which is what each of oTree's page submits ends with."""
import argparse
import os
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from stack import compose, settings  # noqa: E402

# Runs in the oTree container, with oTree's own psycopg2 and DATABASE_URL's password.
PROBE = r'''
import os, sys, time, urllib.parse
import psycopg2
url = urllib.parse.urlsplit(os.environ["DATABASE_URL"])
password = urllib.parse.unquote(url.password)
socket_folder = urllib.parse.parse_qs(url.query)["host"][0]
ways = {"socket": dict(host=socket_folder), "tcp": dict(host="postgres", port=5432)}
rounds, queries, commits = (int(value) for value in sys.argv[1:4])
for round_number in range(rounds):
    for way in (("socket", "tcp") if round_number % 2 == 0 else ("tcp", "socket")):
        connection = psycopg2.connect(dbname="otree", user="otree", password=password, **ways[way])
        cursor = connection.cursor()
        cursor.execute("CREATE TEMPORARY TABLE scratch (n integer)")
        cursor.execute("INSERT INTO scratch VALUES (1)")
        connection.commit()
        for _ in range(200):  # warm-up
            cursor.execute("SELECT 1")
        started = time.perf_counter()
        for _ in range(queries):
            cursor.execute("SELECT 1")
            cursor.fetchall()
        select = (time.perf_counter() - started) / queries
        started = time.perf_counter()
        for _ in range(commits):
            cursor.execute("UPDATE scratch SET n = n")
            connection.commit()
        commit = (time.perf_counter() - started) / commits
        connection.close()
        print(way, select * 1e6, commit * 1e6, flush=True)
'''


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--study", help="the study whose oTree and Postgres to use (default: the only one)")
    parser.add_argument("--rounds", type=int, default=5, help="alternations of socket and TCP (default 5)")
    parser.add_argument("--queries", type=int, default=3000, help="SELECT 1 per round and way (default 3000)")
    parser.add_argument("--commits", type=int, default=300, help="UPDATE + COMMIT per round and way (default 300)")
    parser.add_argument("--tiny", action="store_true", help="one round of a few queries (the test suite's run)")
    arguments = parser.parse_args()
    if arguments.tiny:
        arguments.rounds, arguments.queries, arguments.commits = 1, 20, 5
    study = settings.load().study(arguments.study)
    project = compose.for_study(study)
    result = project.run("exec", "-T", "otree", "python", "-c", PROBE, str(arguments.rounds), str(arguments.queries),
                         str(arguments.commits), capture=True)
    figures = {"socket": ([], []), "tcp": ([], [])}
    for line in result.stdout.splitlines():
        way, select, commit = line.split()
        figures[way][0].append(float(select))
        figures[way][1].append(float(commit))
    print(f"Study {study.name}, {arguments.rounds} rounds alternated, medians (one round trip is one SELECT 1):")
    for index, label in ((0, "SELECT 1"), (1, "UPDATE + COMMIT")):
        socket, tcp = statistics.median(figures["socket"][index]), statistics.median(figures["tcp"][index])
        print(f"  {label:<16} socket {socket:6.0f} us   TCP {tcp:6.0f} us   socket/TCP x{socket / tcp:.2f}")


if __name__ == "__main__":
    main()
