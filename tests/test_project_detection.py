"""Pure logic: which projects pin oTree before 5 (refused), how requirements are adapted, where
mirrors are."""
import importlib.util
import os

import pytest

pytestmark = pytest.mark.unit

from stack import apt_sources, project
from tests.helpers import REPO_ROOT


@pytest.mark.parametrize("specifiers, before_5", [
    ("==6.0.15", False), (">=5.0.0a21", False), ("", False), ("==3.4.0", True), ("<5", True),
    ("<5.0", True), ("<=4.9", True), (">=3,<5", True), ("~=3.3", True), ("<6", False), ("==5.11.1", False),
])
def test_projects_pinned_before_otree_5_are_recognised(specifiers, before_5):
    assert project.pins_otree_before_5(specifiers) is before_5


def test_the_example_project_is_accepted():
    folder = project.directory(os.path.join(REPO_ROOT, "otree_project"))
    assert project.otree_requirement(folder) == "==6.0.15"


def test_a_project_pinned_before_otree_5_is_refused_with_the_way_forward(tmp_path):
    folder = os.path.join(REPO_ROOT, "tests", ".old-project-for-test")
    os.makedirs(folder, exist_ok=True)
    try:
        for name, text in (("settings.py", ""), ("requirements.txt", "otree<5\n")):
            with open(os.path.join(folder, name), "w") as handle:
                handle.write(text)
        with pytest.raises(Exception, match="pins oTree before 5") as refused:
            project.directory(folder)
        assert "otree==6.0.15" in str(refused.value) and "Nothing was built" in str(refused.value)
    finally:
        import shutil
        shutil.rmtree(folder)


def test_a_project_outside_the_repository_is_refused_with_a_fix():
    with pytest.raises(Exception, match="copy your project into a folder here"):
        project.directory(os.path.join(REPO_ROOT, "..", "elsewhere"))


def _install_requirements():
    path = os.path.join(REPO_ROOT, "otree_server", "install_requirements.py")
    spec = importlib.util.spec_from_file_location("install_requirements", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_otree_template_requirements_get_the_prebuilt_postgres_driver():
    module = _install_requirements()
    kept, notes = module.adapted_requirements(["otree>=5.0.0a21\n", "psycopg2>=2.8.4\n"])
    assert kept == ["otree>=5.0.0a21", module.PSYCOPG2_BINARY, "requests"]
    assert "replaced" in notes[0]


def test_bots_get_requests_without_touching_a_version_the_project_pins():
    module = _install_requirements()
    kept, notes = module.adapted_requirements(["otree==6.0.15\n", "urllib3==1.26.20  # pinned by the lab\n"])
    # Unpinned, and installed in the same pip run: pip picks a requests that fits urllib3==1.26.20.
    assert kept[-1] == "requests" and "urllib3==1.26.20  # pinned by the lab" in kept
    assert any("added requests" in note for note in notes)
    kept, notes = module.adapted_requirements(["otree==6.0.15\n", "Requests==2.31.0\n"])
    assert kept.count("Requests==2.31.0") == 1 and "requests" not in kept
    assert not any("requests" in note for note in notes)


def test_a_project_without_a_postgres_driver_gets_one():
    module = _install_requirements()
    kept, _ = module.adapted_requirements(["otree==6.0.15\n"])
    assert module.PSYCOPG2_BINARY in kept


def test_mirror_is_read_from_both_apt_source_formats(tmp_path):
    deb822 = tmp_path / "debian.sources"
    deb822.write_text("Types: deb\nURIs: http://mirror.invalid/debian\nSuites: trixie\n\n"
                      "Types: deb\nURIs: http://mirror.invalid/debian-security\nSuites: trixie-security\n")
    one_line = tmp_path / "sources.list"
    one_line.write_text("deb [arch=amd64] http://other.invalid/debian/ bookworm main\n")
    assert apt_sources.debian_mirror([str(deb822)]) == "http://mirror.invalid/debian"
    assert apt_sources.debian_security_mirror([str(deb822)]) == "http://mirror.invalid/debian-security"
    assert apt_sources.debian_mirror([str(one_line)]) == "http://other.invalid/debian"


@pytest.mark.parametrize("line, warned", [
    ("otree==6.0.15", False), ("otree == 6.0.15", False), ("otree>=5.0.0a21", True), ("otree", True), ("otree~=6.0", True),
])
def test_a_project_that_does_not_pin_otree_is_warned(tmp_path, capsys, line, warned):
    (tmp_path / "settings.py").write_text("")
    (tmp_path / "requirements.txt").write_text(line + "\n")
    project.check_settings(str(tmp_path))
    assert ("does not pin oTree to one version" in capsys.readouterr().err) is warned
