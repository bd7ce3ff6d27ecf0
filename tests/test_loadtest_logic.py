"""`invoke loadtest`'s arithmetic: the steps, the CPU counters, the capacity line and the report."""
import pytest

from stack import loadtest
from stack.console import StackError

pytestmark = pytest.mark.unit


def test_steps_double_up_to_the_ceiling_in_whole_groups():
    assert loadtest.steps(160) == [5, 10, 20, 40, 80, 160]
    assert loadtest.steps(50) == [5, 10, 20, 40, 50]
    assert loadtest.steps(3) == [3]
    assert loadtest.steps(12, multiple=3) == [6, 12]
    assert loadtest.steps(7, multiple=3) == [6, 9]


def test_cpu_counters_of_cgroup_v1_and_v2():
    assert loadtest.cpu_seconds("usage_usec 2500000\nuser_usec 2000000\n") == 2.5
    assert loadtest.cpu_seconds("1500000000\n") == 1.5


def test_cpu_samples_are_read_from_the_stream_of_blocks():
    stream = ["1700000000.25\n", "usage_usec 2500000\n", "user_usec 2000000\n", "\n",
              "1700000001.25\n", "1500000000\n", "\n", "1700000002.25\n", "usage_usec 2"]
    assert list(loadtest.cpu_samples(stream)) == [(1700000000.25, 2.5), (1700000001.25, 1.5)]


def test_cpu_share_uses_the_samples_inside_the_window():
    samples = [(0, 0.0), (1, 0.1), (2, 0.6), (3, 1.1), (4, 1.2)]
    assert loadtest.share_between(samples, 1.5, 3.5) == pytest.approx(0.5)
    assert loadtest.share_between(samples, 1.5, 2.5) is None


def figures(participants, p95, submits, errors=0, requests=100):
    return {"participants": participants, "requests": requests, "requests_per_second": submits * 1.5,
            "submits_per_second": submits, "p50_ms": p95 / 3, "p95_ms": p95, "p99_ms": p95 * 1.2, "errors": errors,
            "participants_finished": 1, "otree_cpu": 0.5, "generator_cpu": 0.1}


def test_capacity_is_the_largest_step_under_one_second_without_errors():
    results = [figures(5, 200, 10), figures(10, 500, 16), figures(20, 1400, 18)]
    assert loadtest.capacity(results) == (10, 10 / 16)
    line = loadtest.capacity_line(results, "survey", "otree")
    assert line.startswith("Capacity: about 10 participants, each submitting a page every 0.6 seconds, at p95 "
                           "under 1 s for 'survey'")
    assert "raise --participants" not in line
    assert loadtest.capacity([figures(5, 200, 10), figures(10, 300, 15, errors=2)]) == (5, 0.5)


def test_every_step_passing_says_to_look_further_and_none_passing_says_so():
    assert "raise --participants" in loadtest.capacity_line([figures(5, 200, 10)], "survey", "otree")
    assert loadtest.capacity_line([figures(5, 1200, 10)], "survey", "otree").startswith("Not even 5 participants")


def test_step_figures_from_locusts_csv_rows():
    rows = [{"Name": "start", "Requests/s": "2.0"}, {"Name": "submit consent/Consent", "Requests/s": "3.0"},
            {"Name": "submit survey/Survey", "Requests/s": "1.5"}, {"Name": "wait pg/WaitPage", "Requests/s": "4.0"},
            {"Name": "Aggregated", "Request Count": "52", "Failure Count": "1", "Requests/s": "10.5",
             "50%": "120", "95%": "480", "99%": "700"}]
    found = loadtest.step_figures(rows, {"participants_finished": 4, "generator_cpu": 0.2}, 5, 0.7)
    assert found["submits_per_second"] == 4.5
    assert (found["requests"], found["errors"], found["p95_ms"], found["otree_cpu"]) == (52, 1, 480.0, 0.7)
    assert not loadtest.passed(found)


def test_config_choice_refuses_unknown_names_and_apps_without_bots():
    configs = {"game": {"apps": ["a"], "multiple": 3, "without_bots": []},
               "nobots": {"apps": ["b"], "multiple": 1, "without_bots": ["b"]}}
    assert loadtest.choose_config(configs, None) == ("game", 3)
    with pytest.raises(StackError, match="no session config 'nope'.*game, nobots"):
        loadtest.choose_config(configs, "nope")
    with pytest.raises(StackError, match=r"apps without bots \(b: no tests.py\)"):
        loadtest.choose_config(configs, "nobots")


def test_report_has_two_plots_with_a_point_per_step_and_no_outside_resources():
    results = [figures(5, 200, 10), figures(10, 500, 16)]
    page = loadtest.report_html({"study": "otree", "config": "survey", "target": "https://127.0.0.1", "step_seconds": 5,
                                 "started": "2026-01-01T00:00:00+00:00", "steps": results,
                                 "capacity_line": loadtest.capacity_line(results, "survey", "otree")})
    assert page.count('<svg xmlns="http://www.w3.org/2000/svg" class="plot"') == 2
    assert page.count('class="point"') == 8  # two series in each plot, a point per step
    assert "<script" not in page and "src=" not in page and "Capacity: about 10" in page


def test_sessions_are_made_big_enough_for_a_step_at_the_last_pace():
    assert loadtest.session_size(5, 1, 30) == 250
    assert loadtest.session_size(10, 3, 30, pace=0.2) == 102  # 10 users, 9 more each in 30 s, and a margin
    assert loadtest.session_size(160, 1, 30, pace=1.0) == loadtest.MOST_PER_SESSION
    assert loadtest.session_size(4, 3, 5, pace=0.001) == 6
