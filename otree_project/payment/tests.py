from otree.api import Bot, expect
from . import Payment


class PlayerBot(Bot):
    def play_round(self):
        expect('app.prolific.com/submissions/complete', 'in', self.html)
        # The last page has no form: nothing to submit, the browser is redirected to Prolific.
