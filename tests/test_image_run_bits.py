"""Each image sets the run bits of the programs it starts, so a stack whose files arrived without
them (copied from Windows, unpacked from a zip) still starts: built here from copies of the build
contexts with every file 0644, each program is executable in its image. (The oTree image does the
same for its `otree` command; building it again here would reinstall a project's requirements.)"""
import os
import secrets
import shutil
import subprocess

import pytest

from stack import settings
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.docker

PROGRAMS = {"nginx": ["/usr/local/bin/nginx-entrypoint", "/usr/local/bin/install-certificate"],
            "postgres": ["/usr/local/bin/postgres-entrypoint"],
            "certbot": ["/usr/local/bin/acme", "/usr/local/bin/acme-deploy-hook"]}


@pytest.mark.parametrize("context", sorted(PROGRAMS))
def test_an_image_built_from_files_without_run_bits_runs_its_programs(tmp_path, context):
    copy = tmp_path / context
    shutil.copytree(os.path.join(REPO_ROOT, context), copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    tag = f"otree-stack/run-bits-test:{context}-{secrets.token_hex(4)}"
    base_image = settings.SERVER_DEFAULTS["BASE_IMAGE"]
    built = subprocess.run(["docker", "build", "-q", "--build-arg", f"BASE_IMAGE={base_image}", "-t", tag, str(copy)],
                           capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-3000:]
    try:
        checked = subprocess.run(["docker", "run", "--rm", "--entrypoint", "sh", tag, "-c",
                                  " && ".join(f"test -x {program}" for program in PROGRAMS[context])],
                                 capture_output=True, text=True)
        assert checked.returncode == 0, f"{context}: {PROGRAMS[context]} not all executable in the image"
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
