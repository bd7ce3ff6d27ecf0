from otree.api import Bot, expect
from . import Questionnaire


class PlayerBot(Bot):
    def play_round(self):
        yield Questionnaire, dict(understood=6, fairness=5, strategy='Half, to be fair.')
        expect(self.participant.finished, True)
