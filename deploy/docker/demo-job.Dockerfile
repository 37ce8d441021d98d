# The demo job and the client that submits it: a one-shot container runs
# `driver submit ... /demojob -- ARGS`, which streams the job binary to the
# driver. Static binaries, no base image.
FROM scratch
COPY driver /driver
COPY demojob /demojob
COPY tmp /tmp
ENTRYPOINT ["/driver"]
LABEL org.opencontainers.image.title="sluice-demo-job" \
      org.opencontainers.image.description="Sluice demo: Kafka word count with a sliding window and state, and the driver client that submits it"
