/* bench/imapclient: the FETCH client of bench/imap, in C, so that what the
 * bench measures is the server and not a Python client parsing literals.
 * IMAP4rev1/rev2 over implicit TLS (RFC 8314), LOGIN, SELECT, FETCH/UID FETCH
 * with literals (RFC 9051 §4.3) skipped by count, never scanned.
 *
 *   imapclient PORT USER PASSWORD MODE [options]
 *   MODE all        FETCH 1:* (BODY.PEEK[]) per connection
 *        each       UID FETCH n (BODY.PEEK[]) for every UID, --window W
 *                   commands in flight (1: one after the other; more: the
 *                   pipelining real clients do, RFC 9051 §5.5)
 *   -c N            N connections at once (threads), each doing all of MODE
 *   -r R            R runs; each run prints one line
 *   -w W            window for "each" (default 1)
 *   -n MSGS         expected messages per connection (checked)
 *   -b BYTES        expected literal bytes per connection per run (checked)
 *
 * Output, one line per run: "seconds=<wall> messages=<total> bytes=<total>"
 * where wall is from the moment every connection is logged in and has
 * selected INBOX (a barrier) to the last tagged OK. Exit 1 on any mismatch.
 *
 * Build: cc -O2 -o imapclient bench/imapclient.c -lssl -lcrypto -lpthread
 * (bench/imap does this itself).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kBuf = 1 << 20 };

struct conn {
  SSL* ssl;
  char* buf;     /* received bytes buf[pos..len) not yet consumed */
  size_t pos, len;
  unsigned tag;  /* last tag sent */
};

struct job {
  int port;
  const char* user;
  const char* pass;
  int each;
  int window;
  int runs;
  long expect_msgs;
  long long expect_bytes;
  pthread_barrier_t* ready;  /* all logged in: start of a run */
  pthread_barrier_t* done;   /* all finished: end of a run */
  long msgs;                 /* per run, this connection */
  long long bytes;
  int failed;
  char err[256];
};

static SSL_CTX* g_ctx;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int fill(struct conn* c) {
  if (c->pos == c->len) c->pos = c->len = 0;
  if (c->len == kBuf) {  /* compact: only a partial line can be left here */
    memmove(c->buf, c->buf + c->pos, c->len - c->pos);
    c->len -= c->pos;
    c->pos = 0;
  }
  int n = SSL_read(c->ssl, c->buf + c->len, (int)(kBuf - c->len));
  if (n <= 0) return -1;
  c->len += (size_t)n;
  return 0;
}

/* The next line (CRLF included) into *line and *n, valid until the next read. */
static int next_line(struct conn* c, const char** line, size_t* n) {
  for (;;) {
    char* lf = memchr(c->buf + c->pos, '\n', c->len - c->pos);
    if (lf) {
      *line = c->buf + c->pos;
      *n = (size_t)(lf - (c->buf + c->pos)) + 1;
      c->pos += *n;
      return 0;
    }
    if (c->pos > 0 && c->len == kBuf) {
      memmove(c->buf, c->buf + c->pos, c->len - c->pos);
      c->len -= c->pos;
      c->pos = 0;
    }
    if (fill(c) != 0) return -1;
  }
}

/* Skip a literal of n bytes without looking at it. */
static int skip(struct conn* c, long long n) {
  while (n > 0) {
    size_t have = c->len - c->pos;
    if (have == 0) {
      c->pos = c->len = 0;
      if (fill(c) != 0) return -1;
      continue;
    }
    size_t take = (long long)have < n ? have : (size_t)n;
    c->pos += take;
    n -= (long long)take;
  }
  return 0;
}

static int send_all(struct conn* c, const char* s, size_t n) {
  while (n > 0) {
    int w = SSL_write(c->ssl, s, (int)n);
    if (w <= 0) return -1;
    s += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Literal size at the end of a line ("{123}\r\n"), or -1. */
static long long literal_at_end(const char* l, size_t n) {
  if (n < 5 || l[n - 2] != '\r' || l[n - 3] != '}') return -1;
  size_t i = n - 4;
  long long v = 0, mul = 1;
  while (i > 0 && l[i] >= '0' && l[i] <= '9') {
    v += (l[i] - '0') * mul;
    mul *= 10;
    --i;
  }
  if (l[i] != '{' || mul == 1) return -1;
  return v;
}

/* Reads responses up to the tagged one for tag `t`; counts FETCH bodies.
 * Returns 0 on "t OK", -1 otherwise (message in j->err). */
static int until_tagged(struct conn* c, struct job* j, unsigned t, long* msgs, long long* bytes) {
  char want[32];
  int wl = snprintf(want, sizeof want, "b%u ", t);
  for (;;) {
    const char* l;
    size_t n;
    if (next_line(c, &l, &n) != 0) {
      snprintf(j->err, sizeof j->err, "connection closed");
      return -1;
    }
    long long lit = literal_at_end(l, n);
    if (lit >= 0) {
      if (msgs) ++*msgs;
      if (bytes) *bytes += lit;
      if (skip(c, lit) != 0) return -1;
      continue;  /* the rest of the response follows on the next "line" */
    }
    if (n >= (size_t)wl && memcmp(l, want, (size_t)wl) == 0) {
      if (n >= (size_t)wl + 2 && memcmp(l + wl, "OK", 2) == 0) return 0;
      snprintf(j->err, sizeof j->err, "%.*s", (int)(n > 200 ? 200 : n), l);
      return -1;
    }
  }
}

static int command(struct conn* c, struct job* j, const char* text) {
  char line[512];
  unsigned t = ++c->tag;
  int n = snprintf(line, sizeof line, "b%u %s\r\n", t, text);
  if (send_all(c, line, (size_t)n) != 0) return -1;
  return until_tagged(c, j, t, NULL, NULL);
}

static int connect_tls(struct conn* c, int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || connect(fd, (struct sockaddr*)&a, sizeof a) != 0) return -1;
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->ssl = SSL_new(g_ctx);
  SSL_set_fd(c->ssl, fd);
  if (SSL_connect(c->ssl) != 1) return -1;
  c->buf = malloc(kBuf);
  c->pos = c->len = 0;
  c->tag = 0;
  const char* l;
  size_t n;
  if (next_line(c, &l, &n) != 0 || n < 4 || memcmp(l, "* OK", 4) != 0) return -1;
  return 0;
}

/* UIDs of INBOX from UID SEARCH ALL. */
static long uid_list(struct conn* c, struct job* j, unsigned** out) {
  unsigned t = ++c->tag;
  char line[64];
  int n = snprintf(line, sizeof line, "b%u UID SEARCH ALL\r\n", t);
  if (send_all(c, line, (size_t)n) != 0) return -1;
  long count = 0, cap = 1024;
  *out = malloc(sizeof(unsigned) * (size_t)cap);
  for (;;) {
    const char* l;
    size_t len;
    if (next_line(c, &l, &len) != 0) return -1;
    if (len > 9 && memcmp(l, "* SEARCH", 8) == 0) {
      const char* p = l + 8;
      const char* end = l + len;
      while (p < end) {
        while (p < end && (*p == ' ' || *p == '\r' || *p == '\n')) ++p;
        if (p >= end) break;
        unsigned v = (unsigned)strtoul(p, (char**)&p, 10);
        if (count == cap) *out = realloc(*out, sizeof(unsigned) * (size_t)(cap *= 2));
        (*out)[count++] = v;
      }
      continue;
    }
    char want[32];
    int wl = snprintf(want, sizeof want, "b%u OK", t);
    if (len >= (size_t)wl && memcmp(l, want, (size_t)wl) == 0) return count;
    if (len > 0 && l[0] == 'b') {
      snprintf(j->err, sizeof j->err, "UID SEARCH: %.*s", (int)(len > 200 ? 200 : len), l);
      return -1;
    }
  }
}

static int run_all(struct conn* c, struct job* j) {
  unsigned t = ++c->tag;
  char line[64];
  int n = snprintf(line, sizeof line, "b%u FETCH 1:* (BODY.PEEK[])\r\n", t);
  if (send_all(c, line, (size_t)n) != 0) return -1;
  return until_tagged(c, j, t, &j->msgs, &j->bytes);
}

/* Every UID once, at most `window` commands outstanding. The commands of a
 * window leave in one write, as a client that pipelines would send them. */
static int run_each(struct conn* c, struct job* j, const unsigned* uids, long count) {
  long sent = 0, answered = 0;
  unsigned first_tag = c->tag + 1;
  char* out = malloc((size_t)j->window * 64 + 64);
  while (answered < count) {
    size_t len = 0;
    while (sent < count && sent - answered < j->window) {
      len += (size_t)sprintf(out + len, "b%u UID FETCH %u (BODY.PEEK[])\r\n", ++c->tag, uids[sent]);
      ++sent;
    }
    if (len && send_all(c, out, len) != 0) {
      free(out);
      return -1;
    }
    if (until_tagged(c, j, first_tag + (unsigned)answered, &j->msgs, &j->bytes) != 0) {
      free(out);
      return -1;
    }
    ++answered;
  }
  free(out);
  return 0;
}

static void fail(struct job* j, const char* what) {
  j->failed = 1;
  if (!j->err[0]) snprintf(j->err, sizeof j->err, "%s", what);
}

static void* worker(void* arg) {
  struct job* j = arg;
  struct conn c;
  unsigned* uids = NULL;
  long count = 0;
  char login[512];
  if (connect_tls(&c, j->port) != 0) fail(j, "connect/TLS");
  snprintf(login, sizeof login, "LOGIN \"%s\" \"%s\"", j->user, j->pass);
  if (!j->failed && command(&c, j, login) != 0) fail(j, "LOGIN");
  if (!j->failed && command(&c, j, "SELECT INBOX") != 0) fail(j, "SELECT");
  if (!j->failed && j->each && (count = uid_list(&c, j, &uids)) < 0) fail(j, "UID SEARCH");
  for (int r = 0; r < j->runs; ++r) {
    pthread_barrier_wait(j->ready);
    j->msgs = 0;
    j->bytes = 0;
    if (!j->failed) {
      int rc = j->each ? run_each(&c, j, uids, count) : run_all(&c, j);
      if (rc != 0) fail(j, "FETCH");
      if (!j->failed && j->expect_msgs >= 0 && j->msgs != j->expect_msgs) {
        snprintf(j->err, sizeof j->err, "%ld bodies, expected %ld", j->msgs, j->expect_msgs);
        j->failed = 1;
      }
      if (!j->failed && j->expect_bytes >= 0 && j->bytes != j->expect_bytes) {
        snprintf(j->err, sizeof j->err, "%lld body bytes, expected %lld", j->bytes, j->expect_bytes);
        j->failed = 1;
      }
    }
    pthread_barrier_wait(j->done);
  }
  if (!j->failed) command(&c, j, "LOGOUT");
  free(uids);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 5) {
    fprintf(stderr, "usage: imapclient PORT USER PASSWORD all|each [-c N] [-r R] [-w W] [-n MSGS] [-b BYTES]\n");
    return 2;
  }
  int conns = 1, runs = 1, window = 1;
  long expect_msgs = -1;
  long long expect_bytes = -1;
  for (int i = 5; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "-c")) conns = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "-r")) runs = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "-w")) window = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "-n")) expect_msgs = atol(argv[i + 1]);
    else if (!strcmp(argv[i], "-b")) expect_bytes = atoll(argv[i + 1]);
  }
  if (conns < 1 || runs < 1 || window < 1) return 2;
  g_ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(g_ctx, SSL_VERIFY_NONE, NULL);
  pthread_barrier_t ready, done;
  pthread_barrier_init(&ready, NULL, (unsigned)conns + 1);
  pthread_barrier_init(&done, NULL, (unsigned)conns + 1);
  struct job* jobs = calloc((size_t)conns, sizeof *jobs);
  pthread_t* th = calloc((size_t)conns, sizeof *th);
  for (int i = 0; i < conns; ++i) {
    jobs[i] = (struct job){atoi(argv[1]), argv[2], argv[3], !strcmp(argv[4], "each"), window, runs,
                           expect_msgs, expect_bytes, &ready, &done, 0, 0, 0, {0}};
    pthread_create(&th[i], NULL, worker, &jobs[i]);
  }
  int bad = 0;
  for (int r = 0; r < runs; ++r) {
    pthread_barrier_wait(&ready);
    double t0 = now();
    pthread_barrier_wait(&done);
    double took = now() - t0;
    long msgs = 0;
    long long bytes = 0;
    for (int i = 0; i < conns; ++i) {
      msgs += jobs[i].msgs;
      bytes += jobs[i].bytes;
      if (jobs[i].failed) bad = 1;
    }
    printf("seconds=%.6f messages=%ld bytes=%lld\n", took, msgs, bytes);
    fflush(stdout);
  }
  for (int i = 0; i < conns; ++i) {
    pthread_join(th[i], NULL);
    if (jobs[i].failed) fprintf(stderr, "imapclient: connection %d: %s\n", i, jobs[i].err);
  }
  return bad;
}
