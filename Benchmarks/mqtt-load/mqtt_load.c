// mqtt-load: the raw libmosquitto publisher and subscriber pipeline-bench measures against (no
// pipeline code). One process holds both clients, so send and receive times share one clock.
//
//   mqtt-load throughput PORT QOS COUNT TOPICS PREFIX WAIT_FILTER WAIT_COUNT
//       Publishes COUNT readings round robin over TOPICS sensors (PREFIX/sensors/dev-N/temperature,
//       about 80 bytes of JSON with a per-sensor seq), then, when WAIT_COUNT is 0, a QoS 1 sentinel
//       reading on PREFIX/other/sentinel/q10. Ends when WAIT_COUNT messages matching WAIT_FILTER
//       arrived (0: one message, the engine's answer to the sentinel, waited for up to 120 s), or
//       after 5 s without any.
//   mqtt-load latency PORT QOS RATE SECONDS TOPICS PREFIX broker|engine
//       Publishes at RATE readings/s. broker: receives the readings themselves (pub -> sub).
//       engine: every 5th reading toggles its sensor across rule hot-0 (25.5 fires, 22 clears,
//       24 holds) and the time to the command on PREFIX/actuators/dev-N/cooling-0/set is taken.
//
//   mqtt-load storm PORT QOS RATE SECONDS TOPICS PREFIX transitions|steady
//       Publishes at RATE readings/s for SECONDS over TOPICS sensors. transitions: each sensor's readings
//       go 25.5, 22, 24, 25.5, ... (rule hot-0 fires, clears, holds: 2 of 3 readings flip an instance and
//       send a command); steady: every reading is 24 (no transition). Counts the commands arriving on
//       PREFIX/actuators/+/+/set (QoS 1) until every expected one came or none came for 10 s, and reports
//       when the last one arrived after the last reading was published (`drain_seconds`).
//
//   mqtt-load echo PORT PREFIX
//       The floor under a transition: a rules engine in C with one hard-wired rule and nothing else
//       (hot-0: fires above 25, clears at or below 23, a QoS 1 command from the message callback on
//       PREFIX/actuators/dev-N/cooling-0/set). Prints `ready` once subscribed; on SIGTERM prints
//       `messages=N` on stderr and exits.
//
// Prints one JSON object on stdout. Every client sets TCP_NODELAY.
#include <mosquitto.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t changed = PTHREAD_COND_INITIALIZER;
static int connected_count = 0;
static int subscribed = 0;

static atomic_long received;
static atomic_llong last_received_ns;
static int64_t *sent_at_ns;  // latency via engine: per sensor, when its last trigger left
static int latency_via_engine;
static int64_t measure_from_ns;
static double *samples_us;
static atomic_long sample_count;
static long sample_capacity;
static size_t prefix_length;

static void on_connect(struct mosquitto *mosq, void *obj, int rc) {
    (void)mosq;
    (void)obj;
    if (rc != 0) {
        fprintf(stderr, "mqtt-load: connection refused (%d)\n", rc);
        exit(1);
    }
    pthread_mutex_lock(&lock);
    connected_count++;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

static void on_subscribe(struct mosquitto *mosq, void *obj, int mid, int count, const int *granted) {
    (void)mosq;
    (void)obj;
    (void)mid;
    (void)count;
    (void)granted;
    pthread_mutex_lock(&lock);
    subscribed = 1;
    pthread_cond_broadcast(&changed);
    pthread_mutex_unlock(&lock);
}

static void add_sample(int64_t latency_ns) {
    long index = atomic_fetch_add(&sample_count, 1);
    if (index < sample_capacity) samples_us[index] = (double)latency_ns / 1000.0;
}

static void on_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *message) {
    (void)mosq;
    (void)obj;
    int64_t now = now_ns();
    atomic_fetch_add(&received, 1);
    atomic_store(&last_received_ns, now);
    if (!samples_us || now < measure_from_ns) return;
    if (latency_via_engine) {
        // PREFIX/actuators/dev-N/cooling-0/set
        const char *device = message->topic + prefix_length + strlen("/actuators/dev-");
        long sensor = strtol(device, NULL, 10);
        int64_t sent = __atomic_load_n(&sent_at_ns[sensor], __ATOMIC_ACQUIRE);
        if (sent > 0) add_sample(now - sent);
    } else {
        const char *stamp = message->payloadlen > 0 ? strstr((const char *)message->payload, "\"t\":") : NULL;
        if (stamp) add_sample(now - strtoll(stamp + 4, NULL, 10));
    }
}

/// A connected client; `threaded` ones run libmosquitto's network thread, the others are driven by
/// `mosquitto_loop` from the caller (a publish is then written by the publishing thread itself).
static struct mosquitto *connect_client(const char *role, int port, int threaded) {
    char id[64];
    snprintf(id, sizeof id, "bench-%s-%d", role, (int)getpid());
    struct mosquitto *mosq = mosquitto_new(id, true, NULL);
    if (!mosq) exit(1);
    mosquitto_int_option(mosq, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_max_inflight_messages_set(mosq, 100);
    mosquitto_connect_callback_set(mosq, on_connect);
    mosquitto_subscribe_callback_set(mosq, on_subscribe);
    mosquitto_message_callback_set(mosq, on_message);
    pthread_mutex_lock(&lock);
    int before = connected_count;
    pthread_mutex_unlock(&lock);
    if (mosquitto_connect(mosq, "127.0.0.1", port, 60) != MOSQ_ERR_SUCCESS ||
        (threaded && mosquitto_loop_start(mosq) != 0)) {
        fprintf(stderr, "mqtt-load: cannot connect to 127.0.0.1:%d\n", port);
        exit(1);
    }
    pthread_mutex_lock(&lock);
    while (connected_count == before) {
        if (threaded) {
            pthread_cond_wait(&changed, &lock);
        } else {
            pthread_mutex_unlock(&lock);
            mosquitto_loop(mosq, 100, 1);
            pthread_mutex_lock(&lock);
        }
    }
    pthread_mutex_unlock(&lock);
    return mosq;
}

static void subscribe_and_wait(struct mosquitto *mosq, const char *filter, int qos) {
    pthread_mutex_lock(&lock);
    subscribed = 0;
    pthread_mutex_unlock(&lock);
    mosquitto_subscribe(mosq, NULL, filter, qos);
    pthread_mutex_lock(&lock);
    while (!subscribed) pthread_cond_wait(&changed, &lock);
    pthread_mutex_unlock(&lock);
}

static void reading(char *buffer, size_t size, long sensor, long seq, double value) {
    snprintf(buffer, size, "{\"value\":%.2f,\"unit\":\"C\",\"seq\":%ld,\"t\":%lld,\"sensor\":\"dev-%ld\"}", value,
             seq, (long long)now_ns(), sensor);
}

static void publish(struct mosquitto *mosq, const char *topic, const char *payload, int qos) {
    int rc;
    while ((rc = mosquitto_publish(mosq, NULL, topic, (int)strlen(payload), payload, qos, false)) == MOSQ_ERR_NOMEM)
        usleep(1000);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "mqtt-load: publish failed: %s\n", mosquitto_strerror(rc));
        exit(1);
    }
}

static int compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(double *sorted, long count, double p) {
    if (count == 0) return 0;
    long index = (long)(p * (double)(count - 1) + 0.5);
    return sorted[index];
}

static int throughput(int port, int qos, long count, long topics, const char *prefix, const char *wait_filter,
                      long wait_count) {
    struct mosquitto *sub = connect_client("sub", port, 1);
    subscribe_and_wait(sub, wait_filter, qos > 0 ? 1 : 0);
    struct mosquitto *pub = connect_client("pub", port, 1);
    char topic[256], payload[256];
    int64_t start = now_ns();
    for (long i = 0; i < count; i++) {
        long sensor = i % topics;
        snprintf(topic, sizeof topic, "%s/sensors/dev-%ld/temperature", prefix, sensor);
        reading(payload, sizeof payload, sensor, i / topics + 1, 23.5 + (double)(i % 101) / 100.0);
        publish(pub, topic, payload, qos);
    }
    int64_t published = now_ns();
    if (wait_count == 0) {
        snprintf(topic, sizeof topic, "%s/other/sentinel/q10", prefix);
        publish(pub, topic, "{\"value\": 100}", 1);
    }
    long target = wait_count == 0 ? 1 : wait_count;
    int64_t idle_since = now_ns();
    long seen = 0;
    while (atomic_load(&received) < target) {
        usleep(200);
        long now_received = atomic_load(&received);
        if (now_received != seen) {
            seen = now_received;
            idle_since = now_ns();
        } else if (now_ns() - idle_since > (wait_count == 0 ? 120000000000LL : 5000000000LL)) {
            // Waiting for the engine's answer to the sentinel: nothing arrives before it, so allow a long backlog.
            break;
        }
    }
    int64_t end = atomic_load(&last_received_ns);
    printf("{\"sent\":%ld,\"received\":%ld,\"seconds\":%.6f,\"publish_seconds\":%.6f}\n", count,
           atomic_load(&received), (double)(end - start) / 1e9, (double)(published - start) / 1e9);
    fflush(stdout);
    mosquitto_disconnect(pub);
    mosquitto_disconnect(sub);
    mosquitto_loop_stop(pub, false);
    mosquitto_loop_stop(sub, false);
    return atomic_load(&received) >= target ? 0 : 3;
}

static int latency(int port, int qos, double rate, double seconds, long topics, const char *prefix, int via_engine) {
    latency_via_engine = via_engine;
    sample_capacity = (long)(rate * seconds) + 16;
    samples_us = calloc((size_t)sample_capacity, sizeof(double));
    sent_at_ns = calloc((size_t)topics, sizeof(int64_t));
    char *firing = calloc((size_t)topics, 1);
    struct mosquitto *sub = connect_client("sub", port, 1);
    char filter[256];
    if (via_engine)
        snprintf(filter, sizeof filter, "%s/actuators/+/cooling-0/set", prefix);
    else
        snprintf(filter, sizeof filter, "%s/sensors/+/temperature", prefix);
    subscribe_and_wait(sub, filter, qos);
    struct mosquitto *pub = connect_client("pub", port, 0);
    char topic[256], payload[256];
    double warmup = 0.5;
    int64_t start = now_ns();
    measure_from_ns = start + (int64_t)(warmup * 1e9);
    long total = (long)(rate * (seconds + warmup));
    for (long i = 0; i < total; i++) {
        int64_t due = start + (int64_t)((double)i * 1e9 / rate);
        // Sleep, not spin: on 2 cores a spinning publisher takes the CPU the broker and the engine need.
        struct timespec wake = {.tv_sec = due / 1000000000, .tv_nsec = due % 1000000000};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, NULL) != 0) {
        }
        long sensor = i % topics;
        double value = 24.0;
        int trigger = via_engine && i % 5 == 0;
        if (trigger) {
            firing[sensor] = !firing[sensor];
            value = firing[sensor] ? 25.5 : 22.0;
        }
        snprintf(topic, sizeof topic, "%s/sensors/dev-%ld/temperature", prefix, sensor);
        reading(payload, sizeof payload, sensor, i / topics + 1, value);
        if (trigger) __atomic_store_n(&sent_at_ns[sensor], now_ns(), __ATOMIC_RELEASE);
        publish(pub, topic, payload, qos);
        mosquitto_loop(pub, 0, 1);  // acknowledgements, and whatever the publish could not write at once
    }
    double achieved = (double)total / ((double)(now_ns() - start) / 1e9);
    for (int i = 0; i < 30; i++) mosquitto_loop(pub, 10, 1);  // the last answers
    long count = atomic_load(&sample_count);
    if (count > sample_capacity) count = sample_capacity;
    qsort(samples_us, (size_t)count, sizeof(double), compare_doubles);
    printf("{\"samples\":%ld,\"rate\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f}\n", count,
           achieved, percentile(samples_us, count, 0.50), percentile(samples_us, count, 0.99),
           percentile(samples_us, count, 0.999), count ? samples_us[count - 1] : 0.0);
    fflush(stdout);
    mosquitto_disconnect(pub);
    mosquitto_disconnect(sub);
    mosquitto_loop_stop(sub, false);
    return count > 0 ? 0 : 3;
}

static int storm(int port, int qos, double rate, double seconds, long topics, const char *prefix, int flipping) {
    struct mosquitto *sub = connect_client("sub", port, 1);
    char filter[256];
    snprintf(filter, sizeof filter, "%s/actuators/+/+/set", prefix);
    subscribe_and_wait(sub, filter, 1);
    struct mosquitto *pub = connect_client("pub", port, 0);
    char topic[256], payload[256];
    long total = (long)(rate * seconds);
    long expected = 0;
    int64_t start = now_ns();
    for (long i = 0; i < total; i++) {
        int64_t due = start + (int64_t)((double)i * 1e9 / rate);
        struct timespec wake = {.tv_sec = due / 1000000000, .tv_nsec = due % 1000000000};
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &wake, NULL) != 0) {
        }
        long sensor = i % topics;
        long round = i / topics;
        double value = 24.0;
        if (flipping) {
            static const double cycle[3] = {25.5, 22.0, 24.0};
            value = cycle[round % 3];
            if (round % 3 != 2) expected++;
        }
        snprintf(topic, sizeof topic, "%s/sensors/dev-%ld/temperature", prefix, sensor);
        reading(payload, sizeof payload, sensor, round + 1, value);
        publish(pub, topic, payload, qos);
        mosquitto_loop(pub, 0, 1);
    }
    int64_t published = now_ns();
    double achieved = (double)total / ((double)(published - start) / 1e9);
    int64_t idle_since = now_ns();
    long seen = atomic_load(&received);
    while (atomic_load(&received) < expected) {
        mosquitto_loop(pub, 1, 1);
        long now_received = atomic_load(&received);
        if (now_received != seen) {
            seen = now_received;
            idle_since = now_ns();
        } else if (now_ns() - idle_since > 10000000000LL) {
            break;
        }
    }
    for (int i = 0; i < 10; i++) mosquitto_loop(pub, 10, 1);
    int64_t last = atomic_load(&last_received_ns);
    double drain = expected > 0 && last > published ? (double)(last - published) / 1e9 : 0.0;
    printf("{\"sent\":%ld,\"rate\":%.0f,\"expected\":%ld,\"received\":%ld,\"publish_seconds\":%.6f,"
           "\"drain_seconds\":%.6f}\n",
           total, achieved, expected, atomic_load(&received), (double)(published - start) / 1e9, drain);
    fflush(stdout);
    mosquitto_disconnect(pub);
    mosquitto_disconnect(sub);
    mosquitto_loop_stop(sub, false);
    return atomic_load(&received) >= expected ? 0 : 3;
}

static const char *echo_prefix;
static char echo_firing[1000000];

static void on_echo_message(struct mosquitto *mosq, void *obj, const struct mosquitto_message *message) {
    (void)obj;
    atomic_fetch_add(&received, 1);
    // PREFIX/sensors/dev-N/temperature with {"value":V,...}
    const char *device = message->topic + prefix_length + strlen("/sensors/dev-");
    long sensor = strtol(device, NULL, 10);
    const char *found = message->payloadlen > 0 ? strstr((const char *)message->payload, "\"value\":") : NULL;
    if (!found || sensor < 0 || sensor >= (long)sizeof echo_firing) return;
    double value = strtod(found + 8, NULL);
    const char *state = NULL;
    if (!echo_firing[sensor] && value > 25) state = "on";
    if (echo_firing[sensor] && value <= 23) state = "off";
    if (!state) return;
    echo_firing[sensor] = state[1] == 'n';
    char topic[256], payload[256];
    snprintf(topic, sizeof topic, "%s/actuators/dev-%ld/cooling-0/set", echo_prefix, sensor);
    snprintf(payload, sizeof payload, "{\"state\":\"%s\",\"rule\":\"hot-0\",\"value\":%g}", state, value);
    mosquitto_publish(mosq, NULL, topic, (int)strlen(payload), payload, 1, false);
}

static volatile sig_atomic_t echo_stop;
static void on_echo_signal(int signal) {
    (void)signal;
    echo_stop = 1;
}

static int echo(int port, const char *prefix) {
    echo_prefix = prefix;
    signal(SIGTERM, on_echo_signal);
    struct mosquitto *engine = connect_client("echo", port, 1);
    mosquitto_message_callback_set(engine, on_echo_message);
    char filter[256];
    snprintf(filter, sizeof filter, "%s/sensors/+/temperature", prefix);
    subscribe_and_wait(engine, filter, 1);
    printf("ready\n");
    fflush(stdout);
    while (!echo_stop) usleep(10000);
    fprintf(stderr, "messages=%ld\n", atomic_load(&received));
    fflush(stderr);
    _exit(0);
}

int main(int argc, char **argv) {
    mosquitto_lib_init();
    prctl(PR_SET_TIMERSLACK, 1UL);  // wake on time when pacing
    if (argc == 9 && strcmp(argv[1], "throughput") == 0) {
        prefix_length = strlen(argv[6]);
        return throughput(atoi(argv[2]), atoi(argv[3]), atol(argv[4]), atol(argv[5]), argv[6], argv[7], atol(argv[8]));
    }
    if (argc == 9 && strcmp(argv[1], "latency") == 0) {
        prefix_length = strlen(argv[7]);
        return latency(atoi(argv[2]), atoi(argv[3]), atof(argv[4]), atof(argv[5]), atol(argv[6]), argv[7],
                       strcmp(argv[8], "engine") == 0);
    }
    if (argc == 4 && strcmp(argv[1], "echo") == 0) {
        prefix_length = strlen(argv[3]);
        return echo(atoi(argv[2]), argv[3]);
    }
    if (argc == 9 && strcmp(argv[1], "storm") == 0) {
        prefix_length = strlen(argv[7]);
        return storm(atoi(argv[2]), atoi(argv[3]), atof(argv[4]), atof(argv[5]), atol(argv[6]), argv[7],
                     strcmp(argv[8], "transitions") == 0);
    }
    fprintf(stderr,
            "usage: mqtt-load throughput PORT QOS COUNT TOPICS PREFIX WAIT_FILTER WAIT_COUNT\n"
            "       mqtt-load latency PORT QOS RATE SECONDS TOPICS PREFIX broker|engine\n"
            "       mqtt-load storm PORT QOS RATE SECONDS TOPICS PREFIX transitions|steady\n"
            "       mqtt-load echo PORT PREFIX\n");
    return 2;
}
