// The metrics endpoint over real HTTP on 127.0.0.1, port 0: /metrics answers, anything else is 404,
// close() ends keep-alive connections too, and idle connections do not stay open.
import { request } from 'node:http';
import { connect, createServer } from 'node:net';
import { describe, expect, it } from 'vitest';
import { LockstepError } from '../../src/errors.js';
import { Counter, Gauge, Registry } from 'prom-client';
import { createFtMetrics, startMetricsServer } from '../../src/observability/index.js';

function get(url: string, method = 'GET', agent?: import('node:http').Agent): Promise<{ status: number; type: string | undefined; body: string; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent: agent ?? false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode!, type: res.headers['content-type'], body, headers: res.headers }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

describe('startMetricsServer', () => {
  it('serves the registry at GET /metrics and 404 elsewhere, then closes', async () => {
    const r = new Registry();
    new Counter({ name: 'scrapes_total', help: 'S.', registers: [r] }).inc(7);
    const server = await startMetricsServer(r, { port: 0 });
    try {
      expect(server.host).toBe('127.0.0.1');
      expect(server.port).toBeGreaterThan(0);
      expect(server.url).toBe(`http://127.0.0.1:${server.port}/metrics`);
      const ok = await get(server.url);
      expect(ok.status).toBe(200);
      expect(ok.type).toBe('text/plain; version=0.0.4; charset=utf-8');
      expect(ok.body).toBe(await r.metrics());
      expect(ok.body).toContain('scrapes_total 7\n');
      expect((await get(`${server.url}?name[]=x`)).status).toBe(200);
      const head = await get(server.url, 'HEAD');
      expect([head.status, head.body]).toEqual([200, '']);
      expect((await get(`http://127.0.0.1:${server.port}/`)).status).toBe(404);
      expect((await get(`http://127.0.0.1:${server.port}/metricsx`)).status).toBe(404);
      const post = await get(server.url, 'POST');
      expect(post.status).toBe(405);
      expect(post.headers['allow']).toBe('GET, HEAD');
    } finally {
      await server.close();
    }
    await expect(get(server.url)).rejects.toThrow(/ECONNREFUSED/);
  });

  it('closes promptly with a keep-alive connection open', async () => {
    const { Agent } = await import('node:http');
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const server = await startMetricsServer(new Registry(), { port: 0 });
    try {
      expect((await get(server.url, 'GET', agent)).status).toBe(200);
      const kept = [...Object.values(agent.freeSockets).flat()];
      expect(kept).toHaveLength(1);
      const socketClosed = new Promise<void>((r) => kept[0]!.once('close', () => r()));
      // close() settles (the test's own timeout is the bound) and ends the kept-alive connection.
      await server.close();
      await socketClosed;
      await server.close(); // a second close is harmless
    } finally {
      agent.destroy();
    }
  });

  it('closes a connection that sends nothing, and one kept alive after its answer', async () => {
    const server = await startMetricsServer(new Registry(), { port: 0, limits: { idleTimeoutMs: 200, keepAliveTimeoutMs: 200 } });
    try {
      const parked = connect(server.port, '127.0.0.1');
      // Before the limits, a connection that never sent a byte stayed open for good.
      await new Promise<void>((r) => parked.once('close', () => r()));
      const kept = connect(server.port, '127.0.0.1', () => kept.write('GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n'));
      let answer = '';
      kept.on('data', (d: Buffer) => (answer += d.toString()));
      await new Promise<void>((r) => kept.once('close', () => r()));
      expect(answer).toMatch(/^HTTP\/1\.1 200 /);
      expect(answer).toMatch(/keep-alive/i);
    } finally {
      await server.close();
    }
  });

  it('answers 500 when a collector throws, and keeps serving', async () => {
    const r = new Registry();
    let fail = true;
    new Gauge({
      name: 'pulled',
      help: 'Read on scrape.',
      registers: [r],
      collect() {
        if (fail) throw new Error('machine gone');
      },
    });
    const server = await startMetricsServer(r, { port: 0 });
    try {
      const bad = await get(server.url);
      expect([bad.status, bad.body]).toEqual([500, 'collecting metrics failed: machine gone\n']);
      fail = false;
      expect((await get(server.url)).status).toBe(200);
    } finally {
      await server.close();
    }
  });

  it("serves an application's registry with lockstep's FT metrics in it", async () => {
    const app = new Registry();
    new Counter({ name: 'app_requests_total', help: 'Requests.', registers: [app] }).inc(2);
    createFtMetrics(app).forVm('kv1').setProtected(true);
    const server = await startMetricsServer(app, { port: 0 });
    try {
      const { status, body } = await get(server.url);
      expect(status).toBe(200);
      expect(body).toContain('\napp_requests_total 2\n');
      expect(body).toContain('\nlockstep_protected{vm="kv1"} 1\n');
    } finally {
      await server.close();
    }
  });

  it('names the address when the port is taken', async () => {
    const blocker = createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as import('node:net').AddressInfo).port;
    try {
      const err = await startMetricsServer(new Registry(), { port }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(LockstepError);
      expect((err as LockstepError).code).toBe('ERR_LOCKSTEP_METRICS_LISTEN');
      expect((err as Error).message).toBe(`metrics: cannot listen on 127.0.0.1:${port}: EADDRINUSE (the port is taken: choose another metrics.listen)`);
    } finally {
      await new Promise((resolve) => blocker.close(resolve));
    }
  });
});
