// `haraka-happy-eyeballs status`: the Prometheus text parser, the summary per family, and the
// command against a real /metrics endpoint on loopback, with its exit statuses.

import assert from 'node:assert/strict'
import http from 'node:http'
import net from 'node:net'

import { type CliIo, main } from '../lib/cli'
import { metricsUrl, parseOptions, UsageError } from '../lib/cli/args'
import { ExpositionError, parseExposition } from '../lib/cli/prom-text'
import { statusText } from '../lib/cli/render'
import { bucketQuantile, type StatusReport, summarize } from '../lib/cli/status'
import { MessageConnects } from '../lib/connects'
import { type DeliveryRecord, STATUS } from '../lib/delivery'
import { PluginMetrics } from '../lib/metrics'
import { MetricsServer, sourceFor } from '../lib/metrics-server'
import type { RaceTarget } from '../lib/race'
import type { Resolution } from '../lib/resolve'

describe('Prometheus text parser', () => {
  it('reads names, labels with escapes, special values and timestamps, and the TYPE lines', () => {
    const { samples, types } = parseExposition(
      [
        '# HELP x_total things',
        '# TYPE x_total counter',
        'x_total{a="1",b="q\\"uote\\\\back\\nline"} 3',
        'x_total{a="2",} 4 1700000000000',
        'y +Inf',
        'y{z="-"} -Inf',
        'n NaN',
        'e 1.5e-3',
        '',
        '# a comment',
        'h_bucket{le="+Inf"} 7\r',
      ].join('\n'),
    )
    assert.deepEqual(types, new Map([['x_total', 'counter']]))
    assert.deepEqual(
      samples.map((s) => [s.name, s.labels, s.value]),
      [
        ['x_total', { a: '1', b: 'q"uote\\back\nline' }, 3],
        ['x_total', { a: '2' }, 4],
        ['y', {}, Infinity],
        ['y', { z: '-' }, -Infinity],
        ['n', {}, NaN],
        ['e', {}, 0.0015],
        ['h_bucket', { le: '+Inf' }, 7],
      ],
    )
  })

  const bad: Array<[string, RegExp]> = [
    ['<html>', /no metric name: <html>$/],
    ['x{a=1} 2', /label a has no quoted value/],
    ['x{a="1} 2', /label a is not closed/],
    ['x{a="\\t"} 2', /bad escape/],
    ['x{a="1" b="2"} 3', /expected , or }/],
    ['x', /expected a value/],
    ['x 0x10', /bad value 0x10/],
    ['x 1 2 3', /expected a value/],
    ['x 1 soon', /bad timestamp/],
  ]
  for (const [line, why] of bad) {
    it(`rejects ${JSON.stringify(line)} naming the line`, () => {
      assert.throws(
        () => parseExposition(`ok 1\n${line}`),
        (err: unknown) => {
          assert.ok(err instanceof ExpositionError)
          assert.match(err.message, /^line 2: /)
          assert.match(err.message, why)
          return true
        },
      )
    })
  }

  it('reads back what prom-client writes', async () => {
    const m = new PluginMetrics()
    const text = await m.text()
    const { samples, types } = parseExposition(text)
    assert.equal(types.get('happy_eyeballs_race_duration_seconds'), 'histogram')
    assert.equal(types.get('happy_eyeballs_connect_attempts_total'), 'counter')
    assert.equal(samples.filter((s) => s.name === 'happy_eyeballs_connect_attempts_total').length, 32)
  })
})

describe('bucketQuantile', () => {
  const buckets = [
    { le: 0.1, count: 2 },
    { le: 0.5, count: 6 },
    { le: 1, count: 8 },
    { le: Infinity, count: 10 },
  ]
  it('interpolates inside the bucket that holds the rank', () => {
    const near = (q: number, want: number): void => {
      const got = bucketQuantile(q, buckets)
      assert.ok(got !== null && Math.abs(got - want) < 1e-9, `${q}: ${got} ≠ ${want}`)
    }
    near(0.1, 0.05)
    near(0.4, 0.3)
    near(0.7, 0.75)
  })
  it('a rank in +Inf is the last finite bound; no observations is null', () => {
    assert.equal(bucketQuantile(0.99, buckets), 1)
    assert.equal(bucketQuantile(0.5, [{ le: Infinity, count: 0 }]), null)
    assert.equal(bucketQuantile(0.5, []), null)
  })
})

const V6: RaceTarget = { address: '::1', family: 'ipv6', exchange: 'mx.t', preference: 10, port: 25 }
const V4: RaceTarget = { address: '127.0.0.1', family: 'ipv4', exchange: 'mx.t', preference: 10, port: 25 }
const resolution: Resolution = { kind: 'hosts', domain: 't', implicit: false, hosts: [] }

/** Metrics after a known mix: a refused IPv6 then IPv4, a link-local filtered, a 4.4.4, a 5.1.2. */
function knownMix(): PluginMetrics {
  const m = new PluginMetrics()
  const fellBack: DeliveryRecord = {
    domain: 't',
    resolution,
    decision: { action: 'deliver', targets: [V4, V6], winner: V4 },
    race: {
      attempts: [
        {
          target: V6,
          startMs: 0,
          endMs: 1,
          outcome: 'failed',
          code: 'ECONNREFUSED',
          error: 'connect ECONNREFUSED',
        },
        { target: V4, startMs: 1, endMs: 30, outcome: 'connected' },
      ],
      elapsedMs: 30,
      untried: [],
    },
  }
  m.delivered(fellBack, '127.0.0.1')
  const filtered: DeliveryRecord = {
    domain: 't',
    resolution,
    decision: { action: 'defer', status: STATUS.noRoute, reason: 'x' },
    plan: {
      domain: 't',
      kept: [],
      filtered: [{ exchange: 'mx', address: 'fe80::1', reason: 'link-local' }],
      dnsErrors: [],
    },
  }
  m.failed(filtered, 'x', false)
  m.failed(
    { domain: 't', resolution, decision: { action: 'bounce', status: STATUS.noDomain, reason: 'x' } },
    'x',
    true,
  )
  const connects = new MessageConnects('t')
  connects.add({ address: '::1', port: 25, by: 'haraka', outcome: 'connected', ms: 1, at: 0 })
  m.delivered({ domain: 't', resolution, decision: { action: 'deliver', targets: [V6] }, connects }, '::1')
  m.healthFrom(() => 4)
  return m
}

describe('status summary', () => {
  it('sums each family over race and Haraka attempts, and keeps statuses and reasons', async () => {
    const m = knownMix()
    const r = summarize('u', parseExposition(await m.text()).samples)
    assert.equal(r.families.ipv6.attempts.refused, 1)
    assert.equal(r.families.ipv6.attempts.connected, 1)
    assert.equal(r.families.ipv4.attempts.connected, 1)
    assert.equal(r.families.ipv4.attempts.refused, 0)
    assert.equal(r.families.ipv4.deliveries, 1)
    assert.equal(r.families.ipv6.deliveries, 1)
    assert.equal(r.families.ipv6.fellBack, 1)
    assert.equal(r.families.ipv4.fellBack, 0)
    assert.deepEqual(r.families.ipv6.filtered, { 'link-local': 1 })
    assert.deepEqual(r.families.ipv4.filtered, {})
    assert.deepEqual(r.deferrals, { '4.4.4': 1 })
    assert.deepEqual(r.bounces, { '5.1.2': 1 })
    // One race of 30 ms: in the 25..50 ms bucket.
    assert.equal(r.race.count, 1)
    assert.equal(r.race.meanMs, 30)
    assert.equal(r.race.p50Ms, 38)
    assert.equal(r.healthEntries, 4)
  })

  it("this host's egress, families and learnt delay, in the report and its text; unknown without the gauges", async () => {
    const m = new PluginMetrics()
    m.learnedFrom(() => ({
      ipv6EgressImpaired: true,
      usableFamilies: ['ipv4'],
      attemptDelayMs: { ipv4: 120, ipv6: 250 },
    }))
    const r = summarize('u', parseExposition(await m.text()).samples)
    assert.deepEqual(r.host, {
      ipv6EgressImpaired: true,
      familyUsable: { ipv4: true, ipv6: false },
      attemptDelayMs: { ipv4: 120, ipv6: 250 },
    })
    assert.match(
      statusText(r),
      /^this host: IPv6 egress impaired \(new destinations start with IPv4\); sends from ipv4 yes, ipv6 no; attempt delay for new MX hosts ipv4 120 ms, ipv6 250 ms$/m,
    )
    const older = summarize('u', parseExposition('happy_eyeballs_health_entries 1\n').samples)
    assert.deepEqual(older.host, {
      ipv6EgressImpaired: null,
      familyUsable: { ipv4: null, ipv6: null },
      attemptDelayMs: { ipv4: null, ipv6: null },
    })
    assert.doesNotMatch(statusText(older), /this host/)
  })
})

function capture(): { io: CliIo; out: () => string; err: () => string } {
  let out = ''
  let err = ''
  return {
    io: {
      stdout: { write: (s: string) => ((out += s), true) },
      stderr: { write: (s: string) => ((err += s), true) },
    },
    out: () => out,
    err: () => err,
  }
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer()
    srv.once('error', reject)
    srv.listen({ host: '127.0.0.1', port: 0 }, () => {
      const { port } = srv.address() as net.AddressInfo
      srv.close(() => resolve(port))
    })
  })
}

describe('status command', () => {
  let server: MetricsServer
  let url: string
  before(async () => {
    server = new MetricsServer(sourceFor('single', knownMix().registry), () => {})
    const port = await freePort()
    await server.configure(`127.0.0.1:${port}`)
    url = `http://127.0.0.1:${port}/metrics`
  })
  after(() => server.close())

  it('prints per family attempts, deliveries, fallbacks and filtered reasons; exit 0', async () => {
    const c = capture()
    assert.equal(await main(['status', '--metrics', url], c.io), 0, c.err())
    const text = c.out()
    const row = (label: string): string[] | undefined =>
      text
        .split('\n')
        .find((l) => l.startsWith(`${label} `))
        ?.slice(label.length)
        .trim()
        .split(/\s+/)
    assert.match(text, new RegExp(`^metrics from ${url.replace(/[.?]/g, '\\$&')}$`, 'm'))
    assert.match(text, /^\s+ipv4\s+ipv6$/m)
    assert.deepEqual(row('attempts connected'), ['1', '1'])
    assert.deepEqual(row('attempts refused'), ['0', '1'])
    assert.deepEqual(row('attempts unreachable'), ['0', '0'])
    assert.deepEqual(row('deliveries'), ['1', '1'])
    assert.deepEqual(row('fell back to the other family'), ['0', '1'])
    assert.deepEqual(row('filtered link-local'), ['0', '1'])
    assert.match(text, /^deferrals by status: 4\.4\.4 1$/m)
    assert.match(text, /^bounces by status: 5\.1\.2 1$/m)
    assert.match(text, /^races: 1, mean 30 ms, p50 38 ms, p90 48 ms, p99 50 ms \(from histogram buckets\)$/m)
    assert.match(text, /^health cache entries: 4$/m)
    assert.equal(c.err(), '')
  })

  it('--json prints the report as one object', async () => {
    const c = capture()
    assert.equal(await main(['status', '--json', '--metrics', url.replace('/metrics', '')], c.io), 0, c.err())
    const r = JSON.parse(c.out()) as StatusReport
    assert.equal(r.url, url)
    assert.equal(r.families.ipv6.attempts.refused, 1)
    assert.equal(r.families.ipv6.fellBack, 1)
    assert.deepEqual(r.bounces, { '5.1.2': 1 })
    assert.equal(r.race.count, 1)
  })

  it('an endpoint that does not answer: a clear message and exit 1', async () => {
    const port = await freePort()
    const c = capture()
    assert.equal(await main(['status', '--metrics', `http://127.0.0.1:${port}/metrics`], c.io), 1)
    assert.equal(c.out(), '')
    assert.match(
      c.err(),
      new RegExp(
        `^haraka-happy-eyeballs: no answer from http://127\\.0\\.0\\.1:${port}/metrics: connect ECONNREFUSED`,
      ),
    )
  })

  it('an endpoint that answers something else: exit 1 saying what it was', async () => {
    const other = http.createServer((req, res) => {
      if (req.url === '/html') res.end('<html>hello</html>\n')
      else if (req.url === '/other') res.end('other_metric_total 3\n')
      else res.writeHead(503).end('busy')
    })
    await new Promise<void>((resolve) => other.listen({ host: '127.0.0.1', port: 0 }, resolve))
    const base = `http://127.0.0.1:${(other.address() as net.AddressInfo).port}`
    try {
      const run = async (path: string): Promise<string> => {
        const c = capture()
        assert.equal(await main(['status', '--metrics', base + path], c.io), 1)
        return c.err()
      }
      assert.match(await run('/html'), /gave no Prometheus metrics \(line 1: no metric name/)
      assert.match(await run('/other'), /has no happy_eyeballs_ metrics/)
      assert.match(await run('/metrics'), /answered 503/)
    } finally {
      other.closeAllConnections()
      await new Promise((resolve) => other.close(resolve))
    }
  })

  it('a silent endpoint: the timeout is named; exit 1', async () => {
    const open: net.Socket[] = []
    const silent = net.createServer((s) => open.push(s))
    await new Promise<void>((resolve) => silent.listen({ host: '127.0.0.1', port: 0 }, resolve))
    const port = (silent.address() as net.AddressInfo).port
    try {
      const c = capture()
      assert.equal(
        await main(['status', '--timeout', '200', '--metrics', `http://127.0.0.1:${port}/`], c.io),
        1,
      )
      assert.match(c.err(), /no answer from .*: timed out after 200 ms/)
    } finally {
      await new Promise((resolve) => {
        silent.close(resolve)
        for (const s of open) s.destroy()
      })
    }
  })
})

describe('status arguments', () => {
  const usage = async (argv: string[]): Promise<string> => {
    const c = capture()
    assert.equal(await main(argv, c.io), 2)
    return c.err()
  }

  it('without --metrics: a usage error saying a metrics URL is needed', async () => {
    assert.match(await usage(['status']), /status needs a metrics URL: --metrics http:\/\/HOST:PORT\/metrics/)
  })

  it('a bad URL, a domain, or plan options are usage errors', async () => {
    assert.match(await usage(['status', '--metrics', 'not a url']), /bad --metrics 'not a url'/)
    assert.match(await usage(['status', '--metrics', 'ftp://127.0.0.1/']), /expected an http or https URL/)
    assert.match(
      await usage(['status', 'example.org', '--metrics', 'http://127.0.0.1:1/']),
      /status takes no domain/,
    )
    assert.match(
      await usage(['status', '--dns', '127.0.0.1', '--metrics', 'http://127.0.0.1:1/']),
      /--dns is not for status/,
    )
    assert.match(
      await usage(['plan', 'example.org', '--metrics', 'http://127.0.0.1:1/']),
      /--metrics is for status, not plan/,
    )
    assert.match(
      await usage(['status', '--timeout', '0', '--metrics', 'http://127.0.0.1:1/']),
      /bad --timeout/,
    )
  })

  it('a URL without a path gets /metrics; one with a path keeps it', () => {
    assert.equal(metricsUrl('http://127.0.0.1:9464'), 'http://127.0.0.1:9464/metrics')
    assert.equal(metricsUrl('http://[::1]:9464/'), 'http://[::1]:9464/metrics')
    assert.equal(metricsUrl('http://127.0.0.1:9464/x/metrics'), 'http://127.0.0.1:9464/x/metrics')
    assert.deepEqual(parseOptions(['status', '--metrics', 'http://127.0.0.1:9464', '--timeout', '900']), {
      command: 'status',
      metricsUrl: 'http://127.0.0.1:9464/metrics',
      json: false,
      timeoutMs: 900,
    })
    assert.throws(() => parseOptions(['status']), UsageError)
  })
})

describe('status: watched domains', () => {
  it("shows each watched domain's latest round per family, in text and in JSON", async () => {
    const m = new PluginMetrics()
    const at = Date.parse('2026-12-01T10:00:00Z')
    m.watched({
      domain: 'b.test',
      at,
      probes: [
        { address: '::1', family: 'ipv6', exchange: 'mx.b.test', outcome: 'refused' },
        { address: '127.0.0.1', family: 'ipv4', exchange: 'mx.b.test', outcome: 'connected', ms: 4 },
      ],
      families: { ipv6: { up: false }, ipv4: { up: true, connectMs: 4 } },
    })
    m.watched({ domain: 'a.test', at, problem: 'NXDOMAIN for a.test', probes: [], families: {} })
    const r = summarize('u', parseExposition(await m.text()).samples)
    assert.deepEqual(r.watched, [
      { domain: 'a.test', lastProbe: '2026-12-01T10:00:00.000Z', families: {} },
      {
        domain: 'b.test',
        lastProbe: '2026-12-01T10:00:00.000Z',
        families: {
          ipv6: { up: false, connectMs: null, probes: { refused: 1 } },
          ipv4: { up: true, connectMs: 4, probes: { connected: 1 } },
        },
      },
    ])
    const text = statusText(r)
    assert.match(text, /^watched a\.test \(latest 2026-12-01T10:00:00\.000Z\): no address probed$/m)
    assert.match(
      text,
      /^watched b\.test \(latest 2026-12-01T10:00:00\.000Z\): ipv6 down \(probes: refused 1\), ipv4 up 4 ms \(probes: connected 1\)$/m,
    )
  })
})
