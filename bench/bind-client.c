/*
 * The bind() client of the lowport benchmark (bench/bind.ts compiles it at
 * bench time with gcc into a temp dir; no binary is committed).
 *
 *     bind-client PORT ITERATIONS WARMUP
 *
 * Repeats socket(AF_INET, SOCK_STREAM) + bind(127.0.0.1:PORT) + close(),
 * (PORT 0: the kernel picks a free ephemeral port, as a client's bind does)
 * WARMUP times untimed, then ITERATIONS times timed, and prints one JSON line:
 *
 *     {"bind_ns":..., "bind_median_ns":..., "cycle_ns":..., "clock_ns":..., "iterations":...}
 *
 *   bind_ns   mean time inside bind() alone, read with clock_gettime right
 *             before and after the call (clock_ns not subtracted)
 *   bind_median_ns  the median call of those: on a busy machine a call that
 *             is preempted costs milliseconds, which moves the mean but not
 *             the median (clock_ns not subtracted)
 *   cycle_ns  mean time of one whole socket + bind + close round
 *   clock_ns  mean cost of an empty clock_gettime pair on this machine, so the
 *             caller can subtract it from bind_ns
 *
 * bind() is called through libc's symbol (dynamically linked), so authbind's
 * LD_PRELOAD wrapper sees it. On a failed bind it prints
 * {"error":"EACCES","errno":13,"call":"bind","iteration":I} (I counts from 0,
 * warmup included) and exits 3: the benchmark checks that every
 * variant really binds, and that the controls really fail.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long long now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static long iteration = -1;

static int compare(const void *a, const void *b) {
  long long x = *(const long long *)a, y = *(const long long *)b;
  return (x > y) - (x < y);
}

static int fail(const char *what) {
  int e = errno;
  const char *name = strerrorname_np(e);
  printf("{\"error\":\"%s\",\"errno\":%d,\"call\":\"%s\",\"iteration\":%ld}\n", name ? name : "?", e, what, iteration);
  return 3;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s PORT ITERATIONS WARMUP\n", argv[0]);
    return 2;
  }
  int port = atoi(argv[1]);
  long iterations = atol(argv[2]);
  long warmup = atol(argv[3]);
  if (port < 0 || port > 65535 || iterations <= 0 || warmup < 0) {
    fprintf(stderr, "bind-client: bad arguments\n");
    return 2;
  }

  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons((unsigned short)port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);

  long long *calls = malloc(sizeof *calls * (size_t)iterations);
  if (calls == NULL) return fail("malloc");
  long long in_bind = 0;
  long long cycle_start = 0;
  for (long i = 0; i < warmup + iterations; i++) {
    iteration = i;
    if (i == warmup) cycle_start = now_ns();
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail("socket");
    long long t0 = now_ns();
    int r = bind(fd, (struct sockaddr *)&addr, sizeof addr);
    long long t1 = now_ns();
    if (r != 0) return fail("bind");
    close(fd);
    if (i >= warmup) {
      in_bind += t1 - t0;
      calls[i - warmup] = t1 - t0;
    }
  }
  long long cycle_total = now_ns() - cycle_start;

  // The cost of the two clock reads around bind(), measured the same way.
  const long clock_rounds = 100000;
  long long in_clock = 0;
  for (long i = 0; i < clock_rounds; i++) {
    long long t0 = now_ns();
    long long t1 = now_ns();
    in_clock += t1 - t0;
  }

  qsort(calls, (size_t)iterations, sizeof *calls, compare);
  double median = iterations % 2 ? (double)calls[iterations / 2] : (calls[iterations / 2 - 1] + calls[iterations / 2]) / 2.0;
  printf("{\"bind_ns\":%.1f,\"bind_median_ns\":%.1f,\"cycle_ns\":%.1f,\"clock_ns\":%.1f,\"iterations\":%ld}\n",
         (double)in_bind / iterations, median, (double)cycle_total / iterations, (double)in_clock / clock_rounds, iterations);
  free(calls);
  return 0;
}
