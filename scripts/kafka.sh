#!/usr/bin/env bash
# A single-node Apache Kafka (KRaft, broker+controller in one JVM) on 127.0.0.1, for tests and for
# anyone who wants a local broker. No Docker: the broker's jars come from Maven Central (via
# scripts/kafka/pom.xml) and run on the machine's Java 17.
#
#   scripts/kafka.sh start    download (once) and start; idempotent; last line: the bootstrap address
#   scripts/kafka.sh status   exit 0 and print the bootstrap address when the broker answers
#   scripts/kafka.sh stop     stop it and delete its data
#   scripts/kafka.sh halt     stop it but keep its data (`start` brings the same broker back)
#
# Environment: BALLAST_KAFKA_PORT (default 9092; the controller listens on PORT+1),
# BALLAST_KAFKA_HOME (run dir: config, data, logs, pid; default ~/.cache/ballast/kafka-run-PORT),
# BALLAST_CACHE (jar cache, default ~/.cache/ballast).
#
# Learned making this work (Kafka 4.4.0, Java 17, Debian's Maven 3.8):
# - `mvn dependency:copy-dependencies` needs the plugin version pinned in the pom; jars are cached
#   outside the clone so reruns do not download (a new pom version means a new cache dir).
# - The port opens before the broker can serve, so readiness is an Admin describeCluster call
#   (scripts/kafka/Ready.java, run in Java's source-file mode: kafka-tools 4.4.0 is not on Maven
#   Central). Kafka 4.4 logs through SLF4J 1.7: the log4j2 binding is log4j-slf4j-impl.
# - Kafka 4 is KRaft only. A combined-mode node needs controller.quorum.bootstrap.servers and
#   storage formatted with `kafka.tools.StorageTool format --standalone` before the first start.
# - Internal topics (offsets, transactions, share groups) need replication factor 1 on one node,
#   and transaction.state.log.min.isr=1, or transactional producers hang on InitProducerId.
# - group.initial.rebalance.delay.ms=0, or every new consumer group waits 3 s before its first
#   assignment.
set -euo pipefail

PORT="${BALLAST_KAFKA_PORT:-9092}"
CONTROLLER_PORT=$((PORT + 1))
CACHE="${BALLAST_CACHE:-$HOME/.cache/ballast}"
VERSION="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$(dirname "$0")/kafka/pom.xml")"
POM_HASH="$(cksum <"$(dirname "$0")/kafka/pom.xml" | cut -d" " -f1)"
LIBS="$CACHE/kafka-$VERSION-$POM_HASH/libs"
RUN="${BALLAST_KAFKA_HOME:-$CACHE/kafka-run-$PORT}"
BOOTSTRAP="127.0.0.1:$PORT"
POM="$(cd "$(dirname "$0")/kafka" && pwd)/pom.xml"

log() { echo "kafka.sh: $*" >&2; }

answering() {
  # A TCP connect is not enough (the port opens before the broker is registered): ask the broker.
  java -cp "$LIBS/*" -Dlog4j2.configurationFile="$RUN/log4j2.properties" \
    "$(dirname "$POM")/Ready.java" "$BOOTSTRAP" >/dev/null 2>&1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; }

running_pid() {
  [[ -f "$RUN/kafka.pid" ]] || return 1
  local pid
  pid="$(cat "$RUN/kafka.pid")"
  kill -0 "$pid" 2>/dev/null && echo "$pid"
}

fetch() {
  if [[ -f "$LIBS/.complete" ]]; then return; fi
  command -v mvn >/dev/null || { log "maven (mvn) is required to fetch Kafka's jars"; exit 1; }
  command -v java >/dev/null || { log "java 17+ is required"; exit 1; }
  log "fetching Apache Kafka $VERSION jars from Maven Central into $LIBS"
  mkdir -p "$LIBS"
  (cd "$(dirname "$POM")" && mvn -q -B -f "$POM" dependency:copy-dependencies \
    -Dstyle.color=never -DoutputDirectory="$LIBS" -DincludeScope=runtime) >&2
  touch "$LIBS/.complete"
}

configure() {
  mkdir -p "$RUN"
  cat >"$RUN/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
controller.quorum.bootstrap.servers=127.0.0.1:$CONTROLLER_PORT
log.dirs=$RUN/data
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
PROPS
  cat >"$RUN/log4j2.properties" <<PROPS
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = $RUN/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.file.ref = file
logger.kafka.name = kafka
logger.kafka.level = info
PROPS
}

start() {
  fetch
  if running_pid >/dev/null && answering; then
    log "already running (pid $(running_pid))"
    echo "$BOOTSTRAP"
    return
  fi
  if port_open; then
    log "port $PORT is taken by another process; set BALLAST_KAFKA_PORT"
    exit 1
  fi
  configure
  if [[ ! -f "$RUN/data/meta.properties" ]]; then
    local cluster
    cluster="$(java -cp "$LIBS/*" kafka.tools.StorageTool random-uuid 2>/dev/null | tail -n1)"
    java -cp "$LIBS/*" -Dlog4j2.configurationFile="$RUN/log4j2.properties" \
      kafka.tools.StorageTool format -t "$cluster" -c "$RUN/server.properties" --standalone \
      >"$RUN/format.log" 2>&1 || { log "storage format failed:"; cat "$RUN/format.log" >&2; exit 1; }
  fi
  log "starting Kafka $VERSION on $BOOTSTRAP (logs: $RUN/server.log)"
  nohup java -Xms256m -Xmx1g -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$RUN/log4j2.properties" \
    -cp "$LIBS/*" kafka.Kafka "$RUN/server.properties" >"$RUN/stdout.log" 2>&1 &
  echo $! >"$RUN/kafka.pid"
  for _ in $(seq 1 120); do
    if ! running_pid >/dev/null; then
      log "broker exited during startup:"; tail -n 30 "$RUN/stdout.log" "$RUN/server.log" >&2 || true
      exit 1
    fi
    if port_open && answering; then
      echo "$BOOTSTRAP"
      return
    fi
    sleep 0.5
  done
  log "broker did not answer within 60 s"; exit 1
}

status() {
  if running_pid >/dev/null && answering; then
    log "running (pid $(running_pid))"
    echo "$BOOTSTRAP"
  else
    log "not running on $BOOTSTRAP"
    exit 1
  fi
}

halt() {
  local pid
  if pid="$(running_pid)"; then
    kill "$pid"
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null || true
    log "halted (pid $pid); data kept in $RUN"
  fi
}

stop() {
  halt
  rm -rf "$RUN"
  log "stopped; data deleted"
}

case "${1:-}" in
  start) start ;;
  status) status ;;
  stop) stop ;;
  halt) halt ;;
  *) echo "usage: $0 start|status|stop|halt" >&2; exit 2 ;;
esac
