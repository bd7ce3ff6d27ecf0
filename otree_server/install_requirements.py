"""Install the oTree project's requirements.txt into the image's venv.

oTree's own project template asks for `psycopg2`, which compiles from source and needs a C
toolchain the image does not have; the stack swaps it for `psycopg2-binary`, the same driver
prebuilt, and adds that driver when a project does not list it (oTree does not depend on it).

oTree's bots (`otree test`, run by `invoke otree -- test` and `invoke loadtest`) import
`requests`, which oTree does not depend on either and its project template does not list. It is
added unpinned when missing, in the same pip run as the project's own lines, so pip picks a
version that fits them: what the project pins is installed exactly as pinned."""
import re
import subprocess
import sys

PSYCOPG2_BINARY = "psycopg2-binary==2.9.13"
# What the stack's own commands need in every image, whatever the project lists.
STACK_NEEDS = {"requests": "oTree's bots need it (otree test, invoke loadtest)"}


def adapted_requirements(lines):
    """Return (requirement lines to install, notes on what was changed)."""
    kept, notes = [], []
    has_driver = False
    listed = set()
    for line in lines:
        name = re.split(r"[<>=!~\[; ]", line.strip(), maxsplit=1)[0].lower()
        if name == "psycopg2":
            notes.append(f"replaced '{line.strip()}' with {PSYCOPG2_BINARY} (no compiler in the image)")
            line = PSYCOPG2_BINARY
        listed.add(name)
        if name in ("psycopg2", "psycopg2-binary"):
            has_driver = True
        kept.append(line.rstrip("\n"))
    if not has_driver:
        kept.append(PSYCOPG2_BINARY)
        notes.append(f"added {PSYCOPG2_BINARY}: Postgres needs it and oTree does not install it")
    for package, why in STACK_NEEDS.items():
        if package not in listed:
            kept.append(package)
            notes.append(f"added {package}, in a version that fits your pins: {why}")
    return kept, notes


def main(path):
    with open(path, encoding="utf-8") as handle:
        requirements, notes = adapted_requirements(handle.readlines())
    for note in notes:
        print(f"requirements.txt: {note}")
    adapted = "/tmp/requirements.adapted.txt"
    with open(adapted, "w", encoding="utf-8") as handle:
        handle.write("\n".join(requirements) + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-cache-dir", "-r", adapted], check=True)


if __name__ == "__main__":
    main(sys.argv[1])
