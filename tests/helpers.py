"""Helpers for the end-to-end tests: run the README's invoke tasks, query the real Postgres."""
import os
import subprocess

from stack import envfile
from stack.compose import Compose

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def invoke(env_path, *args, check=True, timeout=900, stdin=subprocess.DEVNULL):
    """Run `invoke ARGS` as a user would, against the stack described by env_path."""
    result = subprocess.run(["invoke", *args], cwd=REPO_ROOT, env=dict(os.environ, OTREE_STACK_ENV=env_path),
                            capture_output=True, text=True, timeout=timeout, stdin=stdin)
    if check and result.returncode:
        raise AssertionError(f"invoke {' '.join(args)} failed ({result.returncode}):\n"
                             f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}")
    return result


def compose(env_path, stack_name, *args, check=True):
    """`docker compose ARGS` for a test stack, with the values invoke derives (stack.compose)."""
    stack = Compose(env_path, envfile.load(env_path))
    assert stack.name == stack_name
    return subprocess.run(stack.command(*args), env=stack.environment, cwd=REPO_ROOT, capture_output=True,
                          text=True, check=check)


def containers_of(stack_name):
    result = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter",
                             f"label=com.docker.compose.project={stack_name}"],
                            capture_output=True, text=True, check=True)
    return result.stdout.split()


def psql(env_path, stack_name, sql):
    """Rows of a query in the stack's Postgres, as lists of strings (run inside its container,
    since the database is never published on the host)."""
    result = compose(env_path, stack_name, "exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "otree",
                     "--no-align", "--tuples-only", "--field-separator", "|", "-c", sql, check=False)
    assert result.returncode == 0, f"psql failed: {result.stderr}"
    return [line.split("|") for line in result.stdout.splitlines() if line]


def write_env(path, values):
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(f"{key}={value}\n" for key, value in values.items())
    os.chmod(path, 0o600)
