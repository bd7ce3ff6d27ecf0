"""This machine's own Debian mirrors, read from its apt sources, so that images and the
debootstrapped base use the same mirror (and proxy rules) as the host. No host name is
written anywhere: it is read at run time."""
import glob
import re

SOURCE_FILES = ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list")),
                *sorted(glob.glob("/etc/apt/sources.list.d/*.sources"))]


def _uris(path):
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError:
        return []
    uris = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("URIs:"):
            uris += line.split()[1:]
        elif re.match(r"deb\s", line):
            uris += [word for word in line.split()[1:] if "://" in word][:1]
    return uris


def _all_uris(files=None):
    return [uri for path in (files or SOURCE_FILES) for uri in _uris(path)]


def debian_mirror(files=None):
    """The first Debian archive (not security) URI, or None."""
    for uri in _all_uris(files):
        if re.search(r"/debian/?$", uri):
            return uri.rstrip("/")
    return None


def debian_security_mirror(files=None):
    for uri in _all_uris(files):
        if re.search(r"/debian-security/?$", uri):
            return uri.rstrip("/")
    return None


if __name__ == "__main__":
    print(debian_mirror() or "")
