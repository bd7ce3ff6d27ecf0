"""A study's certificate: one you bring (TLS_CERT_FILE, TLS_KEY_FILE), checked and installed at
`invoke up` in the proxy's nginx image (nginx/install-certificate.sh, the same openssl and trust
store that serve it); Let's Encrypt's, from the proxy's certbot service (certbot/), whose result is
reported here; and the served certificate's kind and expiry for `invoke status`."""
import datetime
import io
import os
import subprocess
import tarfile
import time

from . import proxy
from .console import StackError, info, warn
from .envfile import REPO_ROOT

WARN_DAYS = 14


def _path(ctx, key):
    value = ctx.study.get(key)
    return os.path.join(REPO_ROOT, value) if value else None


def install_provided(ctx):
    """Refuses (StackError) before anything starts when the certificate is not fit to serve."""
    cert, key = _path(ctx, "TLS_CERT_FILE"), _path(ctx, "TLS_KEY_FILE")
    if not cert:
        return
    bundle = io.BytesIO()
    with tarfile.open(fileobj=bundle, mode="w") as archive:
        for setting, path, name in (("TLS_CERT_FILE", cert, "fullchain.pem"), ("TLS_KEY_FILE", key, "privkey.pem")):
            try:
                archive.add(path, arcname=name)
            except OSError as error:
                raise StackError(f"{setting}={path} cannot be read ({error.strerror}). Check the path in "
                                 f"{ctx.env_path} and that this user may read the file.") from None
    edge = proxy.compose(ctx.server)
    command = edge.command("run", "--rm", "--no-deps", "-T", "-e", f"STUDY={ctx.study.name}", "-e",
                           f"DOMAIN={ctx.study.domain}", "--entrypoint", "install-certificate", "nginx")
    result = subprocess.run(command, input=bundle.getvalue(), env=edge.environment, capture_output=True)
    for line in result.stdout.decode(errors="replace").splitlines():
        (warn if line.startswith("warning:") else info)(line.removeprefix("warning: "))
    if result.returncode:
        refusal = result.stderr.decode(errors="replace").strip().splitlines()
        raise StackError(f"{refusal[-1] if refusal else 'The certificate check failed.'}\nNothing was started or "
                         "changed; a running site keeps the certificate it has.")
    # The entrypoint prepares the TLS settings again (HSTS, stapling), then nginx reloads: open
    # connections, websockets included, finish on the old workers.
    proxy.reload(ctx.server)


def letsencrypt_result(ctx, wait_seconds=0):
    """The certbot service's last result for this study: ('ok'|'failed'|'pending', detail),
    waiting up to wait_seconds for a first attempt to finish."""
    deadline = time.monotonic() + wait_seconds
    edge = proxy.compose(ctx.server)
    while True:
        result = edge.run("exec", "-T", "certbot", "cat", f"/var/lib/acme/result/{ctx.study.name}",
                          capture=True, check=False)
        state, _, detail = (result.stdout.strip() or "pending").partition(" ")
        if state != "pending" or time.monotonic() > deadline:
            return state, detail
        time.sleep(3)


def report_letsencrypt(ctx, wait_seconds=0):
    """Warn with the fix when Let's Encrypt failed; True when it has a certificate."""
    if not proxy.letsencrypt_wanted(ctx.study):
        return False
    state, detail = letsencrypt_result(ctx, wait_seconds)
    domain = ctx.study.domain
    if state == "failed":
        when, _, reason = detail.partition(" ")
        warn(f"Let's Encrypt could not issue a certificate for {domain} ({when}): {reason}\nCheck that {domain}'s "
             "DNS points at this server's public address and that port 80 is open to the internet; after "
             "too many failures Let's Encrypt makes you wait an hour. Until then the self-signed certificate is "
             "served. `invoke up` tries again.")
    elif state == "pending":
        info(f"Let's Encrypt: still requesting a certificate for {domain}; `invoke status` shows the result.")
    return state == "ok"


def request_letsencrypt(ctx):
    """In `invoke up`: wait for the certbot service's first attempt, and after a failure (DNS
    fixed? port opened?) try once more now, then report."""
    if not proxy.letsencrypt_wanted(ctx.study):
        return
    state, _ = letsencrypt_result(ctx, wait_seconds=180)
    if state == "failed":
        info(f"Asking Let's Encrypt again for {ctx.study.domain}")
        proxy.compose(ctx.server).run("exec", "-T", "certbot", "acme", "once", ctx.study.name,
                                      capture=True, check=False)
    report_letsencrypt(ctx)


def expiry(ctx):
    """(kind, expiry datetime) of the certificate nginx serves, or None when nginx is not running."""
    result = proxy.compose(ctx.server).run("exec", "-T", "nginx", "sh", "-c",
                             f"cd /etc/nginx/certs/{ctx.study.name} && if test -f provided-for; then echo yours; elif test -f issued-for; "
                             "then echo \"Let's Encrypt\"; else echo self-signed; fi "
                             "&& openssl x509 -in fullchain.pem -noout -enddate", capture=True, check=False)
    lines = result.stdout.splitlines() if result.returncode == 0 else []
    if len(lines) < 2 or not lines[1].startswith("notAfter="):
        return None
    kind, end = lines[0], lines[1].split("=", 1)[1]
    moment = datetime.datetime.strptime(" ".join(end.split()), "%b %d %H:%M:%S %Y %Z")
    return kind, moment.replace(tzinfo=datetime.timezone.utc)


def status_line(ctx):
    """For `invoke status` and `invoke up`: what is served and until when; warns near the end."""
    found = expiry(ctx)
    if not found:
        return None
    kind, moment = found
    days = (moment - datetime.datetime.now(datetime.timezone.utc)).days
    if kind != "self-signed" and days < WARN_DAYS:
        fix = ("Renew it, point TLS_CERT_FILE and TLS_KEY_FILE at the new files, and run `invoke up`."
               if kind == "yours" else "Let's Encrypt renews 30 days ahead, so renewal is failing: see its message.")
        warn(f"The certificate expires in {days} days ({moment:%Y-%m-%d}). {fix}")
    return f"{kind}, valid until {moment:%Y-%m-%d} ({days} days)"
