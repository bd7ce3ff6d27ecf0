"""Pure logic: which projects need Redis, how requirements are adapted, where mirrors are."""
import importlib.util
import os

import pytest

from stack import apt_sources, project
from tests.helpers import REPO_ROOT


@pytest.mark.parametrize("specifiers, before_5", [
    ("==6.0.15", False), (">=5.0.0a21", False), ("", False), ("==3.4.0", True), ("<5", True),
    ("<5.0", True), ("<=4.9", True), (">=3,<5", True), ("~=3.3", True), ("<6", False), ("==5.11.1", False),
])
def test_redis_only_for_projects_pinned_before_otree_5(specifiers, before_5):
    assert project.pins_otree_before_5(specifiers) is before_5


def test_the_example_project_needs_no_redis():
    folder = project.directory({"OTREE_PROJECT_DIR": "otree_project"})
    assert project.otree_requirement(folder) == "==6.0.15"
    assert not project.needs_redis({"REDIS_ENABLED": "0"}, folder)
    assert project.needs_redis({"REDIS_ENABLED": "1"}, folder)


def test_a_project_outside_the_repository_is_refused_with_a_fix():
    with pytest.raises(Exception, match="copy your project into a folder here"):
        project.directory({"OTREE_PROJECT_DIR": "../elsewhere"})


def _install_requirements():
    path = os.path.join(REPO_ROOT, "otree_server", "install_requirements.py")
    spec = importlib.util.spec_from_file_location("install_requirements", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_otree_template_requirements_get_the_prebuilt_postgres_driver():
    module = _install_requirements()
    kept, notes = module.adapted_requirements(["otree>=5.0.0a21\n", "psycopg2>=2.8.4\n"])
    assert kept == ["otree>=5.0.0a21", module.PSYCOPG2_BINARY]
    assert "replaced" in notes[0]


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
