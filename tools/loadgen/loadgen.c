// Owns the compiled IRC-over-TLS load generator: chat bench's IRC fan-out workload on one core.
//
// It measures what `chat bench --protocol irc` measures (src/bench/runner.ts, tracker.ts,
// payload.ts, histogram.ts, irc_adapter.ts), with the same definitions, so its numbers can be
// set beside the bench's: the Deno bench saturates its own core near 2 M deliveries/s, below
// what the server can do. Single-threaded, non-blocking sockets, level-triggered epoll, OpenSSL.
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

// Smallest body for the largest numbers a run uses (payload.ts MIN_PAYLOAD_BYTES).
#define MIN_PAYLOAD_BYTES 24
// Largest TLS record we write: ngircd with GnuTLS stalls on bigger ones (docs/PERFORMANCE.md).
#define MAX_WRITE 1024
// SSL_read calls per connection per wake-up before others get their turn.
#define READS_PER_WAKE 64
// A sender's queue holds at most this much before the run counts an error (rate 0 queues all).
#define MAX_OUT_BYTES (64u << 20)
#define EVENTS 1024

enum state { S_IDLE, S_CONNECTING, S_HANDSHAKE, S_WELCOME, S_NAMES, S_LIVE, S_CLOSED };

struct conn {
  int fd;
  int index;
  enum state state;
  SSL *ssl;
  unsigned char *rbuf;
  size_t rfill;
  int discarding;   // inside a line longer than the read buffer: drop until its LF
  char *obuf;
  size_t olen, ooff, ocap;
  uint32_t mask;     // events registered with epoll
  int want_out;      // TLS needs the socket writable (handshake, a pending write)
  int quitting;
  int again;         // reads were cut short: data may wait inside the TLS library
  double deadline;   // login deadline (ms, monotonic)
  uint64_t rx;
};

// ---- options ----------------------------------------------------------------------------

static struct {
  long clients, senders, messages, payload, rooms, login_conc, port, server_pid;
  double rate;
  long timeout_ms, login_timeout_ms, settle_ms, probe_ms, max_seconds;
  const char *host, *ca, *prefix, *password;
  int dry_run;
} opt = {
    .clients = 100, .senders = 10, .messages = 100, .payload = 64, .rooms = 1,
    .login_conc = 64, .port = 0, .server_pid = 0, .rate = 0, .timeout_ms = 10000,
    .login_timeout_ms = 120000, .settle_ms = 500, .probe_ms = 20, .max_seconds = 600,
    .host = "127.0.0.1", .ca = NULL, .prefix = "u", .password = "bench-password",
};

static void usage_exit(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("loadgen: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputs("\n(loadgen --help lists the flags)\n", stderr);
  va_end(ap);
  exit(2);
}

static const char *HELP =
    "usage: loadgen --port PORT --ca FILE [flags]\n"
    "  IRC over TLS fan-out load, measured like `chat bench --protocol irc --json`.\n"
    "  --host H              server address [127.0.0.1] (also the name its certificate is checked for)\n"
    "  --port P              the server's IRC TLS port (required)\n"
    "  --ca FILE             PEM certificate(s) to verify the server with (required)\n"
    "  -n, --clients N       connections, one user each [100]\n"
    "  -s, --senders S       clients that send (the first S) [10]\n"
    "  -m, --messages M      messages per sender [100]\n"
    "  --rate R              messages per second per sender, 0: all at once [0]\n"
    "  --payload B           body size in bytes [64]\n"
    "  --rooms 1             only one room (#general) is supported\n"
    "  --user-prefix P       user names are P<index> [u]\n"
    "  --password PW         every user's password (PASS) [bench-password]\n"
    "  --login-concurrency C logins in flight at once [64]\n"
    "  --server-pid PID      read the server's CPU time from /proc/PID/stat\n"
    "  --timeout-ms T        stop waiting after this long without progress [10000]\n"
    "  --login-timeout-ms T  deadline of one login [120000]\n"
    "  --settle-ms T         after login, wait until this long without traffic [500]\n"
    "  --probe-ms T          ping interval on an extra connection, 0: off [20]\n"
    "  --max-seconds T       hard limit of the send phase [600]\n"
    "  --dry-run             check the flags and exit\n";

static long int_flag(const char *name, const char *v, long min, long max) {
  char *end;
  errno = 0;
  long n = strtol(v, &end, 10);
  if (errno || end == v || *end || n < min || n > max)
    usage_exit("%s must be an integer from %ld to %ld, got \"%s\"", name, min, max, v);
  return n;
}

static double real_flag(const char *name, const char *v) {
  char *end;
  errno = 0;
  double n = strtod(v, &end);
  if (errno || end == v || *end || !isfinite(n) || n < 0)
    usage_exit("%s must be a number >= 0, got \"%s\"", name, v);
  return n;
}

static void parse_flags(int argc, char **argv) {
  int have_port = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      fputs(HELP, stdout);
      exit(0);
    }
    if (!strcmp(a, "--dry-run")) {
      opt.dry_run = 1;
      continue;
    }
    // --flag=value or --flag value
    char name[64];
    const char *val = NULL;
    const char *eq = strncmp(a, "--", 2) == 0 ? strchr(a, '=') : NULL;
    if (eq) {
      size_t len = (size_t)(eq - a);
      if (len >= sizeof name) usage_exit("unknown flag %s", a);
      memcpy(name, a, len);
      name[len] = 0;
      val = eq + 1;
    } else {
      if (strlen(a) >= sizeof name) usage_exit("unknown flag %s", a);
      strcpy(name, a);
    }
    static const char *known[] = {"-n", "--clients", "-s", "--senders", "-m", "--messages",
        "--rate", "--payload", "--rooms", "--user-prefix", "--password", "--login-concurrency",
        "--server-pid", "--timeout-ms", "--login-timeout-ms", "--settle-ms", "--probe-ms",
        "--max-seconds", "--host", "--port", "--ca", NULL};
    int ok = 0;
    for (int k = 0; known[k]; k++) ok |= !strcmp(name, known[k]);
    if (!ok) usage_exit("unknown flag %s", a);
    if (!val) {
      if (i + 1 >= argc) usage_exit("%s needs a value", name);
      val = argv[++i];
    }
    if (!strcmp(name, "-n") || !strcmp(name, "--clients"))
      opt.clients = int_flag("--clients", val, 1, 1000000);
    else if (!strcmp(name, "-s") || !strcmp(name, "--senders"))
      opt.senders = int_flag("--senders", val, 0, 1000000);
    else if (!strcmp(name, "-m") || !strcmp(name, "--messages"))
      opt.messages = int_flag("--messages", val, 0, 10000000);
    else if (!strcmp(name, "--rate")) opt.rate = real_flag("--rate", val);
    else if (!strcmp(name, "--payload")) opt.payload = int_flag("--payload", val, 1, 3500);
    else if (!strcmp(name, "--rooms")) {
      opt.rooms = int_flag("--rooms", val, 1, 10000000);
      if (opt.rooms != 1)
        usage_exit("--rooms must be 1: this driver speaks to #general only (use chat bench for rooms)");
    } else if (!strcmp(name, "--user-prefix")) {
      if (!*val || strpbrk(val, " \r\n:!@#,*?"))
        usage_exit("--user-prefix must be a non-empty nick prefix without spaces or IRC separators");
      opt.prefix = val;
    } else if (!strcmp(name, "--password")) {
      if (!*val || strpbrk(val, " \r\n")) usage_exit("--password must be non-empty, without spaces");
      opt.password = val;
    } else if (!strcmp(name, "--login-concurrency"))
      opt.login_conc = int_flag("--login-concurrency", val, 1, 100000);
    else if (!strcmp(name, "--server-pid"))
      opt.server_pid = int_flag("--server-pid", val, 1, INT_MAX);
    else if (!strcmp(name, "--timeout-ms"))
      opt.timeout_ms = int_flag("--timeout-ms", val, 1, 3600000);
    else if (!strcmp(name, "--login-timeout-ms"))
      opt.login_timeout_ms = int_flag("--login-timeout-ms", val, 1, 3600000);
    else if (!strcmp(name, "--settle-ms")) opt.settle_ms = int_flag("--settle-ms", val, 1, 600000);
    else if (!strcmp(name, "--probe-ms")) opt.probe_ms = int_flag("--probe-ms", val, 0, 600000);
    else if (!strcmp(name, "--max-seconds"))
      opt.max_seconds = int_flag("--max-seconds", val, 1, 86400);
    else if (!strcmp(name, "--host")) {
      if (!*val) usage_exit("--host must not be empty");
      opt.host = val;
    } else if (!strcmp(name, "--port")) {
      opt.port = int_flag("--port", val, 1, 65535);
      have_port = 1;
    } else if (!strcmp(name, "--ca")) opt.ca = val;
  }
  if (opt.senders > opt.clients) usage_exit("--senders must not exceed --clients");
  if (!opt.dry_run && !have_port) usage_exit("--port is required");
  if (!opt.dry_run && !opt.ca) usage_exit("--ca is required (the server certificate is verified)");
  double bits = (double)opt.clients * (double)opt.senders * (double)((opt.messages + 7) / 8);
  if (bits > (double)(1 << 30))
    usage_exit("the workload needs %.0f bytes of delivery bookkeeping (at most 2^30)", bits);
}

// ---- clocks, CPU --------------------------------------------------------------------------

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static double self_cpu_seconds(void) {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
         ru.ru_stime.tv_usec / 1e6;
}

// utime + stime of every thread of a process, from /proc/PID/stat; -1 when unreadable.
static double proc_cpu_seconds(long pid) {
  char path[64], buf[4096];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  // The command name may hold spaces and parentheses: count fields after the last ')'.
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  p += 2;
  unsigned long long ut = 0, st = 0;
  // state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
  if (sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

// ---- latency histogram (log-linear, as src/bench/histogram.ts) --------------------------

#define SUB_BITS 7
#define SUB (1 << SUB_BITS)
#define MAX_EXP 36
#define HBUCKETS ((MAX_EXP - SUB_BITS + 2) * SUB)

struct hist {
  uint64_t counts[HBUCKETS];
  uint64_t count, max;
  double sum;
};

static int hist_index(uint64_t v) {
  if (v < SUB) return (int)v;
  int e = 63 - __builtin_clzll(v);
  if (e > MAX_EXP) {
    e = MAX_EXP;
    v = (1ull << (MAX_EXP + 1)) - 1;
  }
  int shift = e - SUB_BITS;
  return (shift + 1) * SUB + (int)(v >> shift) - SUB;
}

static uint64_t hist_highest(int i) {
  if (i < SUB) return (uint64_t)i;
  int shift = i / SUB - 1;
  uint64_t sub = (uint64_t)(i % SUB);
  return ((SUB + sub + 1) << shift) - 1;
}

static void hist_record(struct hist *h, double micros) {
  uint64_t v = micros > 0 ? (uint64_t)micros : 0;
  h->counts[hist_index(v)]++;
  h->count++;
  h->sum += (double)v;
  if (v > h->max) h->max = v;
}

static uint64_t hist_percentile(const struct hist *h, double p) {
  if (!h->count) return 0;
  double r = ceil(p / 100.0 * (double)h->count);
  uint64_t rank = r < 1 ? 1 : (uint64_t)r;
  uint64_t seen = 0;
  for (int i = 0; i < HBUCKETS; i++) {
    seen += h->counts[i];
    if (seen >= rank) {
      uint64_t v = hist_highest(i);
      return v < h->max ? v : h->max;
    }
  }
  return h->max;
}

static void hist_json(FILE *o, const struct hist *h) {
  double mean = h->count ? h->sum / (double)h->count : 0;
  fprintf(o,
          "{\"count\":%llu,\"p50\":%.15g,\"p99\":%.15g,\"p999\":%.15g,\"max\":%.15g,"
          "\"mean\":%.15g}",
          (unsigned long long)h->count, hist_percentile(h, 50) / 1000.0,
          hist_percentile(h, 99) / 1000.0, hist_percentile(h, 99.9) / 1000.0, h->max / 1000.0,
          round(mean) / 1000.0);
}

// ---- delivery accounting (as src/bench/tracker.ts) ---------------------------------------

static uint8_t *bits;       // receivers × senders × stride
static int32_t *max_seq;    // receivers × senders
static size_t stride;
static uint8_t *live;       // 1 when client i logged in (owed deliveries)
static uint64_t expected, delivered, duplicated, reordered, unexpected;
static double last_delivery_at;
static struct hist latency, probe_latency;

static void tracker_arrived(long r, long s, long seq, double lat_us, double now) {
  if (s >= opt.senders || seq >= opt.messages || r >= opt.clients || r == s || !live[r]) {
    unexpected++;
    return;
  }
  size_t pair = (size_t)r * (size_t)opt.senders + (size_t)s;
  size_t byte = pair * stride + (size_t)(seq >> 3);
  uint8_t bit = (uint8_t)(1u << (seq & 7));
  if (bits[byte] & bit) {
    duplicated++;
    return;
  }
  bits[byte] |= bit;
  delivered++;
  last_delivery_at = now;
  hist_record(&latency, lat_us);
  if (seq < max_seq[pair]) reordered++;
  else max_seq[pair] = (int32_t)seq;
}

// ---- errors by code -----------------------------------------------------------------------

#define MAX_CODES 64
static struct { char code[48]; uint64_t n; } errs[MAX_CODES];
static int nerrs;
static uint64_t error_total;

static void count_error(const char *code) {
  error_total++;
  for (int i = 0; i < nerrs; i++)
    if (!strcmp(errs[i].code, code)) {
      errs[i].n++;
      return;
    }
  if (nerrs == MAX_CODES) code = "other";
  for (int i = 0; i < nerrs; i++)
    if (!strcmp(errs[i].code, code)) {
      errs[i].n++;
      return;
    }
  if (nerrs == MAX_CODES) return;
  snprintf(errs[nerrs].code, sizeof errs[nerrs].code, "%s", code);
  errs[nerrs++].n = 1;
}

// ---- connections --------------------------------------------------------------------------

static struct conn *conns;   // clients 0 … N-1, then the probe connection at index N
static long nconns;
static int ep;
static SSL_CTX *ctx;
static struct sockaddr_storage addr;
static socklen_t addrlen;
static int host_is_ip;
static size_t rbuf_bytes;
static long logged_in, failed, inflight;
static double probe_sent_at;
static int probe_index = -1;

static void set_mask(struct conn *c) {
  uint32_t m = EPOLLIN | ((c->want_out || c->ooff < c->olen) ? EPOLLOUT : 0);
  if (c->state == S_CONNECTING) m = EPOLLOUT;
  if (m == c->mask) return;
  struct epoll_event ev = {.events = m, .data.u32 = (uint32_t)c->index};
  if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) == 0) c->mask = m;
}

static void conn_close(struct conn *c) {
  if (c->state == S_CLOSED || c->state == S_IDLE) return;
  int was_login = c->state >= S_CONNECTING && c->state < S_LIVE;
  if (c->ssl) SSL_free(c->ssl);
  c->ssl = NULL;
  close(c->fd);
  c->fd = -1;
  c->state = S_CLOSED;
  c->again = 0;
  if (was_login) inflight--;
  free(c->rbuf);
  c->rbuf = NULL;
  free(c->obuf);
  c->obuf = NULL;
  c->olen = c->ooff = c->ocap = 0;
}

// A login that did not complete: counted like chat bench's `login:<code>`.
static void login_fail(struct conn *c, const char *code, const char *why) {
  if (failed < 5) fprintf(stderr, "loadgen: client %d: %s\n", c->index, why);
  if (c->index < opt.clients) {
    failed++;
    char key[64];
    snprintf(key, sizeof key, "login:%s", code);
    count_error(key);
  } else {
    count_error("probe:login_failed");
  }
  conn_close(c);
}

static void enqueue(struct conn *c, const char *data, size_t len) {
  if (c->state == S_CLOSED || c->state == S_IDLE) return;
  if (c->olen + len > c->ocap) {
    if (c->ooff > 0) {  // reclaim what was written before growing
      memmove(c->obuf, c->obuf + c->ooff, c->olen - c->ooff);
      c->olen -= c->ooff;
      c->ooff = 0;
    }
    if (c->olen + len > c->ocap) {
      size_t cap = c->ocap ? c->ocap : 4096;
      while (cap < c->olen + len) cap *= 2;
      if (cap > MAX_OUT_BYTES) {
        count_error("output_queue_full");
        return;
      }
      char *p = realloc(c->obuf, cap);
      if (!p) {
        count_error("out_of_memory");
        return;
      }
      c->obuf = p;
      c->ocap = cap;
    }
  }
  memcpy(c->obuf + c->olen, data, len);
  c->olen += len;
}

static void dropped(struct conn *c) {
  // A live connection the bench did not end was dropped by the server (slow consumer, …).
  if (c->state == S_LIVE && !c->quitting) count_error("closed_by_server");
  if (c->state > S_IDLE && c->state < S_LIVE) login_fail(c, "login_failed", "closed during login");
  else conn_close(c);
}

// Writes the queue in records of at most MAX_WRITE bytes until it is empty or TLS must wait.
static void flush(struct conn *c) {
  if (c->state < S_WELCOME || c->state == S_CLOSED) return;
  c->want_out = 0;
  while (c->ooff < c->olen) {
    size_t len = c->olen - c->ooff;
    if (len > MAX_WRITE) len = MAX_WRITE;
    ERR_clear_error();
    int n = SSL_write(c->ssl, c->obuf + c->ooff, (int)len);
    if (n > 0) {
      c->ooff += (size_t)n;
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_WRITE) c->want_out = 1;
    else if (e != SSL_ERROR_WANT_READ) {
      dropped(c);
      return;
    }
    break;
  }
  if (c->ooff == c->olen) c->ooff = c->olen = 0;
  set_mask(c);
}

static void send_text(struct conn *c, const char *text) {
  enqueue(c, text, strlen(text));
}

// "^:\S+ NNN " where NNN is three digits: returns the numeric or -1.
static int numeric_of(const char *l, size_t len) {
  if (len < 2 || l[0] != ':') return -1;
  const char *sp = memchr(l, ' ', len);
  if (!sp || sp == l + 1) return -1;
  size_t rest = len - (size_t)(sp + 1 - l);
  const char *p = sp + 1;
  if (rest < 4 || p[3] != ' ') return -1;
  for (int k = 0; k < 3; k++)
    if (p[k] < '0' || p[k] > '9') return -1;
  return (p[0] - '0') * 100 + (p[1] - '0') * 10 + (p[2] - '0');
}

static int starts(const char *l, size_t len, const char *w) {
  size_t n = strlen(w);
  return len >= n && !memcmp(l, w, n);
}

// ":\S+ PONG "
static int is_pong(const char *l, size_t len) {
  if (len < 2 || l[0] != ':') return 0;
  const char *sp = memchr(l, ' ', len);
  if (!sp || sp == l + 1) return 0;
  return starts(sp + 1, len - (size_t)(sp + 1 - l), "PONG ");
}

static void answer_ping(struct conn *c, const char *l, size_t len) {
  char out[600];
  if (len > 500) len = 500;
  int n = snprintf(out, sizeof out, "PONG%.*s\r\n", (int)(len - 4), l + 4);
  enqueue(c, out, (size_t)n);
}

// Finds `~b<sender>.<seq>.<micros>~` in [start, end) (hint first), as payload.ts parseBody.
static int parse_body(const unsigned char *b, size_t start, size_t end, long hint, long *s,
                      long *seq, long long *micros) {
  size_t i = start;
  if (hint >= (long)start && (size_t)hint + 1 < end && b[hint] == '~' && b[hint + 1] == 'b') {
    i = (size_t)hint;
  } else {
    for (;;) {
      const unsigned char *t = memchr(b + i, '~', end - i);
      if (!t) return 0;
      i = (size_t)(t - b);
      if (i + 1 >= end) return 0;
      if (b[i + 1] == 'b') break;
      i++;
    }
  }
  i += 2;
  long long nums[3];
  for (int k = 0; k < 3; k++) {
    long long n = 0;
    int digits = 0;
    while (i < end && b[i] >= '0' && b[i] <= '9' && digits < 18) {
      n = n * 10 + (b[i] - '0');
      digits++;
      i++;
    }
    if (!digits || i >= end) return 0;
    unsigned char sep = b[i++];
    if (k < 2 ? sep != '.' : sep != '~') return 0;
    nums[k] = n;
  }
  if (nums[0] > LONG_MAX || nums[1] > LONG_MAX) return 0;
  *s = (long)nums[0];
  *seq = (long)nums[1];
  *micros = nums[2];
  return 1;
}

static long body_tail;

static void go_live(struct conn *c) {
  c->state = S_LIVE;
  inflight--;
  if (c->index < opt.clients) {
    live[c->index] = 1;
    logged_in++;
  }
}

static void on_line(struct conn *c, const unsigned char *buf, size_t start, size_t end,
                    double now) {
  const char *l = (const char *)buf + start;
  size_t len = end - start;
  if (c->state == S_LIVE) {
    // ":nick!user@host PRIVMSG #chan :body" — the command is the second word.
    size_t i = 0;
    if (len && l[0] == ':') {
      const char *sp = memchr(l, ' ', len);
      if (!sp) return;
      i = (size_t)(sp - l) + 1;
    }
    if (i + 3 <= len && l[i] == 'P' && l[i + 1] == 'R' && l[i + 2] == 'I') {
      if (c->index >= opt.clients) return;  // the probe connection is no receiver
      long s, seq;
      long long micros;
      if (!parse_body(buf, start, end, (long)end - body_tail, &s, &seq, &micros)) return;
      tracker_arrived(c->index, s, seq, now * 1000.0 - (double)micros, now);
      return;
    }
    if (starts(l, len, "PING")) {
      answer_ping(c, l, len);
    } else if (is_pong(l, len)) {
      if (c->index == probe_index && probe_sent_at > 0)
        hist_record(&probe_latency, (now - probe_sent_at) * 1000.0);
      probe_sent_at = 0;
    } else if (c->quitting) {
      return;  // ERROR :Closing link … answers our QUIT
    } else {
      int num = numeric_of(l, len);
      if ((num >= 400 && num < 600) || starts(l, len, "ERROR")) {
        char code[8];
        if (num >= 0) snprintf(code, sizeof code, "%03d", num);
        else snprintf(code, sizeof code, "ERROR");
        count_error(code);
      }
    }
    return;
  }
  if (starts(l, len, "PING")) {
    answer_ping(c, l, len);
    return;
  }
  int num = numeric_of(l, len);
  int err = starts(l, len, "ERROR");
  char why[300];
  if (c->state == S_WELCOME) {
    if (num == 1) {
      send_text(c, "JOIN #general\r\n");
      c->state = S_NAMES;
    } else if ((num >= 400 && num < 500) || err) {
      snprintf(why, sizeof why, "cannot register: %.*s", (int)(len > 200 ? 200 : len), l);
      login_fail(c, "login_failed", why);
    }
  } else if (c->state == S_NAMES) {
    // 422 (ERR_NOMOTD) ends a registration burst; it is not a refusal of the JOIN.
    if (num == 366) {
      go_live(c);
    } else if ((num >= 400 && num < 500 && num != 422) || err) {
      snprintf(why, sizeof why, "cannot join #general: %.*s", (int)(len > 200 ? 200 : len), l);
      login_fail(c, "login_failed", why);
    }
  }
}

// Splits the read buffer into lines (CR LF or LF), keeps the partial tail for the next read.
static void take_lines(struct conn *c, double now) {
  unsigned char *b = c->rbuf;
  size_t start = 0, total = c->rfill;
  while (start < total && c->state != S_CLOSED) {
    unsigned char *nl = memchr(b + start, '\n', total - start);
    if (!nl) break;
    size_t at = (size_t)(nl - b);
    if (c->discarding) {
      c->discarding = 0;
    } else {
      size_t end = at > start && b[at - 1] == '\r' ? at - 1 : at;
      if (end > start) on_line(c, b, start, end, now);
    }
    start = at + 1;
  }
  if (c->state == S_CLOSED) return;
  if (start < total) {
    if (start == 0 && total == rbuf_bytes) {
      // A line longer than the buffer: counted once, skipped up to its end.
      if (!c->discarding) count_error("line_too_long");
      c->discarding = 1;
      c->rfill = 0;
      return;
    }
    memmove(b, b + start, total - start);
  }
  c->rfill = total - start;
}

static void do_read(struct conn *c) {
  for (int k = 0; k < READS_PER_WAKE; k++) {
    if (c->state == S_CLOSED) return;
    ERR_clear_error();
    int n = SSL_read(c->ssl, c->rbuf + c->rfill, (int)(rbuf_bytes - c->rfill));
    if (n > 0) {
      c->rx += (uint64_t)n;
      c->rfill += (size_t)n;
      take_lines(c, now_ms());
      // Nothing left inside TLS: epoll (level-triggered) says when the socket has more. Reading
      // on until EAGAIN would cost one more read(2) per wake-up, which at steady load (one small
      // record per message and connection) is half the syscalls.
      if (c->state == S_CLOSED || !SSL_has_pending(c->ssl)) {
        c->again = 0;
        return;
      }
      continue;
    }
    int e = SSL_get_error(c->ssl, n);
    if (e == SSL_ERROR_WANT_READ) {
      c->again = 0;
      return;
    }
    if (e == SSL_ERROR_WANT_WRITE) {
      c->want_out = 1;
      c->again = 0;
      set_mask(c);
      return;
    }
    dropped(c);
    return;
  }
  c->again = 1;  // more may be buffered inside TLS, where epoll cannot see it
}

static void start_tls(struct conn *c) {
  c->ssl = SSL_new(ctx);
  if (!c->ssl) {
    login_fail(c, "connect_failed", "SSL_new failed");
    return;
  }
  SSL_set_fd(c->ssl, c->fd);
  SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  X509_VERIFY_PARAM *vp = SSL_get0_param(c->ssl);
  if (host_is_ip) {
    X509_VERIFY_PARAM_set1_ip_asc(vp, opt.host);
  } else {
    SSL_set_tlsext_host_name(c->ssl, opt.host);
    X509_VERIFY_PARAM_set1_host(vp, opt.host, 0);
  }
  c->state = S_HANDSHAKE;
}

static void handshake(struct conn *c) {
  ERR_clear_error();
  int r = SSL_connect(c->ssl);
  if (r == 1) {
    char nick[256], text[1024];
    snprintf(nick, sizeof nick, "%s%d", opt.prefix, c->index);
    snprintf(text, sizeof text, "PASS %s\r\nNICK %s\r\nUSER %s 0 * :chat bench\r\n", opt.password,
             nick, nick);
    c->state = S_WELCOME;
    c->want_out = 0;
    send_text(c, text);
    flush(c);
    if (c->state != S_CLOSED) do_read(c);  // the server may already have spoken
    return;
  }
  int e = SSL_get_error(c->ssl, r);
  if (e == SSL_ERROR_WANT_READ) c->want_out = 0;
  else if (e == SSL_ERROR_WANT_WRITE) c->want_out = 1;
  else {
    char why[400];
    long v = SSL_get_verify_result(c->ssl);
    unsigned long ee = ERR_peek_last_error();
    snprintf(why, sizeof why, "TLS handshake with %s port %ld failed: %s%s%s", opt.host, opt.port,
             v != X509_V_OK ? X509_verify_cert_error_string(v) : "",
             v != X509_V_OK ? "; " : "", ee ? ERR_reason_error_string(ee) : "connection closed");
    login_fail(c, "connect_failed", why);
    return;
  }
  set_mask(c);
}

static void open_conn(struct conn *c) {
  c->fd = socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  c->deadline = now_ms() + (double)opt.login_timeout_ms;
  inflight++;
  c->state = S_CONNECTING;
  c->rbuf = malloc(rbuf_bytes);
  if (c->fd < 0 || !c->rbuf) {
    if (c->fd < 0) c->fd = open("/dev/null", O_RDONLY);  // conn_close closes something valid
    login_fail(c, "connect_failed", strerror(errno));
    return;
  }
  int one = 1;
  // Without it a small write after an unacknowledged one waits for the delayed ACK (~40 ms).
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)c->index};
  if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) != 0) {
    login_fail(c, "connect_failed", strerror(errno));
    return;
  }
  c->mask = EPOLLOUT;
  if (connect(c->fd, (struct sockaddr *)&addr, addrlen) != 0 && errno != EINPROGRESS) {
    char why[200];
    snprintf(why, sizeof why, "cannot connect to %s port %ld: %s", opt.host, opt.port,
             strerror(errno));
    login_fail(c, "connect_failed", why);
  }
}

static void on_event(struct conn *c, uint32_t events) {
  if (c->state == S_CLOSED || c->state == S_IDLE) return;
  if (c->state == S_CONNECTING) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err || (events & EPOLLERR)) {
      char why[200];
      snprintf(why, sizeof why, "cannot connect to %s port %ld: %s", opt.host, opt.port,
               strerror(err ? err : ECONNREFUSED));
      login_fail(c, "connect_failed", why);
      return;
    }
    start_tls(c);
    if (c->state == S_CLOSED) return;
  }
  if (c->state == S_HANDSHAKE) {
    handshake(c);
    return;
  }
  // A read that TLS made wait for the socket to be writable is retried on EPOLLOUT too.
  if ((events & (EPOLLIN | EPOLLERR | EPOLLHUP)) || c->want_out) do_read(c);
  if (c->state != S_CLOSED && (c->ooff < c->olen || c->want_out)) flush(c);
}

// One wait for events (at most timeout ms), then connections whose reads were cut short.
static void pump(int timeout) {
  static struct epoll_event evs[EVENTS];
  int again = 0;
  for (long i = 0; i < nconns && !again; i++) again = conns[i].again;
  int n = epoll_wait(ep, evs, EVENTS, again ? 0 : timeout);
  for (int i = 0; i < n; i++) on_event(&conns[evs[i].data.u32], evs[i].events);
  if (again)
    for (long i = 0; i < nconns; i++)
      if (conns[i].again && conns[i].state != S_CLOSED) {
        do_read(&conns[i]);
        if (conns[i].state != S_CLOSED) flush(&conns[i]);
      }
}

static void flush_all(void) {
  for (long i = 0; i < nconns; i++)
    if (conns[i].ooff < conns[i].olen) flush(&conns[i]);
}

// Bounded concurrency: start logins while fewer than --login-concurrency are in flight.
static void login_range(long from, long to) {
  long next = from;
  double t_report = now_ms() + 2000;
  while (next < to || inflight > 0) {
    while (next < to && inflight < opt.login_conc) open_conn(&conns[next++]);
    pump(50);
    flush_all();
    double t = now_ms();
    for (long i = from; i < next; i++) {
      struct conn *c = &conns[i];
      if (c->state > S_IDLE && c->state < S_LIVE && t > c->deadline) {
        char why[100];
        snprintf(why, sizeof why, "cannot log in: no answer within %ld ms", opt.login_timeout_ms);
        login_fail(c, "login_failed", why);
      }
    }
    if (t > t_report) {
      fprintf(stderr, "loadgen: login %ld/%ld\n", logged_in + failed, to - from);
      t_report = t + 2000;
    }
  }
}

static uint64_t total_rx(void) {
  uint64_t n = 0;
  for (long i = 0; i < nconns; i++) n += conns[i].rx;
  return n;
}

// Runs the event loop for ms milliseconds.
static void pump_for(double ms) {
  double until = now_ms() + ms;
  for (double t = now_ms(); t < until; t = now_ms()) {
    pump((int)ceil(until - t));
    flush_all();
  }
}

static long payload_bytes, receivers_per_message;
static uint64_t sent;

// Sender s's message k: stamped with its send time, owed to every other logged-in client.
static void send_one(long s, long k) {
  struct conn *c = &conns[s];
  if (c->state != S_LIVE) return;
  char body[3600], line[3700];
  int h = snprintf(body, sizeof body, "~b%ld.%ld.%lld~", s, k, (long long)floor(now_ms() * 1000.0));
  if (h < payload_bytes) {
    memset(body + h, 'x', (size_t)(payload_bytes - h));
    h = (int)payload_bytes;
  }
  int n = snprintf(line, sizeof line, "PRIVMSG #general :%.*s\r\n", h, body);
  enqueue(c, line, (size_t)n);
  expected += (uint64_t)receivers_per_message;
  sent++;
}

static double round_to(double v, int digits) {
  double f = pow(10, digits);
  return round(v * f) / f;
}

static void resolve(void) {
  struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res;
  char port[16];
  snprintf(port, sizeof port, "%ld", opt.port);
  int r = getaddrinfo(opt.host, port, &hints, &res);
  if (r != 0) usage_exit("cannot resolve --host %s: %s", opt.host, gai_strerror(r));
  memcpy(&addr, res->ai_addr, res->ai_addrlen);
  addrlen = res->ai_addrlen;
  freeaddrinfo(res);
  unsigned char tmp[16];
  host_is_ip = inet_pton(AF_INET, opt.host, tmp) == 1 || inet_pton(AF_INET6, opt.host, tmp) == 1;
}

int main(int argc, char **argv) {
  parse_flags(argc, argv);
  if (opt.dry_run) return 0;
  signal(SIGPIPE, SIG_IGN);
  resolve();

  long N = opt.clients, S = opt.senders, M = opt.messages;
  int with_probe = opt.probe_ms > 0;
  nconns = N + (with_probe ? 1 : 0);
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)nconns + 64) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < (rlim_t)nconns + 64)
      usage_exit("%ld connections need %ld file descriptors; the limit is %llu", nconns,
                 nconns + 64, (unsigned long long)rl.rlim_cur);
  }

  ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx || SSL_CTX_load_verify_locations(ctx, opt.ca, NULL) != 1) {
    fprintf(stderr, "loadgen: cannot read CA certificates from %s\n", opt.ca);
    return 2;
  }
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
  // Read ahead: one read(2) takes in as many records as the kernel holds (a burst of fan-out),
  // and SSL_has_pending tells the reader that more are decrypted-ready without a syscall.
  SSL_CTX_set_read_ahead(ctx, 1);

  // Per-connection read buffer as the Deno bench sizes it: 64 KiB down to 4 KiB for 16,000+.
  long b = 65536;
  while (b > 4096 && (double)b * (double)N > (double)(64 << 20)) b /= 2;
  rbuf_bytes = (size_t)b;
  stride = (size_t)((M > 0 ? M : 1) + 7) / 8;
  bits = calloc((size_t)N * (size_t)(S ? S : 1) * stride, 1);
  max_seq = malloc((size_t)N * (size_t)(S ? S : 1) * sizeof *max_seq);
  live = calloc((size_t)N, 1);
  conns = calloc((size_t)nconns, sizeof *conns);
  ep = epoll_create1(EPOLL_CLOEXEC);
  if (!bits || !max_seq || !live || !conns || ep < 0) {
    fprintf(stderr, "loadgen: out of memory for %ld clients\n", N);
    return 1;
  }
  for (long i = 0; i < N * (S ? S : 1); i++) max_seq[i] = -1;
  for (long i = 0; i < nconns; i++) conns[i] = (struct conn){.fd = -1, .index = (int)i};
  long payload = opt.payload > MIN_PAYLOAD_BYTES ? opt.payload : MIN_PAYLOAD_BYTES;
  body_tail = payload;

  // Phase 1: log in every client, then wait until no byte arrived for --settle-ms (JOIN and
  // presence traffic has settled), as runner.ts does.
  fprintf(stderr, "loadgen: logging in %ld clients to %s port %ld…\n", N, opt.host, opt.port);
  double login_start = now_ms();
  login_range(0, N);
  double login_seconds = (now_ms() - login_start) / 1000.0;
  fprintf(stderr, "loadgen: %ld logged in, %ld failed in %.2f s; settling…\n", logged_in, failed,
          login_seconds);
  {
    uint64_t last = UINT64_MAX;
    double until = now_ms() + 120000;
    while (now_ms() < until) {
      uint64_t rx = total_rx();
      if (rx == last) break;
      last = rx;
      pump_for((double)opt.settle_ms);
    }
  }
  // The probe connection (not a receiver), opened after the settle as runner.ts does; it is in
  // #general, so the server fans out to it as well, as it does for chat bench.
  if (with_probe) {
    probe_index = (int)N;
    login_range(N, N + 1);
    if (conns[N].state != S_LIVE) probe_index = -1;
  }

  // Phase 2: send. The window opens after the CPU readings, like runner.ts's t0.
  long perMessage = 0;
  for (long i = 0; i < N; i++) perMessage += live[i];
  // A live sender is one of the live clients, so a message it sends is owed to the others.
  receivers_per_message = perMessage > 0 ? perMessage - 1 : 0;
  payload_bytes = payload;
  double cpu0 = opt.server_pid ? proc_cpu_seconds(opt.server_pid) : -1;
  double bench0 = self_cpu_seconds();
  double t0 = now_ms();
  long *next_k = calloc((size_t)(S ? S : 1), sizeof *next_k);
  if (!next_k) return 1;
  uint64_t total_msgs = (uint64_t)S * (uint64_t)M;
  fprintf(stderr, "loadgen: sending %ld × %ld messages to %ld receivers…\n", S, M, receivers_per_message);
  if (opt.rate <= 0) {
    for (long s = 0; s < S; s++)
      for (long k = 0; k < M; k++) send_one(s, k);
    flush_all();
  }
  uint64_t remaining = opt.rate > 0 ? total_msgs : 0;
  double last_progress = now_ms();
  uint64_t last_seen = UINT64_MAX;
  double hard_stop = t0 + (double)opt.max_seconds * 1000.0;
  double next_probe = t0;
  for (;;) {
    double t = now_ms();
    double wait = 20;
    if (remaining > 0) {
      // Paced: sender s sends message k at t0 + (k + s/S) / rate seconds (runner.ts).
      double earliest = INFINITY;
      for (long s = 0; s < S; s++) {
        while (next_k[s] < M && t0 + ((double)next_k[s] + (double)s / (double)S) / opt.rate * 1000.0 <= t) {
          long k = next_k[s]++;
          send_one(s, k);
          remaining--;
        }
        if (next_k[s] < M) {
          double due = t0 + ((double)next_k[s] + (double)s / (double)S) / opt.rate * 1000.0;
          if (due < earliest) earliest = due;
        }
      }
      flush_all();
      if (remaining > 0 && earliest - t < wait) wait = earliest - t;
    }
    if (probe_index >= 0 && t >= next_probe) {
      if (probe_sent_at == 0 && conns[probe_index].state == S_LIVE) {
        probe_sent_at = now_ms();
        send_text(&conns[probe_index], "PING :probe\r\n");
        flush(&conns[probe_index]);
      }
      next_probe = t + (double)opt.probe_ms;
    }
    if (probe_index >= 0 && next_probe - t < wait) wait = next_probe - t;
    pump(wait > 0 ? (int)ceil(wait) : 0);
    t = now_ms();
    uint64_t seen = delivered + duplicated + sent;
    if (seen != last_seen) {
      last_seen = seen;
      last_progress = t;
    }
    int all_sent = sent >= total_msgs;
    if (!all_sent) {  // …or every sender is gone
      all_sent = 1;
      for (long s = 0; s < S && all_sent; s++) all_sent = conns[s].state != S_LIVE;
    }
    int complete = all_sent && delivered >= expected;
    if (complete || t - last_progress > (double)opt.timeout_ms || t > hard_stop) break;
  }
  double cpu1 = opt.server_pid ? proc_cpu_seconds(opt.server_pid) : -1;
  double bench1 = self_cpu_seconds();
  double end = last_delivery_at > t0 + 1 ? last_delivery_at : t0 + 1;
  double seconds = (end - t0) / 1000.0;
  fprintf(stderr, "loadgen: %llu of %llu deliveries in %.3f s; quitting\n",
          (unsigned long long)delivered, (unsigned long long)expected, seconds);

  // Phase 3: QUIT everyone; a connection the server has not closed within 200 ms is closed here.
  for (long i = 0; i < nconns; i++)
    if (conns[i].state == S_LIVE) {
      conns[i].quitting = 1;
      send_text(&conns[i], "QUIT :bench done\r\n");
      flush(&conns[i]);
    }
  double quit_until = now_ms() + 200;
  for (;;) {
    long open = 0;
    for (long i = 0; i < nconns; i++) open += conns[i].state != S_CLOSED && conns[i].state != S_IDLE;
    if (!open || now_ms() >= quit_until) break;
    pump(10);
  }
  for (long i = 0; i < nconns; i++) {
    conns[i].quitting = 1;
    conn_close(&conns[i]);
  }

  uint64_t lost = expected - (delivered < expected ? delivered : expected);
  double send_cpu = cpu0 >= 0 && cpu1 >= 0 ? round_to(cpu1 - cpu0, 2) : -1;
  int ok = lost == 0 && duplicated == 0 && reordered == 0 && unexpected == 0 && error_total == 0 &&
           failed == 0;
  FILE *o = stdout;
  fprintf(o, "{\"driver\":\"loadgen.c\",\"protocol\":\"irc\",\"target\":\"%s:%ld\",", opt.host,
          opt.port);
  fprintf(o,
          "\"workload\":{\"clients\":%ld,\"rooms\":1,\"senders\":%ld,\"messages\":%ld,"
          "\"rate\":%.15g,\"payload\":%ld},",
          N, S, M, opt.rate, opt.payload);
  fprintf(o, "\"login\":{\"clients\":%ld,\"failed\":%ld,\"seconds\":%.15g,\"perSecond\":%.15g},",
          logged_in, failed, round_to(login_seconds, 3),
          round_to((double)logged_in / (login_seconds > 1e-6 ? login_seconds : 1e-6), 1));
  fprintf(o,
          "\"send\":{\"seconds\":%.15g,\"sent\":%llu,\"acked\":null,\"deliveries\":%llu,"
          "\"deliveriesPerSecond\":%.0f,\"acceptedPerSecond\":null,\"latencyMs\":",
          round_to(seconds, 3), (unsigned long long)sent, (unsigned long long)delivered,
          round((double)delivered / seconds));
  hist_json(o, &latency);
  fprintf(o, ",\"ackLatencyMs\":null,\"benchCpuSeconds\":%.15g},", round_to(bench1 - bench0, 2));
  fprintf(o,
          "\"integrity\":{\"expected\":%llu,\"delivered\":%llu,\"lost\":%llu,\"duplicated\":%llu,"
          "\"reordered\":%llu,\"unexpected\":%llu},",
          (unsigned long long)expected, (unsigned long long)delivered, (unsigned long long)lost,
          (unsigned long long)duplicated, (unsigned long long)reordered,
          (unsigned long long)unexpected);
  fputs("\"errors\":{", o);
  for (int i = 0; i < nerrs; i++)
    fprintf(o, "%s\"%s\":%llu", i ? "," : "", errs[i].code, (unsigned long long)errs[i].n);
  fputs("},\"server\":{", o);
  if (send_cpu >= 0) {
    fprintf(o, "\"sendCpuSeconds\":%.15g,", send_cpu);
    if (send_cpu > 0)
      fprintf(o, "\"deliveriesPerCpuSecond\":%.0f,\"cpuMicrosPerDelivery\":%.15g",
              round((double)delivered / send_cpu),
              delivered ? round_to(send_cpu * 1e6 / (double)delivered, 3) : 0);
    else fputs("\"deliveriesPerCpuSecond\":null,\"cpuMicrosPerDelivery\":null", o);
  } else {
    fputs("\"sendCpuSeconds\":null,\"deliveriesPerCpuSecond\":null,\"cpuMicrosPerDelivery\":null",
          o);
  }
  fputs("},\"probe\":", o);
  if (with_probe) hist_json(o, &probe_latency);
  else fputs("null", o);
  fprintf(o, ",\"ok\":%s}\n", ok ? "true" : "false");
  fflush(o);
  SSL_CTX_free(ctx);
  return ok ? 0 : 1;
}
