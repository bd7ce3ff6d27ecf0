"""nginx in front of oTree: HTTPS, redirects, passwords, headers, static files, absolute links."""
import re
import uuid

import requests

from tests.helpers import REPO_ROOT


def get(stack, path, **kwargs):
    return requests.get(stack.https + path, verify=False, timeout=30, **kwargs)


def test_http_is_redirected_to_https_with_path_and_query(stack):
    response = requests.get(stack.http + "/room/prolific?participant_label=P1", allow_redirects=False, timeout=10)
    assert response.status_code == 301
    assert response.headers["Location"] == stack.https + "/room/prolific?participant_label=P1"


def test_front_page_and_admin_pages_demand_the_password(stack):
    for path in ("/", "/demo", "/sessions", "/ExportIndex"):
        response = get(stack, path)
        assert response.url.startswith(stack.https + "/login"), path
        assert 'name="password"' in response.text


def login(stack, password):
    session = requests.Session()
    session.verify = False
    session.trust_env = False  # else a CA bundle from the environment overrides verify=False
    form = session.get(stack.https + "/login", timeout=30)
    token = re.search(r'name="csrftoken" value="([^"]+)"', form.text).group(1)
    response = session.post(stack.https + "/login", allow_redirects=False, timeout=30,
                            data=dict(username="admin", password=password, csrftoken=token))
    return session, response


def test_admin_login_works_with_the_env_password_and_sets_a_secure_cookie(stack):
    _, wrong = login(stack, "not-the-password")
    assert wrong.status_code == 200 and 'name="password"' in wrong.text
    session, right = login(stack, stack.values["OTREE_ADMIN_PASSWORD"])
    assert right.status_code == 302
    # An absolute https link with the port: nginx passes Host and the scheme, and oTree trusts it.
    assert right.headers["Location"] == stack.https + "/demo"
    assert "; secure" in right.headers["Set-Cookie"].lower()
    assert session.get(stack.https + "/sessions", timeout=30).status_code == 200


def test_security_headers_and_request_id(stack):
    response = get(stack, "/login")
    # HSTS only with a real certificate (tests/test_certificates.py): not on this self-signed one.
    assert "Strict-Transport-Security" not in response.headers
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["X-Request-ID"])


def test_rest_api_builds_https_links_from_the_proxy(stack):
    rooms = stack.rest("GET", "/api/rooms")
    assert [room["url"] for room in rooms] == [stack.https + "/room/prolific"]


def test_static_files_come_from_nginx_with_cache_headers_without_reaching_otree(stack):
    marker = uuid.uuid4().hex
    robots = get(stack, f"/static/robots.txt?{marker}")
    with open(f"{REPO_ROOT}/otree_project/_static/robots.txt", encoding="utf-8") as handle:
        assert robots.text == handle.read()  # the project's _static wins over oTree's own file
    css = get(stack, f"/static/bootstrap5/css/bootstrap.min.css?{marker}")
    assert css.status_code == 200 and css.headers["Content-Type"] == "text/css"
    assert css.headers["Cache-Control"] == "public, max-age=3600"
    missing = get(stack, f"/static/no-such-file-{marker}.js")
    assert missing.status_code == 404
    assert marker not in stack.otree_log()
    # A request that does reach oTree shows up in its log, so the check above can fail.
    get(stack, f"/room/prolific?{marker}")
    assert marker in stack.otree_log()


def test_login_is_rate_limited_but_participant_pages_are_not(stack):
    codes = [get(stack, "/login").status_code for _ in range(3 * int(stack.values["LOGIN_RATE_BURST"]))]
    assert codes[0] == 200 and 429 in codes
    # Lab participants share one address: their pages answer at once, right after the 429s.
    assert {get(stack, "/room/prolific").status_code for _ in range(30)} == {200}
