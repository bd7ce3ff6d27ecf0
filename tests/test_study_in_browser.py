"""The example study, played by three participants in real browsers through nginx over HTTPS."""
import csv
import glob
import os

import pytest
from playwright.sync_api import sync_playwright

COMPLETION_LINK = "https://app.prolific.com/submissions/complete?cc=CEXAMPLE"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 60_000


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def participant(browser):
    """A participant with a browser of their own. Prolific's site is not reachable from here, so
    the redirect to it is answered locally: the test only needs to see that it happens."""
    context = browser.new_context(ignore_https_errors=True)
    context.route("https://app.prolific.com/**", lambda route: route.fulfill(body="Prolific", status=200))
    page = context.new_page()
    page.set_default_timeout(WAIT_MS)
    return page


def click_next(page):
    page.click("button.otree-btn-next")


def consent_and_fill_demographics(page):
    """From the consent page to a filled demographics form, not yet sent."""
    page.wait_for_url("**/consent/Consent/**")
    page.get_by_label("Yes, I agree").check()
    click_next(page)
    page.wait_for_url("**/demographics/Demographics/**")
    page.fill("input[name=age]", "30")
    page.get_by_label("Female").check()


def play_until_grouping(page, url, through_room=True):
    page.goto(url)
    if through_room:
        page.click("button:has-text('Start')")  # the room's welcome page
    consent_and_fill_demographics(page)
    click_next(page)
    page.wait_for_url("**/public_goods/Instructions/**")
    click_next(page)


def contribute(page, amount):
    page.wait_for_url("**/public_goods/Contribute/**")
    page.fill("input[name=contribution]", str(amount))
    click_next(page)


def finish(page):
    page.wait_for_url("**/public_goods/Results/**")
    click_next(page)
    page.wait_for_url("**/questionnaire/Questionnaire/**")
    page.check("input[name=understood][value='6']")
    page.check("input[name=fairness][value='5']")
    click_next(page)
    page.wait_for_url("**/payment/Payment/**")
    page.wait_for_url(COMPLETION_LINK)


def test_three_prolific_participants_play_the_study_through_the_room(stack, browser, tmp_path):
    session = stack.create_session(3, room="prolific")
    # Prolific IDs as Prolific makes them (24 hex characters), in its default study URL.
    labels = ["5f8a3c2e9b1d4e6f7a8b9c0d", "60b1e2d3c4f5a6978899aabb", "63e4f5a6b7c8d9e0f1a2b3c4"]
    prolific_study, prolific_session = "65a1b2c3d4e5f60718293a4b", "66b2c3d4e5f60718293a4b5c"
    pages = [participant(browser) for _ in labels]
    for page, label in zip(pages, labels):
        play_until_grouping(page, f"{stack.https}/room/prolific?PROLIFIC_PID={label}&STUDY_ID={prolific_study}"
                                  f"&SESSION_ID={prolific_session}")
    # The first two wait on the grouping page until the third arrives: only the websocket,
    # through nginx, tells their browsers to move on.
    for page, amount in zip(pages, (10, 20, 30)):
        contribute(page, amount)
    for page in pages:
        page.wait_for_url("**/public_goods/Results/**")
        assert "Your group contributed 60 points in total" in page.content()
        finish(page)

    rows = stack.sql(
        "SELECT p.label, d.prolific_id, g.contribution, g._payoff, g.timed_out "
        "FROM otree_participant p JOIN otree_session s ON s.id = p.session_id "
        "JOIN demographics_player d ON d.participant_id = p.id "
        "JOIN public_goods_player g ON g.participant_id = p.id "
        f"WHERE s.code = '{session['code']}' ORDER BY p.label")
    assert [(label, pid) for label, pid, *_ in rows] == [(label, label) for label in labels]
    assert [(float(c), float(pay)) for _, _, c, pay, _ in rows] == [(10, 130), (20, 120), (30, 110)]
    assert {timed_out for *_, timed_out in rows} == {"f"}
    stack.invoke("export-data", "--session", session["code"], "--output", str(tmp_path))
    [wide] = glob.glob(os.path.join(tmp_path, "*", "all_apps_wide_*.csv"))
    with open(wide, encoding="utf-8", newline="") as handle:
        exported = sorted(row["participant.label"] for row in csv.DictReader(handle))
    assert exported == labels


def test_a_page_timeout_fires_for_a_participant_who_left(stack, browser):
    session = stack.create_session(3, contribute_timeout_seconds=3)
    pages = [participant(browser) for _ in range(3)]
    for number, page in enumerate(pages):
        play_until_grouping(page, f"{session['session_wide_url']}?participant_label=T{number}", through_room=False)
    for page in pages:
        page.wait_for_url("**/public_goods/Contribute/**")
    contribute(pages[0], 50)
    contribute(pages[1], 50)
    pages[2].context.close()  # the third participant closes the browser and sends nothing more

    # The timeout worker submits the abandoned page; the others' wait page then lets them on.
    for page in pages[:2]:
        page.wait_for_url("**/public_goods/Results/**")
    rows = stack.sql(
        "SELECT p.label, g.contribution, g.timed_out FROM otree_participant p "
        "JOIN otree_session s ON s.id = p.session_id JOIN public_goods_player g ON g.participant_id = p.id "
        f"WHERE s.code = '{session['code']}' ORDER BY p.label")
    assert [(label, float(c), t) for label, c, t in rows] == [("T0", 50, "f"), ("T1", 50, "f"), ("T2", 0, "t")]
