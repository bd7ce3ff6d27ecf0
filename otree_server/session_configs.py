"""Print the project's session configs as JSON, for `invoke loadtest`: for each, its apps, the
number its participant count must be a multiple of (the groups' sizes), and the apps without
bots (tests.py), which a browser-bot session cannot play."""
import json
import os

from otree.main import setup

setup()
from otree.session import SESSION_CONFIGS_DICT  # noqa: E402  (needs setup() first)

print(json.dumps({name: {"apps": list(config["app_sequence"]), "multiple": config.get_lcm(),
                         "without_bots": [app for app in config["app_sequence"]
                                          if not os.path.exists(os.path.join(app, "tests.py"))]}
                  for name, config in SESSION_CONFIGS_DICT.items()}))
