from otree.api import Currency as c, currency_range, expect, Bot
from . import *


class PlayerBot(Bot):
    def play_round(self):
        yield Demographics, dict(age=24, gender='Male')
        yield CognitiveReflectionTest, dict(crt_bat=1)
        # Results has no button: like many projects' bots, these stop before the last page.
