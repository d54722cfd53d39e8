#!/usr/bin/env bash
# Real-broker harness for the strangler integration tests.
#
# Runs local ActiveMQ 5.x brokers (Debian package, no Docker, no init script)
# as the current user, each in its own folder under the state dir:
#
#   legacy    plain STOMP   127.0.0.1:${STRANGLER_LEGACY_PORT:-61611}
#             login producer / producer-secret        (the self-hosted ActiveMQ)
#   amazonmq  STOMP+SSL     127.0.0.1:${STRANGLER_AMAZONMQ_PORT:-61614}
#             login strangler / amazonmq-secret-1     (stands in for Amazon MQ)
#
# Every plain broker also accepts producer-a / producer-a-secret and producer-b /
# producer-b-secret, and every TLS broker amq-producer-a / amazonmq-producer-a-secret and
# amq-producer-b / amazonmq-producer-b-secret: producers with their own Amazon MQ users
# (routes.yaml client_credentials). TLS brokers put the sender's login on each message
# (header JMSXUserID), so a test can see which Amazon MQ user sent it.
#
# Usage:
#   scripts/brokers.sh start                      start both standard brokers, wait for their ports
#   scripts/brokers.sh start-one NAME plain|tls PORT
#                                                 start an extra broker in <state>/NAME
#   scripts/brokers.sh stop [NAME]                stop one broker, or all in the state dir
#   scripts/brokers.sh status                     name, pid, port, alive for every broker
#   scripts/brokers.sh env                        export lines for the standard brokers
#
# State: ${STRANGLER_BROKERS_DIR:-<repo>/.brokers}/NAME/{activemq.xml,log4j.properties,
#        broker.p12,ca.pem (tls only),data/,tmp/,broker.log,broker.pid,port,kind}
# Everything except `status` and `env` output goes to stderr.
set -euo pipefail

REPO_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
STATE_DIR="$(realpath -m -- "${STRANGLER_BROKERS_DIR:-$REPO_DIR/.brokers}")"
ACTIVEMQ_HOME="${STRANGLER_ACTIVEMQ_HOME:-/usr/share/activemq}"
ACTIVEMQ_JAR="$ACTIVEMQ_HOME/bin/activemq.jar"

LEGACY_PORT="${STRANGLER_LEGACY_PORT:-61611}"
AMAZONMQ_PORT="${STRANGLER_AMAZONMQ_PORT:-61614}"

PLAIN_USER="producer"
PLAIN_PASSWORD="producer-secret"
TLS_USER="strangler"
TLS_PASSWORD="amazonmq-secret-1"
# Producers' own logins, besides the one above (user:password).
PLAIN_EXTRA_USERS=("producer-a:producer-a-secret" "producer-b:producer-b-secret")
TLS_EXTRA_USERS=("amq-producer-a:amazonmq-producer-a-secret"
                 "amq-producer-b:amazonmq-producer-b-secret")
KEYSTORE_PASSWORD="strangler-keystore"

START_TIMEOUT="${STRANGLER_BROKER_START_TIMEOUT:-60}"
STOP_TIMEOUT="${STRANGLER_BROKER_STOP_TIMEOUT:-30}"
# Extra JVM options, word-split (e.g. "-Xmx1G"); appended after the defaults so they win.
read -r -a EXTRA_JAVA_OPTS <<<"${STRANGLER_BROKER_JAVA_OPTS:-}"
JAVA_MEMORY_OPTS=(-Xms64M -Xmx256M)

log() { printf 'brokers.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '18,26p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit "${1:-2}"
}

# --- installation -------------------------------------------------------------

ensure_activemq() {
    if [[ ! -e "$ACTIVEMQ_JAR" ]]; then
        log "ActiveMQ not found at $ACTIVEMQ_JAR, installing the Debian package"
        local sudo=()
        if [[ "$(id -u)" -ne 0 ]]; then
            command -v sudo >/dev/null 2>&1 || die "need root or sudo to apt-get install activemq"
            sudo=(sudo -n)
        fi
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2
        "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q activemq >&2
        [[ -e "$ACTIVEMQ_JAR" ]] || die "apt-get install activemq did not provide $ACTIVEMQ_JAR"
    fi
    command -v java >/dev/null 2>&1 || die "java not found on PATH"
    command -v keytool >/dev/null 2>&1 || die "keytool not found on PATH"
}

# --- process and port probes ------------------------------------------------------

# pid_alive PID: true if PID exists and is not a zombie (PID 1 here may not reap).
pid_alive() {
    local pid="$1" state
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/stat" ]] || return 1
    state="$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$pid/stat" 2>/dev/null)" || return 1
    [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]]
}

# listen_inodes PORT: socket inodes of TCP sockets in LISTEN state on PORT (any address).
listen_inodes() {
    local hexport
    hexport="$(printf '%04X' "$1")"
    awk -v p=":$hexport" 'FNR > 1 && $4 == "0A" && substr($2, length($2) - 4) == p { print $10 }' \
        /proc/net/tcp /proc/net/tcp6 2>/dev/null || true
}

port_listening() {
    [[ -n "$(listen_inodes "$1")" ]]
}

# pid_listens PID PORT: true if process PID owns a listening socket on PORT.
pid_listens() {
    local pid="$1" port="$2" inodes links inode
    inodes="$(listen_inodes "$port")"
    [[ -n "$inodes" ]] || return 1
    links="$(find "/proc/$pid/fd" -maxdepth 1 -type l -printf '%l\n' 2>/dev/null)" || return 1
    while read -r inode; do
        if grep -qxF "socket:[$inode]" <<<"$links"; then
            return 0
        fi
    done <<<"$inodes"
    return 1
}

# pid_is_broker PID NAME: PID is alive and is the JVM we started for NAME (guards
# against a stale broker.pid whose number the kernel has since reused).
pid_is_broker() {
    local pid="$1" dir="$STATE_DIR/$2"
    pid_alive "$pid" || return 1
    local argv
    argv="$(tr '\0' '\n' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    grep -qxF -- "-Dactivemq.base=$dir" <<<"$argv"
}

read_file() { # read_file PATH -> first line or empty
    if [[ -r "$1" ]]; then
        head -n 1 "$1"
    fi
}

broker_pid() { read_file "$STATE_DIR/$1/broker.pid"; }
broker_port() { read_file "$STATE_DIR/$1/port"; }

# broker_running NAME: pid alive and listening on its port.
broker_running() {
    local pid port
    pid="$(broker_pid "$1")"
    port="$(broker_port "$1")"
    [[ -n "$pid" && -n "$port" ]] && pid_is_broker "$pid" "$1" && pid_listens "$pid" "$port"
}

# --- configuration --------------------------------------------------------------

# Each broker's self-signed certificate gets its own subject (OU names the broker):
# with equal subjects, OpenSSL cannot pick the right one from a CA bundle of several.
write_keystore() {
    local dir="$1"
    if [[ -s "$dir/broker.p12" && -s "$dir/ca.pem" ]]; then
        return 0
    fi
    log "generating self-signed keystore in $dir/broker.p12"
    rm -f "$dir/broker.p12" "$dir/ca.pem"
    keytool -genkeypair -noprompt -alias broker -keyalg RSA -keysize 2048 -validity 3650 \
        -storetype PKCS12 -keystore "$dir/broker.p12" \
        -storepass "$KEYSTORE_PASSWORD" -keypass "$KEYSTORE_PASSWORD" \
        -dname "CN=localhost, OU=strangler test broker $(basename "$dir"), O=strangler" \
        -ext "SAN=dns:localhost,ip:127.0.0.1" >&2
    keytool -exportcert -rfc -alias broker -storetype PKCS12 -keystore "$dir/broker.p12" \
        -storepass "$KEYSTORE_PASSWORD" -file "$dir/ca.pem.tmp" >&2
    mv "$dir/ca.pem.tmp" "$dir/ca.pem"
}

write_config() { # write_config DIR NAME KIND PORT
    local dir="$1" name="$2" kind="$3" port="$4"
    local user password ssl_context="" uri extra_users=() user_xml="" broker_extra="" entry
    if [[ "$kind" == "tls" ]]; then
        user="$TLS_USER"
        password="$TLS_PASSWORD"
        extra_users=("${TLS_EXTRA_USERS[@]}")
        # Amazon MQ's audit question "which user sent this?", answered on every message.
        broker_extra='
            populateJMSXUserID="true"'
        write_keystore "$dir"
        ssl_context="
        <sslContext>
            <sslContext keyStore=\"file:\${activemq.conf}/broker.p12\" keyStoreType=\"PKCS12\"
                        keyStorePassword=\"$KEYSTORE_PASSWORD\"/>
        </sslContext>"
        uri="stomp+ssl://127.0.0.1:$port?transport.enabledProtocols=TLSv1.2,TLSv1.3&amp;"
    else
        user="$PLAIN_USER"
        password="$PLAIN_PASSWORD"
        extra_users=("${PLAIN_EXTRA_USERS[@]}")
        uri="stomp://127.0.0.1:$port?"
    fi
    for entry in "$user:$password" "${extra_users[@]}"; do
        user_xml+="
                    <authenticationUser username=\"${entry%%:*}\" password=\"${entry#*:}\" groups=\"admins\"/>"
    done
    # Same limits as the stock activemq.xml (and Amazon MQ).
    uri="${uri}maximumConnections=1000&amp;wireFormat.maxFrameSize=104857600"

    cat >"$dir/activemq.xml.tmp" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Generated by scripts/brokers.sh; rewritten on every start. -->
<beans xmlns="http://www.springframework.org/schema/beans"
       xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans.xsd
                           http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">

    <!-- Resolves \${activemq.conf} and \${activemq.data} from system properties. -->
    <bean class="org.springframework.beans.factory.config.PropertyPlaceholderConfigurer"/>

    <broker xmlns="http://activemq.apache.org/schema/core"
            brokerName="$name"
            useJmx="false"
            persistent="true"
            advisorySupport="false"
            schedulerSupport="false"$broker_extra
            dataDirectory="\${activemq.data}">

        <persistenceAdapter>
            <kahaDB directory="\${activemq.data}/kahadb"/>
        </persistenceAdapter>

        <systemUsage>
            <systemUsage>
                <memoryUsage><memoryUsage percentOfJvmHeap="70"/></memoryUsage>
                <storeUsage><storeUsage limit="2 gb"/></storeUsage>
                <tempUsage><tempUsage limit="1 gb"/></tempUsage>
            </systemUsage>
        </systemUsage>

        <plugins>
            <simpleAuthenticationPlugin anonymousAccessAllowed="false">
                <users>$user_xml
                </users>
            </simpleAuthenticationPlugin>
        </plugins>
$ssl_context
        <transportConnectors>
            <transportConnector name="$kind-stomp" uri="$uri"/>
        </transportConnectors>
    </broker>
</beans>
EOF
    mv "$dir/activemq.xml.tmp" "$dir/activemq.xml"

    # The Debian build logs through log4j 1.2 (lib/optional); activemq.conf is on the classpath.
    cat >"$dir/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.logger.org.springframework=WARN
log4j.logger.org.apache.xbean=WARN
log4j.logger.org.apache.activemq.spring=WARN
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=%d{ISO8601} | %-5p | %m | %c | %t%n
EOF
    printf '%s\n' "$port" >"$dir/port"
    printf '%s\n' "$kind" >"$dir/kind"
}

# --- start / stop -----------------------------------------------------------------

validate_name() {
    [[ "$1" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "bad broker name '$1' (use [A-Za-z0-9._-])"
}

validate_port() {
    if [[ ! "$1" =~ ^[0-9]+$ ]] || ((10#$1 < 1 || 10#$1 > 65535)); then
        die "bad port '$1'"
    fi
}

# log_tail DIR: last lines of this run's part of broker.log, stack frames elided.
log_tail() {
    awk '/^===== .* starting broker /{n=0} {line[n++]=$0} END{for(i=0;i<n;i++) print line[i]}' \
        "$1/broker.log" 2>/dev/null | grep -v $'^\tat ' | tail -n 40 >&2 || true
}

# wait_for_broker NAME PID PORT: poll until PID listens on PORT; fail with the log tail.
wait_for_broker() {
    local name="$1" pid="$2" port="$3" dir="$STATE_DIR/$1"
    local deadline=$((SECONDS + START_TIMEOUT))
    while ! pid_listens "$pid" "$port"; do
        if ! pid_alive "$pid"; then
            log "broker '$name' (pid $pid) exited during startup; last lines of $dir/broker.log:"
            log_tail "$dir"
            exit 1
        fi
        if ((SECONDS >= deadline)); then
            log "broker '$name' (pid $pid) not listening on 127.0.0.1:$port after ${START_TIMEOUT}s;" \
                "last lines of $dir/broker.log:"
            log_tail "$dir"
            kill -KILL "$pid" 2>/dev/null || true
            exit 1
        fi
        sleep 0.2
    done
}

# start_broker NAME KIND PORT (caller holds no lock; we take the per-broker lock).
start_broker() {
    local name="$1" kind="$2" port="$3"
    local dir="$STATE_DIR/$name"
    validate_name "$name"
    validate_port "$port"
    [[ "$kind" == "plain" || "$kind" == "tls" ]] || die "kind must be plain or tls, not '$kind'"
    mkdir -p "$dir"

    (
        flock -w "$((START_TIMEOUT + 30))" 9 || die "timed out waiting for lock $dir/.lock"

        local pid old_port old_kind
        pid="$(broker_pid "$name")"
        old_port="$(broker_port "$name")"
        old_kind="$(read_file "$dir/kind")"
        if [[ -n "$pid" ]] && pid_is_broker "$pid" "$name"; then
            if [[ "$old_port" == "$port" && "$old_kind" == "$kind" ]]; then
                if ! pid_listens "$pid" "$port"; then
                    # Alive but not (yet) listening: started by someone else and still booting?
                    wait_for_broker "$name" "$pid" "$port"
                fi
                log "broker '$name' already running (pid $pid, $kind, 127.0.0.1:$port)"
                exit 0
            fi
            die "broker '$name' is running as $old_kind on port $old_port (pid $pid);" \
                "stop it before starting it as $kind on port $port"
        fi

        if port_listening "$port"; then
            die "port 127.0.0.1:$port is already in use by another process"
        fi

        mkdir -p "$dir/data" "$dir/tmp"
        write_config "$dir" "$name" "$kind" "$port"
        rm -f "$dir/broker.pid"
        {
            printf '\n===== %s starting broker %s (%s, port %s) =====\n' \
                "$(date -Is)" "$name" "$kind" "$port"
        } >>"$dir/broker.log"

        # setsid: own session, so Ctrl-C in a terminal or a test runner's process
        # group does not reach the broker; nohup for good measure. Both exec, so $!
        # is the JVM's pid. 9>&-: the JVM must not inherit (and so hold) the lock.
        setsid nohup java "${JAVA_MEMORY_OPTS[@]}" ${EXTRA_JAVA_OPTS[@]+"${EXTRA_JAVA_OPTS[@]}"} \
            -Djava.awt.headless=true \
            -Djava.io.tmpdir="$dir/tmp" \
            -Dactivemq.home="$ACTIVEMQ_HOME" \
            -Dactivemq.base="$dir" \
            -Dactivemq.conf="$dir" \
            -Dactivemq.data="$dir/data" \
            -jar "$ACTIVEMQ_JAR" start "xbean:file:$dir/activemq.xml" \
            </dev/null >>"$dir/broker.log" 2>&1 9>&- &
        pid=$!
        printf '%s\n' "$pid" >"$dir/broker.pid"
        log "starting broker '$name' (pid $pid, $kind, 127.0.0.1:$port, log $dir/broker.log)"
        local t0=$SECONDS
        wait_for_broker "$name" "$pid" "$port"
        log "broker '$name' listening on 127.0.0.1:$port after ~$((SECONDS - t0))s"
    ) 9>"$dir/.lock"
}

stop_broker() {
    local name="$1" dir="$STATE_DIR/$1"
    local pid port
    [[ -d "$dir" ]] || { log "no broker '$name' in $STATE_DIR"; return 0; }
    pid="$(broker_pid "$name")"
    port="$(broker_port "$name")"
    if [[ -z "$pid" ]] || ! pid_is_broker "$pid" "$name"; then
        log "broker '$name' is not running"
        rm -f "$dir/broker.pid"
        return 0
    fi
    log "stopping broker '$name' (pid $pid)"
    kill -TERM "$pid" 2>/dev/null || true
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while pid_alive "$pid"; do
        if ((SECONDS >= deadline)); then
            log "broker '$name' (pid $pid) ignored SIGTERM for ${STOP_TIMEOUT}s, sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            deadline=$((SECONDS + 10))
            while pid_alive "$pid" && ((SECONDS < deadline)); do sleep 0.1; done
            pid_alive "$pid" && die "broker '$name' (pid $pid) survived SIGKILL"
            break
        fi
        sleep 0.1
    done
    rm -f "$dir/broker.pid"
    if [[ -n "$port" ]] && port_listening "$port"; then
        log "warning: port $port still has a listener after stopping '$name'"
    fi
    log "broker '$name' stopped"
}

broker_names() {
    local d
    [[ -d "$STATE_DIR" ]] || return 0
    for d in "$STATE_DIR"/*/; do
        [[ -f "$d/kind" ]] && basename "$d"
    done
    return 0
}

# --- commands ---------------------------------------------------------------------

cmd_start() {
    ensure_activemq
    # Start both in parallel (each takes several seconds), then wait for both.
    local pids=() rc=0 p
    start_broker legacy plain "$LEGACY_PORT" &
    pids+=("$!")
    start_broker amazonmq tls "$AMAZONMQ_PORT" &
    pids+=("$!")
    for p in "${pids[@]}"; do
        wait "$p" || rc=1
    done
    ((rc == 0)) || die "could not start the standard brokers (see above)"
}

cmd_start_one() {
    [[ $# -eq 3 ]] || usage
    ensure_activemq
    start_broker "$1" "$2" "$3"
}

cmd_stop() {
    if [[ $# -ge 1 ]]; then
        validate_name "$1"
        stop_broker "$1"
        return 0
    fi
    local name
    while read -r name; do
        [[ -n "$name" ]] && stop_broker "$name"
    done < <(broker_names)
}

cmd_status() {
    local name pid port kind alive
    printf '%-20s %-8s %-6s %-6s %s\n' NAME PID PORT KIND ALIVE
    while read -r name; do
        [[ -n "$name" ]] || continue
        pid="$(broker_pid "$name")"
        port="$(broker_port "$name")"
        kind="$(read_file "$STATE_DIR/$name/kind")"
        if broker_running "$name"; then
            alive=yes
        elif [[ -n "$pid" ]] && pid_is_broker "$pid" "$name"; then
            alive=starting
        else
            alive=no
        fi
        printf '%-20s %-8s %-6s %-6s %s\n' "$name" "${pid:--}" "${port:--}" "${kind:--}" "$alive"
    done < <(broker_names)
}

cmd_env() {
    local kv
    for kv in \
        "STRANGLER_LEGACY_URL=stomp://127.0.0.1:$LEGACY_PORT" \
        "STRANGLER_LEGACY_USER=$PLAIN_USER" \
        "STRANGLER_LEGACY_PASSWORD=$PLAIN_PASSWORD" \
        "STRANGLER_AMAZONMQ_URL=stomp+ssl://127.0.0.1:$AMAZONMQ_PORT" \
        "STRANGLER_AMAZONMQ_CA=$STATE_DIR/amazonmq/ca.pem" \
        "STRANGLER_AMAZONMQ_USER=$TLS_USER" \
        "STRANGLER_AMAZONMQ_PASSWORD=$TLS_PASSWORD"; do
        printf 'export %s=%q\n' "${kv%%=*}" "${kv#*=}"
    done
}

main() {
    [[ $# -ge 1 ]] || usage
    local cmd="$1"
    shift
    case "$cmd" in
        start) [[ $# -eq 0 ]] || usage; cmd_start ;;
        start-one) cmd_start_one "$@" ;;
        stop) [[ $# -le 1 ]] || usage; cmd_stop "$@" ;;
        status) cmd_status ;;
        env) cmd_env ;;
        -h | --help | help) usage 0 ;;
        *) usage ;;
    esac
}

main "$@"
