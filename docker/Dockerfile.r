# The R reference server (r/plumber.R, the R original's plumber style) beside ours, for users who
# still want the R endpoint. It runs our exported .keras models through reticulate, so it extends
# the CPU image (same venv: TensorFlow, the project's model package) with R and plumber.
#
#   make docker-build-r      # needs planespotter/api:<version> (make docker-build) first
#   docker run -p 8100:8000 -v "$PWD/models:/models:ro" planespotter/r-plumber:0.1.0
#
# Build args: IMAGE (the CPU image to extend), VERSION (label). Debian's R packages come over
# apt (http), so no CA secret is needed here.
ARG IMAGE=planespotter/api:0.1.0
FROM ${IMAGE}
USER 0
# libpython3.11: the shared libpython that reticulate embeds (the official python image has its
# own in /usr/local/lib; Debian's python3.11 keeps it in this separate package).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      r-base-core r-cran-plumber r-cran-reticulate r-cran-jsonlite r-cran-jpeg r-cran-png \
      $(python -c "import sysconfig, os; print('' if os.path.exists(os.path.join(sysconfig.get_config_var('LIBDIR'), sysconfig.get_config_var('INSTSONAME') or '')) else 'libpython3.11')") \
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin
COPY r/ /opt/planespotter/r/
ENV RETICULATE_PYTHON=/opt/venv/bin/python \
    PLANESPOTTER_R_DIR=/opt/planespotter/r
USER 10001:10001
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "/opt/planespotter/healthcheck.py", "/healthz"]
# serve.R binds --host/--port; PORT is 8000 as in the Python image.
ENTRYPOINT ["Rscript", "/opt/planespotter/r/serve.R", "--host", "0.0.0.0"]
CMD []
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="planespotter-r-plumber" \
      org.opencontainers.image.description="The R plumber reference server of planespotter (reticulate + Keras models)" \
      org.opencontainers.image.version="${VERSION}"
