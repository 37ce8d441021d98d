# A Sluice executor: runs the tasks of submitted jobs in processes of the job
# binary under its work directory (a volume at /work) and serves shuffle
# data. /tmp holds the task sockets. Static binary, no base image.
FROM scratch
COPY executor /executor
COPY tmp /tmp
WORKDIR /work
EXPOSE 7078
ENTRYPOINT ["/executor"]
LABEL org.opencontainers.image.title="sluice-executor" \
      org.opencontainers.image.description="Sluice executor; work directories under /work"
