"""The oTree project the stack serves: where it is, whether it can be built, what it needs."""
import os
import re
import subprocess

from .console import StackError, warn
from .envfile import REPO_ROOT


def directory(folder, inside_repository=True):
    """The project folder, checked: inside this repository (Docker can only copy files from
    inside it; a laptop that ships it elsewhere says inside_repository=False), with the files the
    image needs, on an oTree the image can install."""
    shown = os.path.relpath(folder, REPO_ROOT) if inside_repository else folder
    outside = (os.path.commonpath([os.path.realpath(folder), REPO_ROOT]) != REPO_ROOT
               or os.path.realpath(folder) == REPO_ROOT)
    if inside_repository and outside:
        raise StackError(f"The project folder {folder} is outside this repository ({REPO_ROOT}). Docker can only "
                         "build from inside it: copy your project into a folder here, e.g. ./my_study, "
                         "and use that folder.")
    if not os.path.isdir(folder):
        raise StackError(f"The project folder {shown} does not exist. Give the folder that holds your oTree "
                         "project's settings.py.")
    for required, why in (("settings.py", "every oTree project has one"),
                          ("requirements.txt", "it pins the oTree version the image installs")):
        if not os.path.isfile(os.path.join(folder, required)):
            raise StackError(f"{shown}/{required} is missing ({why}). Is {shown} your oTree project folder?")
    if pins_otree_before_5(otree_requirement(folder)):
        raise StackError(
            f"{shown}/requirements.txt pins oTree before 5 ({otree_requirement(folder)}), which cannot be "
            "installed here: oTree 3.x refuses Python 3.9 and later, and every maintained Debian ships a "
            "newer Python (trixie 3.13, bookworm 3.11). Nothing was built.\nMove the project to oTree 5 or "
            "later, which runs most oTree 3 apps as they are: on your laptop, pin e.g. otree==6.0.15 in "
            "requirements.txt, `pip install -r requirements.txt`, then run `otree devserver` and your bots "
            "(`otree test SESSION_CONFIG`) and fix what they report; oTree's upgrade notes: "
            "https://otree.readthedocs.io/en/latest/misc/otreelite.html. oTree 5 and later need no Redis.")
    return folder


def _read(folder, filename):
    with open(os.path.join(folder, filename), encoding="utf-8") as handle:
        return handle.read()


def otree_requirement(folder):
    """The specifier list of the otree line in requirements.txt, e.g. '==6.0.15', or None."""
    for line in _read(folder, "requirements.txt").splitlines():
        match = re.match(r"^\s*otree(\[[^\]]*\])?\s*([<>=!~].*)?$", line.split("#")[0], re.I)
        if match:
            return (match.group(2) or "").strip()
    return None


def git_revision(folder):
    """The project's git commit, marked -dirty with uncommitted changes; '' outside git."""
    def git(*args):
        try:
            result = subprocess.run(["git", "-C", folder, *args], capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return result.stdout.strip() if result.returncode == 0 else None
    revision = git("rev-parse", "--short", "HEAD")
    if not revision:
        return ""
    return revision + ("-dirty" if git("status", "--porcelain", "--", ".") else "")


def pins_otree_before_5(specifiers):
    """True when the requirement allows only oTree versions before 5."""
    for spec in (s.strip() for s in (specifiers or "").split(",")):
        match = re.match(r"^(==|~=|<=|<)\s*(\d+)(?:\.(\d+))?", spec)
        if not match:
            continue
        operator, major, minor = match.group(1), int(match.group(2)), int(match.group(3) or 0)
        if operator in ("==", "~=", "<=") and major < 5:
            return True
        if operator == "<" and (major, minor) <= (5, 0):
            return True
    return False


def check_settings(folder):
    """Warnings about settings.py that the stack cannot fix from the env file."""
    settings = _read(folder, "settings.py")
    requirement = otree_requirement(folder)
    if requirement is None:
        warn("requirements.txt has no otree line; the image will not have oTree. Add e.g. otree==6.0.15.")
    elif not re.fullmatch(r"==\s*[\w.]+", requirement):
        warn(f"requirements.txt does not pin oTree to one version (otree{requirement}), so a rebuild may install "
             "a newer oTree than the one you tested. Pin the version you test with, e.g. otree==6.0.15 "
             "(`invoke status` shows the version installed now).")
    secret = re.search(r"^SECRET_KEY\s*=\s*(.+)$", settings, re.M)
    if secret and re.match(r"""^['"]""", secret.group(1).strip()):
        warn("settings.py sets SECRET_KEY to a fixed string, so it is in your code, not in .env. Replace "
             "that line with: SECRET_KEY = environ.get('OTREE_SECRET_KEY')  (do it before a study starts: "
             "a new key breaks links already sent out).")
    if re.search(r"^AUTH_LEVEL\s*=", settings, re.M):
        warn("settings.py sets AUTH_LEVEL, which overrides OTREE_AUTH_LEVEL from .env. Remove that line.")


def admin_username(folder):
    match = re.search(r"""^ADMIN_USERNAME\s*=\s*['"]([^'"]+)['"]""", _read(folder, "settings.py"), re.M)
    return match.group(1) if match else "admin"
