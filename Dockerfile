# The oTree server image: Debian's Python 3.13, the project's pinned requirements, the project.
ARG BASE_IMAGE=debian:trixie-slim
FROM ${BASE_IMAGE}

ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*

# /opt/otree-server/bin first: its `otree` is oTree's command with the stack's render cache and
# compiled lookups (otree_server/render_cache.py, compiled_lookups.py), for the server, the bots
# and every command.
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/otree-server/bin:/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/venv

# Requirements first, so that a change to the project's code does not reinstall them.
ARG OTREE_PROJECT_DIR=otree_project
COPY otree_server/ /opt/otree-server/
COPY ${OTREE_PROJECT_DIR}/requirements.txt /tmp/requirements.txt
RUN python /opt/otree-server/install_requirements.py /tmp/requirements.txt

COPY ${OTREE_PROJECT_DIR}/ /app/
# nginx copies this folder from the image and serves it, so static files skip oTree's lock.
RUN python /opt/otree-server/collect_static.py /app /srv/static

# oTree opens ./db.sqlite3 at import even when it uses Postgres; point that at a scratch file.
RUN rm -f /app/db.sqlite3 && ln -s /tmp/unused-db.sqlite3 /app/db.sqlite3
# The stack's otree command (first on PATH) needs its run bit, whatever mode it arrived with (a
# copy made on Windows has none); set here, after the project, so requirements stay cached.
RUN chmod 755 /opt/otree-server/bin/otree
RUN useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin otree
USER otree
WORKDIR /app
EXPOSE 8000

# tini reaps `otree timeoutsubprocess`, which prodserver starts and never waits for.
ENTRYPOINT ["tini", "--"]
# One process, as oTree requires; prodserver also starts the page-timeout worker. `otree` is
# /opt/otree-server/bin/otree (see PATH above).
CMD ["otree", "prodserver", "0.0.0.0:8000"]
