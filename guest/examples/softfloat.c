/* CPU benchmark: floating point on a machine without an FPU, so every operation is a call into
   libgcc's soft-float routines (__adddf3, __muldf3, __divdf3, __addsf3, ...), as Embench's nbody,
   minver, st and cubic are on RV32IMAC. A 5-body gravity simulation in double, a 6x6 matrix inverse
   by Gauss-Jordan in float checked by multiplying back, and Newton square roots. The results are
   printed as IEEE bit patterns: exact, and the same on every machine. */
#include "lockstep.h"

#define STEPS 3200u
#define INVERSES 520u
#define ROOTS 6000u

typedef struct {
  double x, y, z, vx, vy, vz, m;
} body;

static body bodies[5] = {
    {0, 0, 0, 0, 0, 0, 39.47841760435743},
    {4.84143144246472090, -1.16032004402742839, -0.103622044471123109, 0.606326392995832, 2.81198684491626, -0.02521836165988763, 0.03769367487038949},
    {8.34336671824457987, 4.12479856412430479, -0.403523417114321381, -1.01077434617730, 1.82566237123041, 0.008415761376584154, 0.011286326131968767},
    {12.8943695621391310, -15.1111514016986312, -0.223307578892655734, 1.08279100644154, 0.868713018169608, -0.01010836025537618, 0.0017237240570597112},
    {15.3796971148509165, -25.9193146099879641, 0.179258772950371181, 0.979090732243898, 0.594698998647676, -0.034767436816, 0.0020336868699246304},
};

static double newton_sqrt(double v) {
  if (v <= 0) return 0;
  double g = v > 1 ? v / 2 : 1;
  for (int i = 0; i < 40; i++) {
    double n = 0.5 * (g + v / g);
    if (n == g) break;
    g = n;
  }
  return g;
}

static void advance(double dt) {
  for (int i = 0; i < 5; i++)
    for (int j = i + 1; j < 5; j++) {
      double dx = bodies[i].x - bodies[j].x, dy = bodies[i].y - bodies[j].y, dz = bodies[i].z - bodies[j].z;
      double d2 = dx * dx + dy * dy + dz * dz;
      double mag = dt / (d2 * newton_sqrt(d2));
      bodies[i].vx -= dx * bodies[j].m * mag;
      bodies[i].vy -= dy * bodies[j].m * mag;
      bodies[i].vz -= dz * bodies[j].m * mag;
      bodies[j].vx += dx * bodies[i].m * mag;
      bodies[j].vy += dy * bodies[i].m * mag;
      bodies[j].vz += dz * bodies[i].m * mag;
    }
  for (int i = 0; i < 5; i++) {
    bodies[i].x += dt * bodies[i].vx;
    bodies[i].y += dt * bodies[i].vy;
    bodies[i].z += dt * bodies[i].vz;
  }
}

static double energy(void) {
  double e = 0;
  for (int i = 0; i < 5; i++) {
    e += 0.5 * bodies[i].m * (bodies[i].vx * bodies[i].vx + bodies[i].vy * bodies[i].vy + bodies[i].vz * bodies[i].vz);
    for (int j = i + 1; j < 5; j++) {
      double dx = bodies[i].x - bodies[j].x, dy = bodies[i].y - bodies[j].y, dz = bodies[i].z - bodies[j].z;
      e -= bodies[i].m * bodies[j].m / newton_sqrt(dx * dx + dy * dy + dz * dz);
    }
  }
  return e;
}

#define M 6
/* Inverts a into inv by Gauss-Jordan with partial pivoting; returns 0 when singular. */
static int invert(float a[M][M], float inv[M][M]) {
  float w[M][2 * M];
  for (int i = 0; i < M; i++)
    for (int j = 0; j < M; j++) {
      w[i][j] = a[i][j];
      w[i][M + j] = i == j ? 1.0f : 0.0f;
    }
  for (int c = 0; c < M; c++) {
    int p = c;
    for (int r = c + 1; r < M; r++) {
      float x = w[r][c] < 0 ? -w[r][c] : w[r][c], y = w[p][c] < 0 ? -w[p][c] : w[p][c];
      if (x > y) p = r;
    }
    if (w[p][c] == 0.0f) return 0;
    if (p != c)
      for (int j = 0; j < 2 * M; j++) {
        float t = w[p][j];
        w[p][j] = w[c][j];
        w[c][j] = t;
      }
    float d = w[c][c];
    for (int j = 0; j < 2 * M; j++) w[c][j] /= d;
    for (int r = 0; r < M; r++) {
      if (r == c) continue;
      float f = w[r][c];
      for (int j = 0; j < 2 * M; j++) w[r][j] -= f * w[c][j];
    }
  }
  for (int i = 0; i < M; i++)
    for (int j = 0; j < M; j++) inv[i][j] = w[i][M + j];
  return 1;
}

static uint32_t bits32(float f) {
  union { float f; uint32_t u; } v = {.f = f};
  return v.u;
}
static uint64_t bits64(double d) {
  union { double d; uint64_t u; } v = {.d = d};
  return v.u;
}

int main(void) {
  double e0 = energy();
  for (uint32_t s = 0; s < STEPS; s++) advance(0.01);
  double e1 = energy();
  ls_puts("softfloat: nbody energy ");
  ls_puthex64(bits64(e0));
  ls_puts(" -> ");
  ls_puthex64(bits64(e1));
  ls_putc('\n');

  uint32_t x = 0x3c6ef372u, sum = 2166136261u;
  float worst = 0;
  for (uint32_t n = 0; n < INVERSES; n++) {
    float a[M][M], inv[M][M];
    for (int i = 0; i < M; i++)
      for (int j = 0; j < M; j++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        a[i][j] = (float)((int32_t)(x % 2001) - 1000) / 100.0f + (i == j ? 40.0f : 0.0f);
      }
    if (!invert(a, inv)) {
      ls_puts("softfloat: singular matrix\n");
      return 1;
    }
    for (int i = 0; i < M; i++)
      for (int j = 0; j < M; j++) {
        float s = 0;
        for (int k = 0; k < M; k++) s += a[i][k] * inv[k][j];
        float err = s - (i == j ? 1.0f : 0.0f);
        if (err < 0) err = -err;
        if (err > worst) worst = err;
        sum = (sum ^ bits32(inv[i][j])) * 16777619u;
      }
  }
  ls_puts("softfloat: ");
  ls_putdec(INVERSES);
  ls_puts(" 6x6 inverses, fnv ");
  ls_puthex(sum);
  ls_puts(worst < 1e-4f ? ", A*inv(A) = I within 1e-4\n" : ", A*inv(A) far from I\n");
  if (!(worst < 1e-4f)) return 1;

  double acc = 0;
  for (uint32_t i = 1; i <= ROOTS; i++) acc += newton_sqrt((double)i * 1.5);
  ls_puts("softfloat: sum of ");
  ls_putdec(ROOTS);
  ls_puts(" square roots ");
  ls_puthex64(bits64(acc));
  ls_putc('\n');
  return 0;
}
