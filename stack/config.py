"""`invoke config`: a study's settings, as Heroku's config vars.

    invoke config                          every setting, secrets masked
    invoke config --get KEY                one setting (a secret only when asked for by name)
    invoke config --set KEY=VALUE ...      checked with the same rules as `invoke up`, then written
    invoke config --set-secret KEY         the same, the value typed at a hidden prompt or piped in
    invoke config --unset KEY ...          back to the default

A refused value changes nothing. A change is written whole (mode 600), then read back and
compared, then only what it affects starts again: the folders it names are prepared as `invoke
up` prepares them, the proxy reloads for address and limit settings, and Compose recreates the
services whose settings changed (oTree after its page times are saved). Credentials inside URLs
are hidden in the listing; `--get KEY` shows a value whole."""
import getpass
import os
import sys

from . import backups, certificates, context, envfile, lock, pagetimes, proxy, redact, remote, servers
from . import settings as settings_module, ssh, validate
from .console import StackError, info, step

SECRETS = {"OTREE_ADMIN_PASSWORD", "OTREE_REST_KEY", "OTREE_SECRET_KEY", "POSTGRES_PASSWORD", "RESTIC_PASSWORD",
           "RESTIC_AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY",
           "SENTRY_DSN"}
# Not for `config set`: each has its own way, which the refusal names.
MANAGED = {
    "OTREE_PROJECT_DIR": "it is set by `invoke deploy` and `invoke rollback`",
    "POSTGRES_PASSWORD": "the database keeps the password it was made with",
    "POSTGRES_VOLUME": "it names the volume that holds the study's data",
}
PROXY_KEYS = {"DOMAIN", "HTTPS_PORT", "TLS_CERT_FILE", "TLS_KEY_FILE", "LOGIN_RATE_LIMIT", "LOGIN_RATE_BURST",
              "MAX_BODY_SIZE", "HSTS_MAX_AGE", "ADMIN_ALLOW_IPS", "OTREE_AUTH_LEVEL"}


def masked(key, value):
    if key in SECRETS and value:
        return f"******** (set; `invoke config --get {key}` shows it)"
    if value:
        return redact.credentials_hidden(value)
    return "(default)" if settings_module.STUDY_DEFAULTS.get(key) else "(empty)"


def _parse(pairs):
    changes = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise StackError(f"{redact.credentials_hidden(pair)!r} is not KEY=VALUE, e.g. invoke config --set "
                             "CPU_LIMIT=1. Nothing was changed.")
        changes[key.strip()] = value.strip()
    return changes


def _settable(keys):
    unknown = sorted(set(keys) - set(settings_module.STUDY_DEFAULTS))
    if unknown:
        raise StackError(f"{', '.join(unknown)}: not a study setting (study.env.example lists them; the server's own "
                         "are in .env). Nothing was changed.")
    for key in sorted(set(keys) & set(MANAGED)):
        raise StackError(f"{key} is not changed with `invoke config`: {MANAGED[key]}. Nothing was changed.")


def _checked(ctx, changes):
    _settable(changes)
    raw = dict(envfile.load(ctx.env_path), **{key: value for key, value in changes.items() if value is not None})
    for key, value in changes.items():
        if value is None:
            raw.pop(key, None)
    loaded = ctx.settings.with_values(ctx.study.name, settings_module.with_defaults(settings_module.STUDY_DEFAULTS, raw))
    found = validate.settings_problems(loaded)
    if found:
        raise StackError("Refused; nothing was changed:\n" + "\n".join(f"  - {problem}" for problem in found))
    return loaded


def _apply(ctx, changes):
    loaded = _checked(ctx, changes)
    with lock.held(ctx.server, f"config set of {ctx.study.name}"):
        ctx = context.Context(loaded, loaded.study(ctx.study.name))
        # Before the file changes: a folder that cannot be prepared leaves the settings as they were.
        backups.prepare(ctx)
        envfile.set_values(ctx.env_path, changes)
        step(f"Saved {', '.join(sorted(changes))} in {ctx.env_path}")
        if set(changes) & PROXY_KEYS:
            certificates.install_provided(ctx)
            if proxy.write(loaded):
                step("Reloading the proxy with the new settings")
                proxy.reload(loaded.server)
        pagetimes.flush(ctx.compose)
        step("Starting again what the change affects")
        ctx.compose.up()
        info(f"The study '{ctx.study.name}' is up: {ctx.https_url()}")


def read_secret(key):
    """The value for --set-secret KEY: typed at a hidden prompt on a terminal, else all of standard
    input, white space around it dropped (as --set drops it). It never passes through a command
    line, so neither `ps` nor the shell's history shows it."""
    if sys.stdin.isatty():
        value = getpass.getpass(f"{key} (what you type is not shown): ")
    else:
        data = sys.stdin.buffer.read(4 * envfile.MAX_VALUE_LENGTH + 8)
        try:
            value = data.decode("utf-8")
        except UnicodeDecodeError:
            raise StackError(f"The value for {key} on standard input is not UTF-8 text. Nothing was changed.") from None
    value = value.strip()
    if not value:
        raise StackError(f"No value for {key} was given. To set it back to its default: invoke config --unset {key}. "
                         "Nothing was changed.")
    problem = envfile.value_problem(key, value)
    if problem:
        raise StackError(f"{problem} Nothing was changed.")
    return value


def run_on(server_name, get=None, set_pairs=(), unset=(), set_secret=None, study=None):
    """`invoke config ...` on a server over SSH; returns its exit code. A secret for --set-secret
    is read here and sent on ssh's standard input to `invoke config --set-secret KEY` there, which
    reads it from there: it is in no command line on either machine."""
    args = ssh.task_args("config", {"get": get, "set_": list(set_pairs), "unset": list(unset),
                                    "set_secret": set_secret, "study": study})
    if not set_secret:
        return remote.invoke_on(server_name, *args)
    if get or set_pairs or unset:
        raise StackError("Give --set-secret alone. Nothing was changed.")
    _settable([set_secret])
    server = servers.get(server_name)
    value = read_secret(set_secret)
    reader, writer = os.pipe()
    os.write(writer, (value + "\n").encode("utf-8"))  # fits a pipe's buffer: at most 4096 characters
    os.close(writer)
    with os.fdopen(reader, "rb") as stdin:
        code, _ = ssh.run(server, ssh.invoke_args(server, *args), stdin=stdin)
    return code


def run(ctx, get=None, set_pairs=(), unset=(), set_secret=None):
    if sum(map(bool, (get, set_pairs, unset, set_secret))) > 1:
        raise StackError("Give one of --get, --set, --set-secret or --unset at a time. Nothing was changed.")
    if set_secret:
        _settable([set_secret])
        _apply(ctx, {set_secret: read_secret(set_secret)})
    elif get:
        if get not in settings_module.STUDY_DEFAULTS:
            raise StackError(f"{get} is not a study setting; `invoke config` lists them.")
        print(ctx.study.get(get))
    elif set_pairs:
        _apply(ctx, _parse(set_pairs))
    elif unset:
        _apply(ctx, {key: None for key in unset})
    else:
        values = envfile.load(ctx.env_path)
        step(f"Settings of the study '{ctx.study.name}' ({ctx.env_path})")
        for key in settings_module.STUDY_DEFAULTS:
            info(f"{key:<30} {masked(key, values.get(key, ''))}")
