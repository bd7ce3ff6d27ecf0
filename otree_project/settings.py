from os import environ

# The example study: a Prolific study with consent, demographics, a 3-player public goods
# game, a questionnaire and a redirect back to Prolific with the completion link.

# Prolific shows this link in the study's settings ("completion URL").
COMPLETION_LINK = 'https://app.prolific.com/submissions/complete?cc=CEXAMPLE'

SESSION_CONFIGS = [
    dict(
        name='prolific_study',
        display_name='Prolific study: public goods game',
        app_sequence=['consent', 'demographics', 'public_goods', 'questionnaire', 'payment'],
        num_demo_participants=3,
        completionlink=COMPLETION_LINK,
        contribute_timeout_seconds=120,
        # A participant alone on the grouping wait page this long goes on without a game.
        grouping_max_wait_seconds=600,
    ),
    # The study's single-player part alone, without the game: for a pilot of the pages, or to
    # measure them without wait pages (`invoke loadtest --config survey_only`,
    # benchmarks/stack_vs_bare.py).
    dict(
        name='survey_only',
        display_name='Prolific study without the game',
        app_sequence=['consent', 'demographics', 'questionnaire', 'payment'],
        num_demo_participants=1,
        completionlink=COMPLETION_LINK,
    ),
    # The survey as an MTurk HIT (README "Running a study on MTurk"): create the session "For
    # MTurk" in the admin. MTurk pays in USD only: set REAL_WORLD_CURRENCY_CODE = 'USD' first.
    dict(
        name='mturk_survey',
        display_name='MTurk HIT: the survey without the game',
        app_sequence=['consent', 'demographics', 'questionnaire', 'payment'],
        num_demo_participants=1,
        mturk_hit_settings=dict(
            keywords=['survey', 'academic study'],
            title='A 5-minute academic survey',
            description='A few questions about you and a short questionnaire, for a university study.',
            frame_height=500,
            template='global/mturk_template.html',
            minutes_allotted_per_assignment=30,
            expiration_hours=7 * 24,
            qualification_requirements=[],
        ),
    ),
]

SESSION_CONFIG_DEFAULTS = dict(
    real_world_currency_per_point=0.01, participation_fee=1.50, doc=""
)

PARTICIPANT_FIELDS = ['consented', 'finished', 'grouping_arrival_time']
SESSION_FIELDS = []

LANGUAGE_CODE = 'en'
REAL_WORLD_CURRENCY_CODE = 'GBP'
USE_POINTS = True

ROOMS = [
    # Prolific study URL (`invoke session create` prints it): https://<your server>/room/prolific?
    # PROLIFIC_PID={{%PROLIFIC_PID%}}&STUDY_ID={{%STUDY_ID%}}&SESSION_ID={{%SESSION_ID%}}
    # (nginx makes the Prolific ID the participant label).
    dict(name='prolific', display_name='Prolific study'),
]

ADMIN_USERNAME = 'admin'
# Secrets come from the stack's .env file, never from this file.
ADMIN_PASSWORD = environ.get('OTREE_ADMIN_PASSWORD')
# The stack always sets OTREE_SECRET_KEY (invoke up checks it); the fallback is for `otree devserver`.
SECRET_KEY = environ.get('OTREE_SECRET_KEY', 'local-development-only')

DEMO_PAGE_INTRO_HTML = """An example Prolific study served by the oTree stack."""
