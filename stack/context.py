"""Everything a task needs about this stack: the checked env file, the project, Compose."""
from . import envfile, project, validate
from .compose import Compose, require_docker
from .console import StackError


class Context:
    def __init__(self, env_path, values, folder, compose):
        self.env_path = env_path
        self.values = values
        self.project_dir = folder
        self.compose = compose

    def https_url(self):
        """The address participants use, as far as this machine can tell."""
        port = self.values.get("HTTPS_PORT", "443").strip()
        suffix = "" if port == "443" else f":{port}"
        domain = self.values.get("DOMAIN", "").strip()
        bind = self.values.get("BIND_ADDRESS", "0.0.0.0").strip()
        host = domain or (bind if bind not in ("0.0.0.0", "::") else "127.0.0.1")
        return f"https://{host}{suffix}/"


def load(need_docker=True):
    """Read and check the env file and the project; refuse with every problem listed."""
    env_path = envfile.path()
    values = envfile.load(env_path)
    problems = validate.problems(values)
    if problems:
        listed = "\n".join(f"  - {problem}" for problem in problems)
        raise StackError(f"{env_path} has {len(problems)} problem(s); nothing was started:\n{listed}\n"
                         f"Edit {env_path}, then run the command again.")
    folder = project.directory(values)
    if need_docker:
        require_docker()
    return Context(env_path, values, folder, Compose(env_path, values, redis=project.needs_redis(values, folder)))
