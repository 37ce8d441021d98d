# The demo's Kafka companion: produces the known input (demotool produce),
# reads topics back (demotool tail), checks Kafka (demotool check).
FROM scratch
COPY demotool /demotool
COPY tmp /tmp
ENTRYPOINT ["/demotool"]
LABEL org.opencontainers.image.title="sluice-demo-tools" \
      org.opencontainers.image.description="Sluice demo producer of known input and topic reader"
