/* CPU benchmark: table-driven state machines, the kind of code Embench's statemate and CoreMark's
   core_state stress: byte loads from a character-class table and a transition table, an action per
   transition that loads and stores small global flags and counters, and unpredictable branches.
   A generated stream of HTTP-like request lines is run through a request-line/header parser (a
   12-state transition table) and a car-window controller statechart (three regions as globals,
   statemate-style) steps on events derived from the parser's output. */
#include "lockstep.h"

#define TEXT 32768u
#define PASSES 450u

static char text[TEXT];

/* ---- request parser: classes, states, table ------------------------------------------------- */
enum { C_ALPHA, C_DIGIT, C_SP, C_COLON, C_SLASH, C_DOT, C_CR, C_LF, C_OTHER, NCLASS };
enum { S_START, S_METHOD, S_SP1, S_PATH, S_SP2, S_PROTO, S_EOL, S_HNAME, S_HCOLON, S_HVALUE, S_HEOL, S_BLANK, S_ERROR, NSTATE };
/* Actions, one per transition. */
enum { A_NONE, A_METHOD_CH, A_PATH_CH, A_SEGMENT, A_PROTO_CH, A_LINE_END, A_HNAME_CH, A_HVALUE_CH, A_HEADER_END, A_REQUEST_END, A_ERROR, A_RESYNC };

static uint8_t cls[256];
static uint8_t next[NSTATE][NCLASS];
static uint8_t action[NSTATE][NCLASS];

static void set(int s, int c, int n, int a) {
  next[s][c] = (uint8_t)n;
  action[s][c] = (uint8_t)a;
}

static void build_tables(void) {
  for (int i = 0; i < 256; i++) cls[i] = C_OTHER;
  for (int i = 'a'; i <= 'z'; i++) cls[i] = C_ALPHA;
  for (int i = 'A'; i <= 'Z'; i++) cls[i] = C_ALPHA;
  for (int i = '0'; i <= '9'; i++) cls[i] = C_DIGIT;
  cls['-'] = C_ALPHA, cls['_'] = C_ALPHA;
  cls[' '] = C_SP, cls[':'] = C_COLON, cls['/'] = C_SLASH, cls['.'] = C_DOT, cls['\r'] = C_CR, cls['\n'] = C_LF;
  for (int s = 0; s < NSTATE; s++)
    for (int c = 0; c < NCLASS; c++) set(s, c, S_ERROR, A_ERROR);
  set(S_START, C_ALPHA, S_METHOD, A_METHOD_CH);
  set(S_START, C_LF, S_START, A_NONE);
  set(S_METHOD, C_ALPHA, S_METHOD, A_METHOD_CH);
  set(S_METHOD, C_SP, S_SP1, A_NONE);
  set(S_SP1, C_SLASH, S_PATH, A_SEGMENT);
  for (int c = C_ALPHA; c < NCLASS; c++) if (c != C_SP && c != C_CR && c != C_LF) set(S_PATH, c, S_PATH, c == C_SLASH ? A_SEGMENT : A_PATH_CH);
  set(S_PATH, C_SP, S_SP2, A_NONE);
  set(S_SP2, C_ALPHA, S_PROTO, A_PROTO_CH);
  set(S_PROTO, C_ALPHA, S_PROTO, A_PROTO_CH);
  set(S_PROTO, C_DIGIT, S_PROTO, A_PROTO_CH);
  set(S_PROTO, C_SLASH, S_PROTO, A_PROTO_CH);
  set(S_PROTO, C_DOT, S_PROTO, A_PROTO_CH);
  set(S_PROTO, C_CR, S_EOL, A_NONE);
  set(S_EOL, C_LF, S_HNAME, A_LINE_END);
  set(S_HNAME, C_ALPHA, S_HNAME, A_HNAME_CH);
  set(S_HNAME, C_COLON, S_HCOLON, A_NONE);
  set(S_HNAME, C_CR, S_BLANK, A_NONE);
  set(S_BLANK, C_LF, S_START, A_REQUEST_END);
  set(S_HCOLON, C_SP, S_HVALUE, A_NONE);
  for (int c = C_ALPHA; c < NCLASS; c++) if (c != C_CR && c != C_LF) set(S_HVALUE, c, S_HVALUE, A_HVALUE_CH);
  set(S_HVALUE, C_CR, S_HEOL, A_HEADER_END);
  set(S_HEOL, C_LF, S_HNAME, A_NONE);
  for (int c = 0; c < NCLASS; c++) set(S_ERROR, c, S_ERROR, A_NONE);
  set(S_ERROR, C_LF, S_START, A_RESYNC);
}

/* Parser results: globals, as generated code keeps them. */
static uint32_t method_hash, path_hash, proto_hash, hname_hash, hvalue_hash;
static uint32_t requests, complete, segments, headers, errors, resyncs;
static uint8_t is_get, is_post, has_host, has_length, path_deep;

/* ---- window controller statechart (three orthogonal regions) ------------------------------ */
enum { W_STOP, W_UP, W_DOWN, W_TOP, W_BOTTOM };
enum { M_AUTO, M_MANUAL, M_BLOCKED };
enum { L_OFF, L_ON, L_BLINK };
static uint8_t win, mode, lamp, up_btn, down_btn, pinch, position, blink_count;
static uint32_t transitions;

static void chart_step(uint32_t ev) {
  up_btn = (uint8_t)(ev & 1);
  down_btn = (uint8_t)((ev >> 1) & 1);
  pinch = (uint8_t)((ev & 0x1c) == 0x1c);
  switch (mode) {
    case M_AUTO:
      if (pinch) mode = M_BLOCKED, transitions++;
      else if (up_btn && down_btn) mode = M_MANUAL, transitions++;
      break;
    case M_MANUAL:
      if (pinch) mode = M_BLOCKED, transitions++;
      else if (!up_btn && !down_btn) mode = M_AUTO, transitions++;
      break;
    default:
      if (!pinch && !up_btn) mode = M_AUTO, transitions++;
      break;
  }
  switch (win) {
    case W_STOP:
      if (mode != M_BLOCKED && up_btn && !down_btn) win = W_UP, transitions++;
      else if (down_btn && !up_btn) win = W_DOWN, transitions++;
      break;
    case W_UP:
      if (mode == M_BLOCKED) win = W_DOWN, transitions++;
      else if (position >= 200) win = W_TOP, transitions++;
      else if (mode == M_MANUAL && !up_btn) win = W_STOP, transitions++;
      else position++;
      break;
    case W_DOWN:
      if (position == 0) win = W_BOTTOM, transitions++;
      else if (mode == M_MANUAL && !down_btn) win = W_STOP, transitions++;
      else position--;
      break;
    case W_TOP:
      if (down_btn) win = W_DOWN, transitions++;
      break;
    default:
      if (up_btn && mode != M_BLOCKED) win = W_UP, transitions++;
      break;
  }
  switch (lamp) {
    case L_OFF:
      if (mode == M_BLOCKED) lamp = L_BLINK, blink_count = 0, transitions++;
      else if (win == W_UP || win == W_DOWN) lamp = L_ON, transitions++;
      break;
    case L_ON:
      if (mode == M_BLOCKED) lamp = L_BLINK, blink_count = 0, transitions++;
      else if (win != W_UP && win != W_DOWN) lamp = L_OFF, transitions++;
      break;
    default:
      if (++blink_count >= 6 && mode != M_BLOCKED) lamp = L_OFF, transitions++;
      break;
  }
}

static void parse(const char *p, uint32_t n) {
  uint8_t s = S_START;
  uint32_t depth = 0;
  for (uint32_t i = 0; i < n; i++) {
    uint8_t ch = (uint8_t)p[i];
    uint8_t c = cls[ch];
    uint8_t a = action[s][c];
    s = next[s][c];
    switch (a) {
      case A_NONE: break;
      case A_METHOD_CH: method_hash = method_hash * 31 + ch; break;
      case A_PATH_CH: path_hash = path_hash * 33 ^ ch; break;
      case A_SEGMENT: segments++, depth++; break;
      case A_PROTO_CH: proto_hash = proto_hash * 37 + ch; break;
      case A_LINE_END:
        requests++;
        is_get = method_hash == 70454u;    /* "GET" */
        is_post = method_hash == 2461856u; /* "POST" */
        path_deep = depth > 3;
        chart_step(method_hash ^ path_hash ^ depth);
        method_hash = path_hash = proto_hash = 0, depth = 0;
        break;
      case A_HNAME_CH: hname_hash = hname_hash * 31 + (ch | 0x20); break;
      case A_HVALUE_CH: hvalue_hash = (hvalue_hash ^ ch) * 16777619u; break;
      case A_HEADER_END:
        headers++;
        if (hname_hash == 3208616u) has_host = 1;          /* "host" */
        if (hname_hash == 0x3ac0e3e7u) has_length = 1;
        chart_step(hname_hash ^ hvalue_hash);
        hname_hash = hvalue_hash = 0;
        break;
      case A_REQUEST_END:
        complete++;
        chart_step(requests ^ headers ^ (uint32_t)has_host << 5);
        has_host = has_length = 0;
        break;
      case A_RESYNC: resyncs++, s = S_START; break;
      default: errors++, method_hash = path_hash = 0, depth = 0; break;
    }
  }
}

static uint32_t rnd(uint32_t *x) {
  *x ^= *x << 13, *x ^= *x >> 17, *x ^= *x << 5;
  return *x;
}

static uint32_t put(uint32_t i, const char *s) {
  while (*s && i < TEXT) text[i++] = *s++;
  return i;
}

static void generate(uint32_t seed) {
  static const char *const methods[] = {"GET", "POST", "PUT", "HEAD", "DELETE", "get"};
  static const char *const segs[] = {"index", "api", "v2", "users", "42", "img", "a.png", "logs", "x"};
  static const char *const names[] = {"Host", "Accept", "Content-Length", "User-Agent", "X-Trace"};
  static const char *const values[] = {"example.org", "*/*", "1024", "lockstep/1.0", "abc-123", "10.0.2.15:80"};
  uint32_t i = 0, x = seed;
  while (i < TEXT) {
    uint32_t r = rnd(&x);
    i = put(i, methods[r % 6]);
    i = put(i, " ");
    for (uint32_t k = 0, d = 1 + (r >> 8) % 5; k < d; k++) {
      i = put(i, "/");
      i = put(i, segs[rnd(&x) % 9]);
    }
    i = put(i, (r >> 16) % 17 == 0 ? " HTTP/1.1 junk\n" : " HTTP/1.1\r\n");
    for (uint32_t k = 0, h = (r >> 20) % 5; k < h; k++) {
      uint32_t q = rnd(&x);
      i = put(i, names[q % 5]);
      i = put(i, ": ");
      i = put(i, values[(q >> 8) % 6]);
      i = put(i, "\r\n");
    }
    i = put(i, "\r\n");
  }
}

int main(void) {
  build_tables();
  uint32_t sum = 2166136261u;
  for (uint32_t pass = 0; pass < PASSES; pass++) {
    if (pass % 10 == 0) generate(0x8badf00du + pass);
    parse(text, TEXT);
    uint32_t state = (uint32_t)win | (uint32_t)mode << 4 | (uint32_t)lamp << 8 | (uint32_t)position << 12 |
                     (uint32_t)(is_get | is_post << 1 | has_host << 2 | has_length << 3 | path_deep << 4) << 20;
    sum = (sum ^ state ^ requests ^ complete << 4 ^ headers << 8 ^ errors << 16 ^ transitions) * 16777619u;
  }
  ls_puts("fsm: ");
  ls_putdec(PASSES);
  ls_puts(" passes over 32 KiB: ");
  ls_putdec(requests);
  ls_puts(" requests, ");
  ls_putdec(segments);
  ls_puts(" path segments, ");
  ls_putdec(headers);
  ls_puts(" headers, ");
  ls_putdec(errors);
  ls_puts(" errors, ");
  ls_putdec(resyncs);
  ls_puts(" resyncs, ");
  ls_putdec(complete);
  ls_puts(" complete, ");
  ls_putdec(transitions);
  ls_puts(" chart transitions, fnv ");
  ls_puthex(sum);
  ls_putc('\n');
  return 0;
}
