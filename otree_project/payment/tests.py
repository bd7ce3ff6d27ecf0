from otree.api import Bot, expect
from . import Payment


class PlayerBot(Bot):
    def play_round(self):
        # Bots are never MTurk workers: no HIT to submit.
        expect('Submit HIT', 'not in', self.html)
        if 'completionlink' in self.session.config:
            expect('app.prolific.com/submissions/complete', 'in', self.html)
        # The last page has no form of oTree's: nothing to submit, the browser is redirected to
        # Prolific, or the MTurk worker submits the HIT to MTurk.
