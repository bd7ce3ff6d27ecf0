"""Container healthcheck: the oTree server answers a page, which also touches its database.

It also records the container's CPU counter every time it runs (every 15 s), since it is the one
thing that runs inside the container on a schedule: `invoke status` turns the samples into oTree's
CPU share over the last 5 and 60 minutes (stack/load.py) without a Docker socket anywhere."""
import os
import sys
import time
import urllib.request

CPU_SAMPLES = "/tmp/cpu-samples"
KEEP_SECONDS = 3900
# cgroup v2, then v1: the container's own CPU time, in microseconds and nanoseconds.
COUNTERS = (("/sys/fs/cgroup/cpu.stat", "usage_usec", 1e-6), ("/sys/fs/cgroup/cpuacct/cpuacct.usage", None, 1e-9))


def cpu_seconds():
    for path, key, unit in COUNTERS:
        try:
            with open(path, encoding="ascii") as handle:
                text = handle.read()
        except OSError:
            continue
        if key is None:
            return int(text.strip()) * unit
        for line in text.splitlines():
            name, _, value = line.partition(" ")
            if name == key:
                return int(value) * unit
    return None


def record_cpu():
    used = cpu_seconds()
    if used is None:
        return
    now = time.time()
    try:
        with open(CPU_SAMPLES, encoding="ascii") as handle:
            kept = [line for line in handle if float(line.split()[0]) >= now - KEEP_SECONDS]
    except (OSError, ValueError, IndexError):
        kept = []
    with open(CPU_SAMPLES + ".partial", "w", encoding="ascii") as handle:
        handle.writelines(kept + [f"{now:.0f} {used:.3f}\n"])
    os.replace(CPU_SAMPLES + ".partial", CPU_SAMPLES)


try:
    record_cpu()
except OSError:
    pass  # a full /tmp must not make oTree unhealthy
try:
    urllib.request.urlopen("http://127.0.0.1:8000/login", timeout=10)
except Exception as error:  # any failure means unhealthy; say why in `docker inspect`
    print(f"oTree is not answering: {error}")
    sys.exit(1)
