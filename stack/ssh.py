"""Every command the laptop sends a server, over OpenSSH with the user's own keys and agent.

The builders (`command`, `in_stack`) only build argument lists, so what a deploy sends is tested
without a server; `run` executes one and turns ssh's own failures into messages that say what
to do. No rsync, no Docker and no password on the laptop: files travel as a tar stream."""
import os
import shlex
import subprocess
import sys
import threading

from .console import StackError

# BatchMode: never ask for a password (a refused key fails at once, with a message); keep-alives
# notice a lost connection within 30 s; a new server's host key is recorded on first contact and
# checked ever after.
OPTIONS = ("-o", "BatchMode=yes", "-o", "ConnectTimeout=15", "-o", "ServerAliveInterval=10",
           "-o", "ServerAliveCountMax=3", "-o", "StrictHostKeyChecking=accept-new")
NO_STACK = 97  # the remote shell's exit code when the stack's folder is not there


def command(server, remote, tty=False):
    """ssh's argument list running the shell command `remote` on the server. OTREE_SSH_CONFIG
    names an ssh config file to use instead of ~/.ssh/config (the tests' own keys and hosts)."""
    config = os.environ.get("OTREE_SSH_CONFIG")
    return ["ssh", *(["-F", config] if config else []), *OPTIONS, *(["-t"] if tty else []),
            "-p", str(server.port), server.target, remote]


def enter_stack(server):
    """Shell: into the stack's folder, or exit NO_STACK when it is not there."""
    return f"cd {shlex.quote(server.path)} 2>/dev/null && test -f tasks.py || exit {NO_STACK}"


def in_stack(server, *argv):
    """A shell command that runs argv in the stack's folder, or exits NO_STACK without one."""
    return f"{enter_stack(server)}; exec {shlex.join(argv)}"


def invoke_args(server, *args):
    return in_stack(server, "invoke", *args)


def detached_invoke(server, log, *args):
    """Shell: run `invoke ARGS` in the stack's folder detached from this connection (setsid,
    nohup), its output into `log`, and follow that log until it ends; exit with its code. A lost
    connection stops the following, never the task."""
    log = shlex.quote(log)
    return (f"{enter_stack(server)}; : > {log}; "
            "setsid nohup sh -c 'log=$1; shift; PYTHONUNBUFFERED=1 invoke \"$@\" > \"$log\" 2>&1; "
            "echo $? > \"$log.code\"' "
            f"sh {log} {shlex.join(args)} < /dev/null > /dev/null 2>&1 & "
            f"tail -n +1 -f --pid=$! {log}; exit \"$(cat {log}.code 2>/dev/null || echo 1)\"")


def task_args(task, options, extra=()):
    """`invoke TASK --option value ...` as a list, from a task's keyword options (flags for True,
    nothing for None, False and [], a list's values each with its flag; set_ is --set) and
    what followed `--`."""
    args = [task.replace("_", "-")]
    for key, value in options.items():
        flag = "--" + key.strip("_").replace("_", "-")
        for one in (value if isinstance(value, list) else [value]):
            if one is None or one is False:
                continue
            args += [flag] if one is True else [flag, str(one)]
    return args + (["--", *extra] if extra else [])


def diagnose(server, stderr):
    """ssh's own error (exit 255) in the words of someone who runs studies."""
    text = stderr.lower()
    where = f"{server.target} (port {server.port})"
    if "permission denied" in text:
        return (f"The server '{server.name}' refused your SSH key at {where}. Add your public key to the server's "
                f"~/.ssh/authorized_keys (e.g. `ssh-copy-id -p {server.port} {server.target}`), or load it into "
                "your agent with `ssh-add`, then try again. Nothing was changed.")
    if "host key verification failed" in text or "remote host identification has changed" in text:
        return (f"The server '{server.name}' at {where} presents a different host key than the one recorded in "
                "~/.ssh/known_hosts. If the server was reinstalled, remove the old key with "
                f"`ssh-keygen -R {server.target.split('@')[-1]}`; otherwise do not connect. Nothing was changed.")
    if "could not resolve" in text or "name or service not known" in text:
        return (f"The host name of the server '{server.name}' ({server.target}) does not resolve. Check the name "
                "in servers.ini (`invoke servers`). Nothing was changed.")
    if any(word in text for word in ("connection refused", "timed out", "no route to host", "network is unreachable")):
        return (f"The server '{server.name}' cannot be reached at {where}: {stderr.strip().splitlines()[-1]}. Check "
                "that it is running, its address and SSH port (`invoke servers`), and your network. Nothing was "
                "changed.")
    if "broken pipe" in text or "connection reset" in text or "timeout, server" in text or "closed by remote" in text:
        return (f"The SSH connection to the server '{server.name}' was lost. Whatever the server was doing it "
                "finishes on its own (a deploy completes or puts the previous release back); check with "
                f"`invoke releases --on {server.name}` and `invoke status --on {server.name}`.")
    last = stderr.strip().splitlines()[-1] if stderr.strip() else "no message"
    return f"SSH to the server '{server.name}' ({where}) failed: {last}"


def _forward(stream, sink, kept):
    for line in iter(stream.readline, b""):
        kept.append(line.decode("utf-8", "replace"))
        del kept[:-50]
        sink.write(line)
        sink.flush()


def run(server, remote, stdin=None, tty=False, capture=False, consume=None):
    """Run a shell command on the server. Its output streams to ours, or is returned with capture,
    or is handed as a byte stream to consume(stream); ssh's own failures and a missing stack raise
    StackError. Returns (exit code, stdout text when captured)."""
    argv = command(server, remote, tty=tty)
    try:
        process = subprocess.Popen(argv, stdin=stdin if stdin is not None else (None if tty else subprocess.DEVNULL),
                                   stdout=subprocess.PIPE if capture or consume else None, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise StackError("OpenSSH's `ssh` command is not installed on this computer. Install it (Debian/Ubuntu: "
                         "openssh-client; macOS has it; Windows: the optional feature \"OpenSSH Client\").") from None
    kept = []
    forwarder = threading.Thread(target=_forward, args=(process.stderr, sys.stderr.buffer, kept), daemon=True)
    forwarder.start()
    output = ""
    if consume:
        try:
            consume(process.stdout)
        finally:
            process.stdout.close()
    elif capture:
        output = process.stdout.read().decode("utf-8", "replace")
    code = process.wait()
    forwarder.join()
    if code == 255:
        raise StackError(diagnose(server, "".join(kept)))
    if code == NO_STACK:
        raise StackError(f"The server '{server.name}' has no stack in {server.path}. Install it with "
                         f"`invoke server setup {server.name}`, or correct the folder in servers.ini.")
    return code, output
