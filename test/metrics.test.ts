// From a message's delivery record to the metrics: outcome labels from outcomes and error
// codes, filter reasons by range name, family fallbacks, DSN statuses, and each record
// counted once whichever hooks see it.

import assert from 'node:assert/strict'

import { AggregatorRegistry } from 'prom-client'

import { type Family, RANGE_NAMES } from '../lib/classify'
import { parseSettings } from '../lib/config'
import { ConnectTimes } from '../lib/connect-times'
import type { HostFamilies } from '../lib/connectivity'
import { EgressMemory } from '../lib/egress'
import { learnedGauges } from '../lib/learned'
import { MessageConnects } from '../lib/connects'
import { type DeliveryRecord, STATUS } from '../lib/delivery'
import {
  type LearnedGauges,
  ATTEMPT_OUTCOMES,
  attemptOutcome,
  decidedStatus,
  filterReason,
  METRIC,
  observationsOf,
  PluginMetrics,
} from '../lib/metrics'
import type { FilteredEntry, Plan } from '../lib/plan'
import type { AttemptRecord, RaceTarget } from '../lib/race'
import type { DomainWatch } from '../lib/watch'

const target = (address: string, family: Family, exchange = 'mx.example.test'): RaceTarget => ({
  address,
  family,
  exchange,
  preference: 10,
  port: 25,
})
const V6 = target('::1', 'ipv6')
const V4 = target('127.0.0.1', 'ipv4')

function plan(filtered: FilteredEntry[] = [], kept: RaceTarget[] = []): Plan {
  return { domain: 'example.test', kept, filtered, dnsErrors: [] }
}

function record(parts: Partial<DeliveryRecord> = {}): DeliveryRecord {
  return {
    domain: 'example.test',
    resolution: { kind: 'hosts', domain: 'example.test', implicit: false, hosts: [] },
    decision: { action: 'deliver', targets: [V6, V4] },
    ...parts,
  }
}

const attempt = (t: RaceTarget, outcome: AttemptRecord['outcome'], more: Partial<AttemptRecord> = {}) => ({
  target: t,
  startMs: 0,
  endMs: 1,
  outcome,
  ...more,
})

/** The value of one series of a metric, by its labels; 0 when the series is absent. */
async function valueOf(m: PluginMetrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const metric = m.registry.getSingleMetric(name)
  assert.ok(metric, `no metric ${name}`)
  const { values } = await metric.get()
  const hit = values.find(
    (v) =>
      Object.entries(labels).every(([k, want]) => String(v.labels[k]) === want) &&
      (v as { metricName?: string }).metricName !== `${name}_bucket`,
  )
  return hit?.value ?? 0
}

describe('metrics: attempt outcomes', () => {
  const cases: Array<[string, string | undefined, string | undefined, string]> = [
    ['connected', undefined, undefined, 'connected'],
    ['failed', 'ECONNREFUSED', 'connect ECONNREFUSED', 'refused'],
    ['failed', 'ENETUNREACH', 'connect ENETUNREACH', 'unreachable'],
    ['failed', 'EHOSTUNREACH', undefined, 'unreachable'],
    ['failed', 'EADDRNOTAVAIL', 'bind EADDRNOTAVAIL', 'unreachable'],
    ['failed', 'EINVAL', 'connect EINVAL', 'unreachable'],
    ['failed', 'ETIMEDOUT', undefined, 'timed_out'],
    ['failed', 'ECONNRESET', 'read ECONNRESET', 'failed'],
    ['failed', undefined, 'something odd', 'failed'],
    ['timed out', undefined, 'no answer in 15000 ms', 'timed_out'],
    ['cancelled', undefined, undefined, 'cancelled'],
    // Haraka's own connects carry only the text of their error.
    ['failed', undefined, 'connect ECONNREFUSED', 'refused'],
    ['failed', undefined, 'connect EHOSTUNREACH', 'unreachable'],
    ['failed', undefined, 'connection timed out', 'timed_out'],
    ['abandoned', undefined, undefined, 'cancelled'],
    // Outcomes a record may carry once greetings and replies are raced.
    ['greeting refused', undefined, '421 try later', 'greeting_refused'],
    ['policy-refused', undefined, '550 5.7.25', 'policy_refused'],
    ['something new', undefined, undefined, 'failed'],
  ]
  for (const [outcome, code, error, label] of cases) {
    it(`${outcome}${code ? ` ${code}` : ''}${error ? ` (${error})` : ''} → ${label}`, () => {
      assert.equal(attemptOutcome(outcome, code, error), label)
    })
  }

  it('every label is one of the outcomes the metric names', () => {
    for (const [outcome, code, error] of cases)
      assert.ok((ATTEMPT_OUTCOMES as readonly string[]).includes(attemptOutcome(outcome, code, error)))
  })
})

describe('metrics: filter reasons', () => {
  it('a range name, with or without how the address was written, is its name', () => {
    assert.equal(filterReason('link-local'), 'link-local')
    assert.equal(filterReason('loopback, IPv4-mapped'), 'loopback')
    assert.equal(filterReason('unspecified, via NAT64'), 'unspecified')
    for (const name of RANGE_NAMES) assert.equal(filterReason(name), name)
  })

  it('a block, by CIDR or by name, is "blocked": no CIDR text becomes a label', () => {
    assert.equal(filterReason('blocked by 192.0.2.0/24'), 'blocked')
    assert.equal(filterReason('blocked by private, IPv4-mapped'), 'blocked')
  })

  it('anything else is "not-an-ip-address" or "other"', () => {
    assert.equal(filterReason('not an IP address'), 'not-an-ip-address')
    assert.equal(filterReason('mx.example.test said so'), 'other')
  })
})

describe('metrics: observations of one record', () => {
  it('a refused IPv6 then a connected IPv4 in the race: two attempts and a fallback to IPv4', () => {
    const o = observationsOf(
      record({
        race: {
          attempts: [
            attempt(V6, 'failed', { code: 'ECONNREFUSED', error: 'connect ECONNREFUSED' }),
            attempt(V4, 'connected'),
          ],
          elapsedMs: 12,
          untried: [],
        },
      }),
    )
    assert.deepEqual(o.attempts, [
      { family: 'ipv6', by: 'race', outcome: 'refused' },
      { family: 'ipv4', by: 'race', outcome: 'connected' },
    ])
    assert.deepEqual(o.fallback, { from: 'ipv6', to: 'ipv4' })
    assert.equal(o.raceSeconds, 0.012)
  })

  it('IPv6 winning while IPv4 was started is no fallback', () => {
    const o = observationsOf(
      record({
        race: { attempts: [attempt(V6, 'connected'), attempt(V4, 'cancelled')], elapsedMs: 300, untried: [] },
      }),
    )
    assert.equal(o.fallback, undefined)
    assert.deepEqual(
      o.attempts.map((a) => a.outcome),
      ['connected', 'cancelled'],
    )
  })

  it("Haraka's own connects count as haraka, a handed-over socket not again, and a move to IPv6 is a fallback", () => {
    const connects = new MessageConnects('example.test')
    const at = { port: 25, ms: 1, at: 0 }
    // What the race wrote to the connect log is counted from the race record, not twice.
    connects.add({ address: '127.0.0.1', by: 'race', outcome: 'connected', ...at })
    connects.add({ address: '127.0.0.1', by: 'haraka', outcome: 'connected', handedOver: true, ...at })
    connects.add({ address: '::1', by: 'haraka', outcome: 'failed', error: 'connect ECONNREFUSED', ...at })
    connects.add({ address: '::1', by: 'haraka', outcome: 'connected', ...at })
    const o = observationsOf(
      record({
        race: { attempts: [attempt(V4, 'connected')], elapsedMs: 2, untried: [] },
        connects,
      }),
    )
    assert.deepEqual(o.attempts, [
      { family: 'ipv4', by: 'race', outcome: 'connected' },
      { family: 'ipv6', by: 'haraka', outcome: 'refused' },
      { family: 'ipv6', by: 'haraka', outcome: 'connected' },
    ])
    assert.deepEqual(o.fallback, { from: 'ipv4', to: 'ipv6' })
  })

  it('without a race, Haraka alone: no race duration; nothing connected is no fallback', () => {
    const connects = new MessageConnects('example.test')
    connects.add({
      address: '::1',
      by: 'haraka',
      outcome: 'failed',
      error: 'connection timed out',
      port: 25,
      ms: 1,
      at: 0,
    })
    connects.add({
      address: '127.0.0.1',
      by: 'haraka',
      outcome: 'failed',
      error: 'connect ECONNREFUSED',
      port: 25,
      ms: 1,
      at: 0,
    })
    const o = observationsOf(record({ connects }))
    assert.equal(o.raceSeconds, undefined)
    assert.equal(o.fallback, undefined)
    assert.deepEqual(
      o.attempts.map((a) => `${a.family} ${a.outcome}`),
      ['ipv6 timed_out', 'ipv4 refused'],
    )
  })

  it('filtered addresses by the family DNS gave them and their reason kind', () => {
    const o = observationsOf(
      record({
        plan: plan([
          { exchange: 'mx', address: 'fe80::1', reason: 'link-local' },
          { exchange: 'mx', address: '::ffff:127.0.0.1', reason: 'loopback, IPv4-mapped' },
          { exchange: 'mx', address: '10.0.0.1', reason: 'private' },
          { exchange: 'mx', address: '192.0.2.1', reason: 'blocked by 192.0.2.0/24' },
        ]),
      }),
    )
    assert.deepEqual(o.filtered, [
      { family: 'ipv6', reason: 'link-local' },
      { family: 'ipv6', reason: 'loopback' },
      { family: 'ipv4', reason: 'private' },
      { family: 'ipv4', reason: 'blocked' },
    ])
  })
})

describe('metrics: the DSN status the plugin set', () => {
  it('its own deferral and bounce carry their status; a bounce is class 5', () => {
    const defer = record({ decision: { action: 'defer', status: STATUS.noRoute, reason: 'x' } })
    assert.equal(decidedStatus(defer, 'x', false), '4.4.4')
    // A deferral Haraka turns into a bounce after too many tries.
    assert.equal(decidedStatus(defer, 'Too many failures (x)', true), '5.4.4')
    const bounce = record({ decision: { action: 'bounce', status: STATUS.noDomain, reason: 'x' } })
    assert.equal(decidedStatus(bounce, 'x', true), '5.1.2')
    const nullMx = record({ decision: { action: 'null-mx', status: STATUS.nullMx, reason: 'x' } })
    assert.equal(decidedStatus(nullMx, 'No MX', true), '5.1.10')
  })

  it("a delivery that ran out of addresses takes the explanation's status; any other failure is not the plugin's", () => {
    const connects = new MessageConnects('example.test')
    connects.targets = [V4]
    connects.add({
      address: '127.0.0.1',
      by: 'haraka',
      outcome: 'failed',
      error: 'connect ECONNREFUSED',
      port: 25,
      ms: 1,
      at: 0,
    })
    const r = record({ connects })
    assert.equal(decidedStatus(r, 'Tried all MXs', false), '4.4.1')
    assert.equal(decidedStatus(r, 'Upstream error: 421 try later', false), undefined)
    assert.equal(decidedStatus(record(), 'Tried all MXs', false), undefined)
  })
})

describe('metrics: the registry', () => {
  it('counts a record once, whichever hooks see it, and deliveries by the family of the ip', async () => {
    const m = new PluginMetrics()
    const r = record({
      race: {
        attempts: [attempt(V6, 'failed', { code: 'ECONNREFUSED' }), attempt(V4, 'connected')],
        elapsedMs: 40,
        untried: [],
      },
      plan: plan([{ exchange: 'mx', address: 'fe80::1', reason: 'link-local' }]),
    })
    m.delivered(r, '127.0.0.1')
    // Haraka defers the recipients that failed after delivering to the others.
    m.failed(r, 'Upstream error', false)
    m.route(r)
    const attempts = (family: string, outcome: string) =>
      valueOf(m, METRIC.attempts, { family, outcome, by: 'race' })
    assert.equal(await attempts('ipv6', 'refused'), 1)
    assert.equal(await attempts('ipv4', 'connected'), 1)
    assert.equal(await attempts('ipv6', 'connected'), 0)
    assert.equal(await valueOf(m, METRIC.deliveries, { family: 'ipv4' }), 1)
    assert.equal(await valueOf(m, METRIC.deliveries, { family: 'ipv6' }), 0)
    assert.equal(await valueOf(m, METRIC.fallbacks, { from: 'ipv6', to: 'ipv4' }), 1)
    assert.equal(await valueOf(m, METRIC.filtered, { family: 'ipv6', reason: 'link-local' }), 1)
    assert.equal(await valueOf(m, METRIC.deferrals), 0)
    const text = await m.text()
    assert.match(text, /^happy_eyeballs_race_duration_seconds_count 1$/m)
    assert.match(text, /^happy_eyeballs_race_duration_seconds_sum 0\.04$/m)
    assert.match(text, /^happy_eyeballs_race_duration_seconds_bucket\{le="0\.025"\} 0$/m)
    assert.match(text, /^happy_eyeballs_race_duration_seconds_bucket\{le="0\.05"\} 1$/m)
  })

  it('attempts and deliveries of many messages add up under their labels, also after a registry reset', async () => {
    const m = new PluginMetrics()
    const raced = (...attempts: ReturnType<typeof attempt>[]) =>
      record({ race: { attempts, elapsedMs: 5, untried: [] } })
    for (let i = 0; i < 3; i++) m.delivered(raced(attempt(V6, 'connected')), '::1')
    m.delivered(raced(attempt(V6, 'failed', { code: 'ECONNREFUSED' }), attempt(V4, 'connected')), '127.0.0.1')
    const attempts = (family: string, outcome: string) =>
      valueOf(m, METRIC.attempts, { family, outcome, by: 'race' })
    assert.equal(await attempts('ipv6', 'connected'), 3)
    assert.equal(await attempts('ipv6', 'refused'), 1)
    assert.equal(await attempts('ipv4', 'connected'), 1)
    assert.equal(await valueOf(m, METRIC.deliveries, { family: 'ipv6' }), 3)
    assert.equal(await valueOf(m, METRIC.deliveries, { family: 'ipv4' }), 1)
    m.registry.resetMetrics()
    m.delivered(raced(attempt(V6, 'connected')), '::1')
    assert.equal(await attempts('ipv6', 'connected'), 1)
    assert.equal(await valueOf(m, METRIC.deliveries, { family: 'ipv6' }), 1)
    assert.equal(await valueOf(m, METRIC.deliveries, { family: 'ipv4' }), 0)
  })

  it('each failure counts under its status; a second message is a second count', async () => {
    const m = new PluginMetrics()
    const defer = () => record({ decision: { action: 'defer', status: STATUS.noRoute, reason: 'x' } })
    m.failed(defer(), 'x', false)
    m.failed(defer(), 'x', false)
    m.failed(record({ decision: { action: 'bounce', status: STATUS.noDomain, reason: 'x' } }), 'x', true)
    assert.equal(await valueOf(m, METRIC.deferrals, { status: '4.4.4' }), 2)
    assert.equal(await valueOf(m, METRIC.bounces, { status: '5.1.2' }), 1)
    assert.equal(await valueOf(m, METRIC.bounces, { status: '4.4.4' }), 0)
  })

  it('a delivery without an IP address counts no family', async () => {
    const m = new PluginMetrics()
    m.delivered(record(), undefined)
    m.delivered(record(), 'mx.example.test')
    assert.equal(await valueOf(m, METRIC.deliveries, { family: 'ipv4' }), 0)
    assert.equal(await valueOf(m, METRIC.deliveries, { family: 'ipv6' }), 0)
  })

  it('every family, outcome and source is there from the start at 0; no label holds an address or a domain', async () => {
    const m = new PluginMetrics()
    m.route(
      record({
        plan: plan([{ exchange: 'mx.secret.test', address: 'fe80::dead', reason: 'link-local' }]),
        race: {
          attempts: [attempt(target('::2', 'ipv6', 'mx.secret.test'), 'failed')],
          elapsedMs: 1,
          untried: [],
        },
      }),
    )
    const text = await m.text()
    const series = text.split('\n').filter((l) => l.startsWith('happy_eyeballs_connect_attempts_total{'))
    assert.equal(series.length, 2 * 2 * ATTEMPT_OUTCOMES.length)
    assert.doesNotMatch(text, /secret|dead|::2|example\.test/)
  })

  it('the health entries gauge reads its source at scrape time; a failing source reads 0', async () => {
    const m = new PluginMetrics()
    let size = 3
    m.healthFrom(() => size)
    assert.match(await m.text(), /^happy_eyeballs_health_entries 3$/m)
    size = 7
    assert.match(await m.text(), /^happy_eyeballs_health_entries 7$/m)
    m.healthFrom(() => {
      throw new Error('gone')
    })
    assert.match(await m.text(), /^happy_eyeballs_health_entries 0$/m)
  })
})

describe("metrics: this host's egress, families and learnt delay", () => {
  const gauges = (text: string): string[] =>
    text
      .split('\n')
      .filter((l) =>
        /^happy_eyeballs_(ipv6_egress_impaired|host_family_usable|attempt_delay_seconds)/.test(l),
      )
      .sort()

  it('read at scrape time from the plugin state; without a state only egress, at 0; a failing source the same', async () => {
    const m = new PluginMetrics()
    assert.deepEqual(gauges(await m.text()), ['happy_eyeballs_ipv6_egress_impaired 0'])
    let value: LearnedGauges = {
      ipv6EgressImpaired: true,
      usableFamilies: ['ipv4'],
      attemptDelayMs: { ipv4: 120, ipv6: 250 },
    }
    m.learnedFrom(() => value)
    assert.deepEqual(gauges(await m.text()), [
      'happy_eyeballs_attempt_delay_seconds{family="ipv4"} 0.12',
      'happy_eyeballs_attempt_delay_seconds{family="ipv6"} 0.25',
      'happy_eyeballs_host_family_usable{family="ipv4"} 1',
      'happy_eyeballs_host_family_usable{family="ipv6"} 0',
      'happy_eyeballs_ipv6_egress_impaired 1',
    ])
    value = { ipv6EgressImpaired: false, attemptDelayMs: { ipv4: 250, ipv6: 250 } }
    assert.deepEqual(gauges(await m.text()), [
      'happy_eyeballs_attempt_delay_seconds{family="ipv4"} 0.25',
      'happy_eyeballs_attempt_delay_seconds{family="ipv6"} 0.25',
      'happy_eyeballs_ipv6_egress_impaired 0',
    ])
    m.learnedFrom(() => {
      throw new Error('gone')
    })
    assert.deepEqual(gauges(await m.text()), ['happy_eyeballs_ipv6_egress_impaired 0'])
  })

  it('in a cluster: impaired when some worker judges it so, usable when every worker can, the mean delay', async () => {
    const worker = (v: LearnedGauges) => {
      const m = new PluginMetrics()
      m.learnedFrom(() => v)
      return m.registry.getMetricsAsJSON()
    }
    const merged = AggregatorRegistry.aggregate(
      await Promise.all([
        worker({
          ipv6EgressImpaired: false,
          usableFamilies: ['ipv4', 'ipv6'],
          attemptDelayMs: { ipv4: 100, ipv6: 200 },
        }),
        worker({
          ipv6EgressImpaired: true,
          usableFamilies: ['ipv4'],
          attemptDelayMs: { ipv4: 300, ipv6: 250 },
        }),
      ]),
    )
    assert.deepEqual(gauges(await merged.metrics()), [
      'happy_eyeballs_attempt_delay_seconds{family="ipv4"} 0.2',
      'happy_eyeballs_attempt_delay_seconds{family="ipv6"} 0.225',
      'happy_eyeballs_host_family_usable{family="ipv4"} 1',
      'happy_eyeballs_host_family_usable{family="ipv6"} 0',
      'happy_eyeballs_ipv6_egress_impaired 1',
    ])
  })

  it('learnedGauges: the families queried, the host-wide learnt delay within the bounds, egress', () => {
    const settings = parseSettings({ race: { min_attempt_delay_ms: '50', attempt_delay_ms: '300' } }).settings
    const connectTimes = new ConnectTimes({ ttlMs: 600_000, maxEntries: 100 })
    connectTimes.record({ exchange: 'mx.test', family: 'ipv4', connectMs: 20 })
    const egress = new EgressMemory({ destinations: 1, windowMs: 600_000, maxEntries: 100 })
    egress.record({ exchange: 'mx.test', family: 'ipv6', outcome: 'unanswered', at: Date.now() })
    egress.record({ exchange: 'mx.test', family: 'ipv4', outcome: 'connected', at: Date.now() })
    const noIpv6: HostFamilies = { ipv4: { scopes: ['global'] }, ipv6: { scopes: ['link-local'] } }
    assert.deepEqual(learnedGauges({ connectTimes, egress }, noIpv6, settings), {
      ipv6EgressImpaired: true,
      usableFamilies: ['ipv4'],
      // 2 × 20 + 4 × 10 = 80 ms for IPv4; nothing known for IPv6: the maximum.
      attemptDelayMs: { ipv4: 80, ipv6: 300 },
    })
    assert.deepEqual(learnedGauges({}, undefined, settings), {
      ipv6EgressImpaired: false,
      attemptDelayMs: { ipv4: 300, ipv6: 300 },
    })
  })
})

describe('metrics: watched domains', () => {
  const round = (at: number, v6: DomainWatch['families']['ipv6']): DomainWatch => ({
    domain: 'watched.test',
    at,
    probes: [
      ...(v6
        ? [
            {
              address: '::1',
              family: 'ipv6' as const,
              exchange: 'mx',
              outcome: v6.up ? ('connected' as const) : ('refused' as const),
            },
          ]
        : []),
      { address: '127.0.0.1', family: 'ipv4', exchange: 'mx', outcome: 'connected', ms: 3 },
    ],
    families: { ...(v6 ? { ipv6: v6 } : {}), ipv4: { up: true, connectMs: 3 } },
  })
  const series = async (m: PluginMetrics): Promise<string[]> =>
    (await m.text()).split('\n').filter((l) => l.startsWith('happy_eyeballs_watch_'))

  it('each round sets up per family, the fastest greeting and the time, and counts the probes', async () => {
    const m = new PluginMetrics()
    m.watched(round(1_700_000_000_000, { up: true, connectMs: 2 }))
    m.watched(round(1_700_000_060_000, { up: false }))
    assert.deepEqual(await series(m), [
      'happy_eyeballs_watch_up{domain="watched.test",family="ipv4"} 1',
      'happy_eyeballs_watch_up{domain="watched.test",family="ipv6"} 0',
      'happy_eyeballs_watch_probes_total{domain="watched.test",family="ipv6",outcome="connected"} 1',
      'happy_eyeballs_watch_probes_total{domain="watched.test",family="ipv4",outcome="connected"} 2',
      'happy_eyeballs_watch_probes_total{domain="watched.test",family="ipv6",outcome="refused"} 1',
      'happy_eyeballs_watch_last_probe_timestamp_seconds{domain="watched.test"} 1700000060',
      'happy_eyeballs_watch_connect_seconds{domain="watched.test",family="ipv4"} 0.003',
    ])
  })

  it('a family the plan no longer has loses its series, and an unwatched domain all of them', async () => {
    const m = new PluginMetrics()
    m.watched(round(1_700_000_000_000, { up: true, connectMs: 2 }))
    m.watched(round(1_700_000_060_000, undefined))
    const lines = await series(m)
    assert.ok(
      !lines.some((l) => l.startsWith('happy_eyeballs_watch_up{') && l.includes('ipv6')),
      lines.join('\n'),
    )
    assert.ok(!lines.some((l) => l.startsWith('happy_eyeballs_watch_connect_seconds{') && l.includes('ipv6')))
    m.watchOnly(['other.test'])
    assert.deepEqual(await series(m), [])
  })
})
