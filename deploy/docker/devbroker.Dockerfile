# FOR DEMOS AND TESTS ONLY: a Kafka-protocol broker that keeps everything in
# memory (github.com/twmb/franz-go/pkg/kfake): one node, no replication, no
# durability, data gone when it stops. Point the demo at a real Kafka cluster
# with deploy/docker-compose.kafka.yml.
FROM scratch
COPY devbroker /devbroker
COPY tmp /tmp
EXPOSE 9092
ENTRYPOINT ["/devbroker"]
CMD ["--host", "0.0.0.0", "--port", "9092", "--advertise", "broker"]
LABEL org.opencontainers.image.title="sluice-devbroker" \
      org.opencontainers.image.description="DEVELOPMENT ONLY: in-memory Kafka-protocol broker (kfake) for demos and tests; keeps no data" \
      org.sluice.dev-only="true"
