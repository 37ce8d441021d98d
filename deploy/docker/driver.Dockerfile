# The Sluice driver: `driver serve` coordinates the cluster; the drivers of
# submitted jobs run inside it, in /state/jobs/<id>/. Static binary, no base
# image. The cluster secret is mounted at run time, never copied in.
FROM scratch
COPY driver /driver
COPY tmp /tmp
WORKDIR /state
EXPOSE 7077 4040 8080
ENTRYPOINT ["/driver"]
CMD ["serve", "--listen", ":7077", "--state-dir", "/state", "--secret-file", "/run/secrets/sluice-secret"]
LABEL org.opencontainers.image.title="sluice-driver" \
      org.opencontainers.image.description="Sluice cluster driver (driver serve); state in /state"
