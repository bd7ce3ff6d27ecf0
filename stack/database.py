"""Questions to a study's own Postgres, asked inside its container (it is never published)."""


def query(ctx, sql):
    """The rows of a query as 'a|b' lines; [] when the database does not answer or has no
    oTree tables yet."""
    result = ctx.compose.run("exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "otree", "-At", "-c", sql,
                             capture=True, check=False)
    return result.stdout.strip().splitlines() if result.returncode == 0 else []
