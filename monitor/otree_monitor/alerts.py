"""Alerts by mail (ALERT_EMAIL through the SMTP_* settings) and to a webhook (ALERT_WEBHOOK_URL),
at most one message per cause per hour: a session with a broken page must not send one mail per
participant's click."""
import email.message
import json
import smtplib
import ssl
import urllib.request

QUIET_SECONDS = 3600
# A failed delivery (mail server down) is tried again after this long, not on every check.
RETRY_SECONDS = 300


def due(sent, cause, now):
    """True when this cause has not been reported within the last hour (nor tried just now)."""
    last = sent.get(cause)
    if not last:
        return True
    wait = QUIET_SECONDS if last.get("delivered") else RETRY_SECONDS
    return now - last["t"] >= wait


def webhook_body(server, alert):
    """`text` for Slack's and Mattermost's incoming webhooks; the rest for anything else."""
    return {**alert, "server": server, "text": f"[{server}] {alert['subject']}\n{alert['text']}"}


def send_mail(config, server, alert):
    message = email.message.EmailMessage()
    message["Subject"] = f"[oTree {server}] {alert['subject']}"
    message["From"] = config["SMTP_FROM"] or config["ALERT_EMAIL"]
    message["To"] = config["ALERT_EMAIL"]
    message.set_content(f"{alert['text']}\n\nCause: {alert['cause']}. At most one message per cause per hour; "
                        "`invoke status` on the server shows the current state.\n")
    port = int(config["SMTP_PORT"])
    context = ssl.create_default_context()
    if config["SMTP_TLS"] == "tls":
        client = smtplib.SMTP_SSL(config["SMTP_HOST"], port, timeout=30, context=context)
    else:
        client = smtplib.SMTP(config["SMTP_HOST"], port, timeout=30)
    with client:
        if config["SMTP_TLS"] == "starttls":
            client.starttls(context=context)
        if config["SMTP_USER"]:
            client.login(config["SMTP_USER"], config["SMTP_PASSWORD"])
        client.send_message(message)


def send_webhook(config, server, alert):
    request = urllib.request.Request(config["ALERT_WEBHOOK_URL"], method="POST",
                                     data=json.dumps(webhook_body(server, alert)).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30):
        pass


def deliver(config, server, alert, log):
    """Send one alert everywhere configured; True when at least one way succeeded."""
    ways = [(name, function) for name, key, function in (("mail", "ALERT_EMAIL", send_mail),
                                                         ("webhook", "ALERT_WEBHOOK_URL", send_webhook))
            if config.get(key)]
    delivered = False
    for name, function in ways:
        try:
            function(config, server, alert)
            delivered = True
            log(f"alert sent by {name}: {alert['cause']}: {alert['subject']}")
        except Exception as error:  # any failure: say it in the log, try again later
            log(f"alert by {name} failed ({type(error).__name__}: {error}); trying again in "
                f"{RETRY_SECONDS // 60} minutes: {alert['cause']}")
    return delivered


def raise_alerts(config, server, alerts, sent, now, log):
    """Deliver the alerts whose cause is due; record each attempt in `sent`."""
    if not (config.get("ALERT_EMAIL") or config.get("ALERT_WEBHOOK_URL")):
        return
    for alert in alerts:
        if due(sent, alert["cause"], now):
            sent[alert["cause"]] = {"t": now, "delivered": deliver(config, server, alert, log)}
