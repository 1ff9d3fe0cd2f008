# A stand-in for the official `python:3.11-slim`, built from Debian by docker/base.sh when no
# container registry can be reached (CI here). It only has to offer what docker/Dockerfile and
# docker/Dockerfile.gpu rely on: `python`/`python3` 3.11 with the venv module and pip, CA
# certificates, `useradd`, a Debian bookworm userland. Python here is Debian's 3.11.2 in /usr/bin
# (the official image has CPython 3.11.x in /usr/local/bin); the Dockerfiles only call `python`.
FROM localhost/debian:bookworm
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      python3 python3-venv python3-pip python-is-python3 ca-certificates \
 && rm -f /usr/lib/python3.11/EXTERNALLY-MANAGED \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /root/.cache
ENV LANG=C.UTF-8
LABEL org.opencontainers.image.title="python:3.11-slim stand-in" \
      org.opencontainers.image.description="Debian bookworm + python3 3.11, built locally by planespotter docker/base.sh (not the official image)"
CMD ["python3"]
