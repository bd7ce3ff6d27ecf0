from otree.api import Bot, SubmissionMustFail
from . import Fields, OneByOne, Results

VALID = dict(number=3, share=0.5, amount=2, name='Ada', story='', agree=True, colour='green', size=1, rating=2,
             yes=False)


class PlayerBot(Bot):
    def play_round(self):
        yield SubmissionMustFail(Fields, dict(VALID, number=7))
        yield SubmissionMustFail(Fields, dict(VALID, name='nobody'))
        yield Fields, VALID
        yield OneByOne, dict(guess=self.round_number)
        yield Results
