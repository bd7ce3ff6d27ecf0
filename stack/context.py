"""Everything a task needs: the checked settings, the study it acts on, its Compose project."""
from . import compose, envfile, settings as settings_module, upgrade, validate
from .console import StackError


class Context:
    def __init__(self, settings, study):
        self.settings = settings
        self.server = settings.server
        self.study = study
        self.values = study.values
        self.env_path = study.env_path
        self.project_dir = study.project_dir
        self.compose = compose.for_study(study)

    def https_url(self):
        """The address participants use, as far as this machine can tell."""
        return self.study.url()


def checked_settings(env_path=None):
    """Read the server's settings and every study's; refuse with every problem listed."""
    env_path = env_path or envfile.path()
    if upgrade.needed(env_path):
        raise StackError(f"{env_path} is from before this server ran several studies. Run `invoke up` once: it "
                         "moves the study's settings to their own file and keeps its data, certificate and address.")
    loaded = settings_module.load(env_path)
    problems = validate.settings_problems(loaded)
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise StackError(f"The settings have {len(problems)} problem(s); nothing was started or changed:\n{listed}\n"
                         "Edit the file named in each line, then run the command again.")
    return loaded


def load(study=None, purpose="acts on"):
    """The context of the study named, or of the only one (several and no name: refused)."""
    loaded = checked_settings()
    chosen = loaded.study(study, purpose)
    compose.require_docker()
    return Context(loaded, chosen)
