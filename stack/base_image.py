"""The Debian base image that every service image is built from.

Pulled from a registry where one answers. Where none does (an air-gapped lab network,
Docker Hub rate limits), it is built with debootstrap from this machine's Debian mirror, and
the host's CA trust store is carried into it so that package downloads behind a
TLS-intercepting proxy keep working inside the images."""
import os
import shutil
import subprocess
import tempfile

from . import apt_sources
from .console import StackError, info, step, warn

SUITE = "trixie"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
PULL_TIMEOUT_SECONDS = 120


def exists(image):
    return subprocess.run(["docker", "image", "inspect", image],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0


def ensure(image):
    """Make sure `image` is present: already there, pulled, or built with debootstrap."""
    if exists(image):
        return
    step(f"The base image {image} is missing; fetching it")
    refresh(image)


def refresh(image):
    """A fresh base image for `invoke rebuild --pull`: pulled anew, or rebuilt with debootstrap."""
    try:
        pulled = subprocess.run(["docker", "pull", image], timeout=PULL_TIMEOUT_SECONDS).returncode == 0
    except subprocess.TimeoutExpired:
        pulled = False
    if not pulled:
        info("No registry answered: rebuilding it with debootstrap from this machine's Debian mirror.")
        build(image)


def build(image):
    """Build `image` from this machine's Debian mirror with debootstrap."""
    if image.split(":")[0] != "debian" or not image.endswith(SUITE + "-slim"):
        warn(f"BASE_IMAGE is {image}; debootstrap builds Debian {SUITE} and tags it with that name.")
    if not shutil.which("debootstrap"):
        raise StackError("debootstrap is needed to build the base image but is not installed.\n"
                         "Fix: sudo apt-get install debootstrap   (or run ./setup.sh, which does it)")
    mirror = apt_sources.debian_mirror()
    if not mirror:
        raise StackError("No Debian mirror found in /etc/apt/sources.list(.d). debootstrap needs one; "
                         "or pull the base image on a machine with registry access and `docker load` it here.")
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    step(f"Building {image} with debootstrap (Debian {SUITE}, minbase); this takes a few minutes")
    workdir = tempfile.mkdtemp(prefix="otree-base-", dir="/var/tmp")
    rootfs = os.path.join(workdir, "rootfs")
    try:
        _run(sudo + ["debootstrap", "--variant=minbase", SUITE, rootfs, mirror])
        _write_sources(sudo, rootfs, mirror)
        _carry_ca_trust(sudo, rootfs)
        _run(sudo + ["sh", "-c", f"rm -rf {rootfs}/var/cache/apt/archives/*.deb {rootfs}/var/lib/apt/lists/*"])
        tar = subprocess.Popen(sudo + ["tar", "-C", rootfs, "-c", "."], stdout=subprocess.PIPE)
        subprocess.run(["docker", "import", "--change", 'CMD ["bash"]',
                        "--change", "LABEL org.otree-stack.built-by=debootstrap", "-", image],
                       stdin=tar.stdout, check=True, stdout=subprocess.DEVNULL)
        if tar.wait() != 0:
            raise StackError("Packing the debootstrapped root file system failed; see the messages above.")
    except subprocess.CalledProcessError as error:
        raise StackError(f"Building the base image failed at: {' '.join(error.cmd)}\n"
                         "Check that this machine can reach its Debian mirror (sudo apt-get update).")
    finally:
        subprocess.run(sudo + ["rm", "-rf", workdir])
    info(f"Built {image}.")


def _write_sources(sudo, rootfs, mirror):
    """The same sources as the official image: the suite, its updates and security."""
    lines = [f"deb {mirror} {SUITE} main", f"deb {mirror} {SUITE}-updates main"]
    security = apt_sources.debian_security_mirror()
    if security:
        lines.append(f"deb {security} {SUITE}-security main")
    subprocess.run(sudo + ["tee", f"{rootfs}/etc/apt/sources.list"], input="\n".join(lines) + "\n",
                   text=True, stdout=subprocess.DEVNULL, check=True)


def _carry_ca_trust(sudo, rootfs):
    """Images that install ca-certificates then trust whatever the host trusts."""
    if os.path.exists(HOST_CA_BUNDLE):
        _run(sudo + ["install", "-D", "-m", "644", HOST_CA_BUNDLE,
                     f"{rootfs}/usr/local/share/ca-certificates/host-ca-bundle.crt"])


def _run(command):
    subprocess.run(command, check=True)


def built_here(image):
    """True when `image` came from `build` rather than a registry."""
    result = subprocess.run(["docker", "image", "inspect", "--format",
                             '{{ index .Config.Labels "org.otree-stack.built-by" }}', image],
                            capture_output=True, text=True)
    return result.stdout.strip() == "debootstrap"
