"""Credentials inside URLs, hidden wherever the stack shows a setting or a message: the user and
password of `s3:https://KEY:SECRET@host/bucket` or `rest:https://user:pass@host/`, a Sentry DSN's
key (`https://KEY@o1.ingest.sentry.io/2`), query parameters (`?token=...`). A webhook's address
is a secret as a whole (Slack's and Mattermost's carry their token in the path), so only its
scheme and host are shown."""
import re

HIDDEN = "********"
# scheme://, then everything up to the last @ before the host: user names and passwords may hold
# characters a URL should have encoded (/, @, :), and are hidden whole.
USERINFO = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?P<userinfo>[^\s@]*@)+")
QUERY_VALUE = re.compile(r"(?P<name>[?&;][^\s=&;#]*=)[^\s&;#]*")
URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")


def _one_url(url):
    url = USERINFO.sub(lambda match: f"{match['scheme']}{HIDDEN}@", url)
    return QUERY_VALUE.sub(lambda match: f"{match['name']}{HIDDEN}", url)


def credentials_hidden(text):
    """text with the credentials of every URL in it replaced by ********."""
    return URL.sub(lambda match: _one_url(match.group(0)), text)


def address_only(url):
    """A secret address (a webhook) as scheme://host/********: enough to tell which it is."""
    match = re.match(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)(?:[^\s@/]*@)?(?P<host>[^\s/?#@]*)",
                     credentials_hidden(url.strip()))
    if not match:
        return HIDDEN
    return f"{match['scheme']}{match['host']}/{HIDDEN}"
