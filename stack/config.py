"""`invoke config`: a study's settings, as Heroku's config vars.

    invoke config                          every setting, secrets masked
    invoke config --get KEY                one setting (a secret only when asked for by name)
    invoke config --set KEY=VALUE ...      checked with the same rules as `invoke up`, then written
    invoke config --unset KEY ...          back to the default

A refused value changes nothing. A change is written whole (mode 600), then only what it affects
starts again: the proxy reloads for address and limit settings, and Compose recreates the
services whose settings changed (oTree after its page times are saved)."""

from . import certificates, context, envfile, lock, pagetimes, proxy, settings as settings_module, validate
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
    return value if value else "(default)" if settings_module.STUDY_DEFAULTS.get(key) else "(empty)"


def _parse(pairs):
    changes = {}
    for pair in pairs:
        key, equals, value = pair.partition("=")
        if not equals or not key:
            raise StackError(f"{pair!r} is not KEY=VALUE, e.g. invoke config --set CPU_LIMIT=1. Nothing was changed.")
        changes[key.strip()] = value.strip()
    return changes


def _checked(ctx, changes):
    unknown = sorted(set(changes) - set(settings_module.STUDY_DEFAULTS))
    if unknown:
        raise StackError(f"{', '.join(unknown)}: not a study setting (study.env.example lists them; the server's own "
                         "are in .env). Nothing was changed.")
    for key in sorted(set(changes) & set(MANAGED)):
        raise StackError(f"{key} is not changed with `invoke config`: {MANAGED[key]}. Nothing was changed.")
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
        envfile.set_values(ctx.env_path, changes)
        step(f"Saved {', '.join(sorted(changes))} in {ctx.env_path}")
        ctx = context.Context(loaded, loaded.study(ctx.study.name))
        if set(changes) & PROXY_KEYS:
            certificates.install_provided(ctx)
            if proxy.write(loaded):
                step("Reloading the proxy with the new settings")
                proxy.reload(loaded.server)
        pagetimes.flush(ctx.compose)
        step("Starting again what the change affects")
        ctx.compose.up()
        info(f"The study '{ctx.study.name}' is up: {ctx.https_url()}")


def run(ctx, get=None, set_pairs=(), unset=()):
    if sum(map(bool, (get, set_pairs, unset))) > 1:
        raise StackError("Give one of --get, --set or --unset at a time. Nothing was changed.")
    if get:
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
