"""The markers that tell nginx's entrypoint which certificate a study has (self-signed-for,
issued-for, provided-for): the entrypoint makes a self-signed certificate over the study's files
whenever none names the study, so installing a real one must never pass through a moment without
one. Each installer (certbot's deploy hook, nginx/install-certificate.sh) runs from the checkout in
its image's shell, with rm and mv wrapped to record the markers after every file they move."""
import os
import subprocess

import pytest

from stack import settings
from tests.helpers import REPO_ROOT

pytestmark = pytest.mark.docker

DOMAIN = "study.example.edu"
CERTS = "/etc/nginx/certs/s1"
# Run in the container, with the real tool's path filled in: the tool, then the markers it left.
WRAPPER = """#!/bin/sh
{real} "$@" || exit $?
cd {certs} && echo "$(basename "$0") $*: $(for m in self-signed-for issued-for provided-for; do
  [ -f $m ] && printf '%s=%s ' $m "$(cat $m)"; done)" >> /tmp/steps
"""
# The study as nginx's entrypoint leaves it before a real certificate: a self-signed one, marked.
SETUP = f"""set -eu
mkdir -p {CERTS} /tmp/wrapped /tmp/new /tmp/live
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN={DOMAIN} -keyout {CERTS}/privkey.pem \\
  -out {CERTS}/fullchain.pem 2>/dev/null
echo {DOMAIN} > {CERTS}/self-signed-for
for tool in rm mv; do
  real=$(command -v $tool)
  sed "s|{{real}}|$real|; s|{{certs}}|{CERTS}|" /markers/wrapper > /tmp/wrapped/$tool
  chmod 755 /tmp/wrapped/$tool
done
: > /tmp/steps
"""
# A certificate authority and a certificate it signed for DOMAIN: a full chain install-certificate accepts.
NEW_CERTIFICATE = f"""openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=Test-CA -keyout /tmp/new/ca.key \\
  -out /tmp/new/ca.pem 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj /CN={DOMAIN} -addext subjectAltName=DNS:{DOMAIN} \\
  -keyout /tmp/new/privkey.pem -out /tmp/new/request.pem 2>/dev/null
printf 'subjectAltName=DNS:{DOMAIN}\\n' > /tmp/new/san
openssl x509 -req -in /tmp/new/request.pem -CA /tmp/new/ca.pem -CAkey /tmp/new/ca.key -days 20 \\
  -extfile /tmp/new/san -out /tmp/new/leaf.pem 2>/dev/null
cat /tmp/new/leaf.pem /tmp/new/ca.pem > /tmp/new/fullchain.pem
"""
REPORT = f"""echo "STEPS"; cat /tmp/steps
echo "SUBJECT $(openssl x509 -in {CERTS}/fullchain.pem -noout -subject)"
ls -A {CERTS}
"""


def run_in(image, script, mounts, tmp_path):
    (tmp_path / "wrapper").write_text(WRAPPER)
    os.chmod(tmp_path, 0o755)
    os.chmod(tmp_path / "wrapper", 0o644)
    command = ["docker", "run", "--rm", "--entrypoint", "sh", "-v", f"{tmp_path}:/markers:ro"]
    for source, target in mounts:
        command += ["-v", f"{source}:{target}:ro"]
    command += [image, "-c", script]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    steps = result.stdout.split("STEPS\n", 1)[1].split("SUBJECT ", 1)[0].splitlines()
    subject, *files = result.stdout.split("SUBJECT ", 1)[1].splitlines()
    return steps, subject, set(files)


def assert_a_marker_names_the_study_throughout(steps):
    """After every file moved or removed, a marker names the study: nginx never re-makes a self-signed one."""
    assert steps, "the wrapped tools were not used"
    bare = [step for step in steps if f"={DOMAIN}" not in step.split(":", 1)[1]]
    assert not bare, f"no marker for {DOMAIN} after: {bare} (all steps: {steps})"


def image(stack, service):
    return f"otree-stack/{service}:{settings.load(stack.env_path).server.name}"


def test_certbots_deploy_hook_marks_the_real_certificate_before_removing_the_self_signed_marker(stack, tmp_path):
    hook = os.path.join(REPO_ROOT, "certbot", "deploy-hook.sh")
    # certbot's lineage folder is named after the study.
    script = SETUP + NEW_CERTIFICATE + f"""mv /tmp/new /tmp/live/s1
PATH=/tmp/wrapped:$PATH RENEWED_LINEAGE=/tmp/live/s1 RENEWED_DOMAINS="{DOMAIN} www.{DOMAIN}" sh /hook.sh
""" + REPORT
    steps, subject, files = run_in(image(stack, "certbot"), script, [(hook, "/hook.sh")], tmp_path)
    assert_a_marker_names_the_study_throughout(steps)
    assert steps[-1].split(":", 1)[1].split() == [f"issued-for={DOMAIN}"], steps
    assert subject.endswith(f"CN={DOMAIN}") and files == {"fullchain.pem", "privkey.pem", "issued-for"}


def test_install_certificate_marks_the_provided_certificate_before_removing_the_self_signed_marker(stack, tmp_path):
    installer = os.path.join(REPO_ROOT, "nginx", "install-certificate.sh")
    script = SETUP + NEW_CERTIFICATE + f"""
tar -C /tmp/new -c fullchain.pem privkey.pem | PATH=/tmp/wrapped:$PATH STUDY=s1 DOMAIN={DOMAIN} sh /install.sh
""" + REPORT
    steps, subject, files = run_in(image(stack, "nginx"), script, [(installer, "/install.sh")], tmp_path)
    assert_a_marker_names_the_study_throughout(steps)
    assert steps[-1].split(":", 1)[1].split() == [f"provided-for={DOMAIN}"], steps
    assert subject.endswith(f"CN={DOMAIN}") and files == {"fullchain.pem", "privkey.pem", "provided-for"}
