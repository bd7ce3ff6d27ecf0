"""Gather the static files that oTree would serve into one folder that nginx serves instead.

oTree looks in the project's _static, then otree/static, then each app's static/ and the first
match wins; copying in the reverse order, later copies overwriting, gives the same answer."""
import os
import shutil
import sys

import otree


def static_dirs_by_precedence(project_dir):
    app_dirs = sorted(
        os.path.join(project_dir, name, "static")
        for name in os.listdir(project_dir)
        if os.path.isdir(os.path.join(project_dir, name, "static"))
    )
    return [os.path.join(project_dir, "_static"), os.path.join(os.path.dirname(otree.__file__), "static"), *app_dirs]


def collect(project_dir, target):
    os.makedirs(target, exist_ok=True)
    for source in reversed(static_dirs_by_precedence(project_dir)):
        if os.path.isdir(source):
            shutil.copytree(source, target, dirs_exist_ok=True)


if __name__ == "__main__":
    collect(sys.argv[1], sys.argv[2])
