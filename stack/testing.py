"""`invoke test`: the test suite's own virtualenv and browser, then pytest."""
import os
import shutil
import subprocess
import sys

from .console import StackError, step
from .envfile import REPO_ROOT

VENV = os.path.join(REPO_ROOT, ".venv-test")
REQUIREMENTS = os.path.join(REPO_ROOT, "tests", "requirements.txt")


def ensure_venv():
    python = os.path.join(VENV, "bin", "python")
    stamp = os.path.join(VENV, "requirements.installed")
    with open(REQUIREMENTS, encoding="utf-8") as handle:
        wanted = handle.read()
    if os.path.exists(stamp):
        with open(stamp, encoding="utf-8") as handle:
            if handle.read() == wanted:
                return python
    step(f"Installing the test tools into {os.path.relpath(VENV, REPO_ROOT)}/ ({os.path.relpath(REQUIREMENTS, REPO_ROOT)})")
    if not os.path.exists(python):
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([python, "-m", "pip", "install", "--quiet", "-r", REQUIREMENTS], check=True)
    with open(stamp, "w", encoding="utf-8") as handle:
        handle.write(wanted)
    return python


def ensure_system_packages():
    """Debian's Chromium for the browser tests (Playwright's own download is not used), and
    Python's venv module, which Debian ships apart."""
    missing = []
    if not shutil.which("chromium"):
        missing.append("chromium")
    if subprocess.run([sys.executable, "-c", "import ensurepip"], capture_output=True).returncode:
        missing.append("python3-venv")
    if not missing:
        return
    step(f"Installing {' '.join(missing)} from your distribution's packages for the tests")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(sudo + ["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(sudo + ["apt-get", "install", "-y", "--no-install-recommends", *missing], check=True, env=env)
    if not shutil.which("chromium"):
        raise StackError("Chromium did not install; the browser tests need it (apt-get install chromium).")


def run(pytest_args, unit=False):
    """The whole suite, or with unit=True only the tests marked `unit` (pure logic: no Docker, no
    Chromium, no system packages)."""
    if unit:
        python = ensure_venv()
        return subprocess.run([python, "-m", "pytest", "-m", "unit", *pytest_args], cwd=REPO_ROOT).returncode
    ensure_system_packages()
    python = ensure_venv()
    return subprocess.run([python, "-m", "pytest", *pytest_args], cwd=REPO_ROOT).returncode
