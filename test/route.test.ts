import assert from 'node:assert/strict'
import { EventEmitter } from 'node:events'

import FakeTimers, { type Clock } from '@sinonjs/fake-timers'

import { defaultSettings, parseSettings, type Settings } from '../lib/config'
import { ConnectTimes } from '../lib/connect-times'
import type { HostFamilies } from '../lib/connectivity'
import { type DeliveryRecord, describeDelivery } from '../lib/delivery'
import { EgressMemory } from '../lib/egress'
import { HealthCache } from '../lib/health'
import type { RaceSocket, RaceTarget } from '../lib/race'
import type { DnsClient } from '../lib/resolve'
import { type Racer, recordRace, type RouteDeps, routeDomain } from '../lib/route'

const MX = 'mx.example.com'
const target = (address: string): RaceTarget => ({
  address,
  family: address.includes(':') ? 'ipv6' : 'ipv4',
  exchange: MX,
  preference: 10,
  port: 25,
})

describe('route: what a race teaches the health cache', () => {
  const V6 = '2001:db8::25'
  const V4 = '192.0.2.25'
  const cache = () => new HealthCache({ ttlMs: 60_000, maxEntries: 100 })

  it('an attempt that lost the race after a whole attempt delay is slow, never an error', () => {
    const health = cache()
    recordRace(
      health,
      {
        attempts: [
          { target: target(V6), startMs: 0, endMs: 253, outcome: 'cancelled' },
          { target: target(V4), startMs: 250, endMs: 253, outcome: 'connected' },
        ],
        elapsedMs: 253,
        untried: [],
        winner: undefined,
      },
      250,
    )
    assert.equal(health.addressFailed(V6), false)
    assert.equal(health.familyFailed(MX, 'ipv6'), false)
    assert.equal(health.addressSlow(V6), true)
    assert.equal(health.lookup(V6)!.error, undefined)
    assert.equal(health.lookup(V4)!.ok, true)
  })

  it('an attempt cancelled before the attempt delay ran out teaches nothing', () => {
    const health = cache()
    recordRace(
      health,
      {
        attempts: [
          { target: target(V6), startMs: 0, endMs: 40, outcome: 'cancelled' },
          { target: target(V4), startMs: 10, endMs: 40, outcome: 'connected' },
        ],
        elapsedMs: 40,
        untried: [],
      },
      250,
    )
    assert.equal(health.lookup(V6), undefined)
  })

  it('a refused or timed-out attempt is a failure with its error', () => {
    const health = cache()
    recordRace(
      health,
      {
        attempts: [
          { target: target(V6), startMs: 0, endMs: 2, outcome: 'failed', error: 'connect ECONNREFUSED' },
          { target: target(V4), startMs: 2, endMs: 1000, outcome: 'timed out', error: 'no answer in 998 ms' },
        ],
        elapsedMs: 1000,
        untried: [],
      },
      250,
    )
    assert.equal(health.addressFailed(V6), true)
    assert.equal(health.lookup(V6)!.error, 'connect ECONNREFUSED')
    assert.equal(health.addressFailed(V4), true)
    assert.equal(health.lookup(V4)!.error, 'no answer in 998 ms')
  })
})

describe('route: a learnt attempt delay marks slow by its own delay', () => {
  it('a black hole cancelled after its learnt 100 ms delay is slow, though under the fixed 250 ms', () => {
    const health = new HealthCache({ ttlMs: 60_000, maxEntries: 100 })
    recordRace(
      health,
      {
        attempts: [
          { target: target('2001:db8::25'), startMs: 0, endMs: 103, outcome: 'cancelled', delayMs: 100 },
          { target: target('192.0.2.25'), startMs: 100, endMs: 103, outcome: 'connected', delayMs: 100 },
        ],
        elapsedMs: 103,
        untried: [],
      },
      250,
    )
    assert.equal(health.addressSlow('2001:db8::25'), true)
  })
})

describe('route: host connectivity and what was learnt across destinations', () => {
  const queries: string[] = []
  const dns: DnsClient = {
    resolveMx: (name) => (
      queries.push(`MX ${name}`),
      Promise.resolve([{ exchange: `mx.${name}`, priority: 10 }])
    ),
    resolve6: (name) => (queries.push(`AAAA ${name}`), Promise.resolve(['2001:4860::25'])),
    resolve4: (name) => (queries.push(`A ${name}`), Promise.resolve(['8.8.4.25'])),
  }
  const settings = defaultSettings()
  const health = () => new HealthCache({ ttlMs: 60_000, maxEntries: 100 })
  const NO_GLOBAL_V6: HostFamilies = {
    ipv4: { scopes: ['loopback', 'private'] },
    ipv6: { scopes: ['loopback'] },
  }
  beforeEach(() => queries.splice(0))

  it('a host without IPv6 connectivity asks no AAAA and plans IPv4 only, saying why', async () => {
    const r = await routeDomain('dest.test', { settings, dns, health: health(), hostFamilies: NO_GLOBAL_V6 })
    assert.deepEqual(queries, ['MX dest.test', 'A mx.dest.test'])
    assert.deepEqual(
      r.plan!.kept.map((c) => c.address),
      ['8.8.4.25'],
    )
    assert.deepEqual(r.plan!.notQueried, [
      { family: 'ipv6', reason: 'no IPv6 connectivity: no global IPv6 address' },
    ])
    assert.match(describeDelivery(r), /AAAA not queried \(no IPv6 connectivity: no global IPv6 address\)/)
    assert.equal(r.resolution.kind === 'hosts' && r.resolution.families?.join(), 'ipv4')
  })

  it('an address of a family the host cannot reach it over is filtered with the reason', async () => {
    // IPv6 is queried (the filter allows ::1, which this host has), but a global AAAA is not tried.
    const allowLoopback = {
      ...settings,
      filter: {
        ...settings.filter,
        policy: parseSettings({ filter: { allow: ['::1/128'] } }).settings.filter.policy,
      },
    }
    const r = await routeDomain('dest.test', {
      settings: allowLoopback,
      dns,
      health: health(),
      hostFamilies: NO_GLOBAL_V6,
    })
    assert.ok(queries.includes('AAAA mx.dest.test'))
    assert.deepEqual(r.plan!.filtered, [
      {
        exchange: 'mx.dest.test',
        address: '2001:4860::25',
        reason: 'no IPv6 connectivity: no global IPv6 address',
      },
    ])
  })

  it('with IPv6 egress impaired a new destination starts with IPv4, IPv6 second; a known one keeps IPv6 first', async () => {
    const egress = new EgressMemory({ destinations: 1, windowMs: 60_000, maxEntries: 10 })
    egress.record({ exchange: 'mx.other.test', family: 'ipv6', outcome: 'unanswered', at: Date.now() })
    egress.record({ exchange: 'mx.other.test', family: 'ipv4', outcome: 'connected', at: Date.now() })
    const connectTimes = new ConnectTimes({ ttlMs: 60_000, maxEntries: 10 })
    const learned = { egress, connectTimes }
    const fresh = await routeDomain('dest.test', { settings, dns, health: health(), learned })
    assert.deepEqual(
      fresh.plan!.kept.map((c) => c.family),
      ['ipv4', 'ipv6'],
    )
    assert.deepEqual(fresh.plan!.ipv4FirstForEgress, ['mx.dest.test'])
    assert.match(describeDelivery(fresh), /IPv4 first for mx\.dest\.test: IPv6 egress impaired/)
    connectTimes.record({ exchange: 'mx.dest.test', family: 'ipv6', connectMs: 5 })
    const known = await routeDomain('dest.test', { settings, dns, health: health(), learned })
    assert.deepEqual(
      known.plan!.kept.map((c) => c.family),
      ['ipv6', 'ipv4'],
    )
    assert.equal(known.plan!.ipv4FirstForEgress, undefined)
  })
})

// ---------------------------------------------------------------------------------------
// Asynchronous resolution: the race starts before every lookup answered (RFC 8305 §3, §6).

type Scripted = { at: number; addresses: string[] } | { at: number; code: string } | 'never'
type ScriptedZone = { mx?: Array<{ exchange: string; priority: number }>; aaaa?: Scripted; a?: Scripted }

/** A DnsClient whose every answer comes at its scripted time on the fake clock, or never. */
function scriptedDns(table: Record<string, ScriptedZone>, asked: string[]): DnsClient {
  const answer = (name: string, type: 'aaaa' | 'a'): Promise<string[]> => {
    asked.push(`${name} ${type.toUpperCase()}`)
    const s = table[name]?.[type] ?? { at: 0, code: 'ENODATA' }
    if (s === 'never') return new Promise(() => {})
    return new Promise((resolve, reject) =>
      setTimeout(
        () =>
          'code' in s ? reject(Object.assign(new Error(s.code), { code: s.code })) : resolve(s.addresses),
        s.at,
      ),
    )
  }
  return {
    resolveMx: async (name) => {
      const mx = table[name]?.mx
      if (!mx) throw Object.assign(new Error('ENODATA'), { code: 'ENODATA' })
      return mx
    },
    resolve6: (name) => answer(name, 'aaaa'),
    resolve4: (name) => answer(name, 'a'),
  }
}

class ScriptedSocket extends EventEmitter implements RaceSocket {
  destroyed = false
  destroy(): void {
    this.destroyed = true
  }
}

describe('routeDomain with asynchronous resolution, on a fake clock', function () {
  let clock: Clock
  let starts: Array<{ address: string; at: number }>
  let held: RaceTarget[]
  let asked: string[]
  // address → ms after its attempt started when it connects; absent: never answers.
  let connects: Record<string, number>

  const racer: Racer<ScriptedSocket> = {
    connect(t) {
      starts.push({ address: t.address, at: clock.now })
      const s = new ScriptedSocket()
      const after = connects[t.address]
      if (after !== undefined) setTimeout(() => s.destroyed || s.emit('connect'), after)
      return s
    },
    hold: (t) => void held.push(t),
  }
  const settingsWith = (raw: Record<string, Record<string, unknown>> = {}): Settings =>
    parseSettings({
      filter: { allow: ['192.0.2.0/24', '2001:db8::/32'] },
      race: { success: 'connect' },
      ...raw,
    }).settings
  const route = (table: Record<string, ScriptedZone>, opts: Partial<RouteDeps<ScriptedSocket>> = {}) => {
    let record: DeliveryRecord | undefined
    let failure: unknown
    routeDomain('example.test', {
      settings: settingsWith(),
      dns: scriptedDns(table, asked),
      health: new HealthCache({ ttlMs: 60_000, maxEntries: 100 }),
      racer,
      random: () => 0.5,
      ...opts,
    }).then(
      (r) => (record = r),
      (e) => (failure = e),
    )
    return {
      async until(ms: number): Promise<DeliveryRecord> {
        await clock.tickAsync(ms)
        if (failure) throw failure
        assert.ok(record, `no answer after ${ms} ms`)
        return record
      },
      answered: () => record !== undefined,
    }
  }
  const ONE_MX = { 'example.test': { mx: [{ exchange: 'mx.example.test', priority: 10 }] } }

  beforeEach(function () {
    clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout', 'performance'] })
    starts = []
    held = []
    asked = []
    connects = {}
  })

  afterEach(function () {
    clock.uninstall()
  })

  it('with IPv6 egress impaired and IPv4 winning before IPv6 started, the IPv6 address is handed to the egress recheck', async function () {
    connects = { '2001:db8::1': 1, '192.0.2.1': 1 }
    const table = {
      ...ONE_MX,
      'mx.example.test': {
        aaaa: { at: 0, addresses: ['2001:db8::1'] },
        a: { at: 0, addresses: ['192.0.2.1'] },
      },
    }
    const egress = new EgressMemory({ destinations: 1, windowMs: 60_000, maxEntries: 10 })
    const learned = { egress, connectTimes: new ConnectTimes({ ttlMs: 60_000, maxEntries: 10 }) }
    const rechecked: RaceTarget[] = []
    const recheckEgress = (t: RaceTarget) => void rechecked.push(t)

    await route(table, { learned, recheckEgress }).until(10)
    assert.equal(rechecked.length, 0, 'egress is not impaired: IPv6 led and won')
    egress.record({ exchange: 'mx.other.test', family: 'ipv6', outcome: 'unanswered', at: Date.now() })
    egress.record({ exchange: 'mx.other.test', family: 'ipv4', outcome: 'connected', at: Date.now() })
    connects = { '192.0.2.1': 1 }
    const record = await route(table, { learned: { egress }, recheckEgress }).until(10)
    assert.deepEqual(record.plan?.ipv4FirstForEgress, ['mx.example.test'])
    assert.equal(record.decision.action === 'deliver' && record.decision.winner?.address, '192.0.2.1')
    assert.deepEqual(
      rechecked.map((t) => `${t.exchange} ${t.address}:${t.port}`),
      ['mx.example.test 2001:db8::1:25'],
    )
  })

  it('an AAAA never answered: IPv4 starts one resolution delay after the A answer and wins; the AAAA is left pending', async function () {
    connects = { '192.0.2.1': 1 }
    const r = route({
      ...ONE_MX,
      'mx.example.test': { aaaa: 'never', a: { at: 5, addresses: ['192.0.2.1'] } },
    })
    await clock.tickAsync(54)
    assert.deepEqual(starts, [], 'the race started before the resolution delay ran out')
    const record = await r.until(2)
    assert.deepEqual(starts, [{ address: '192.0.2.1', at: 55 }])
    assert.equal(record.decision.action, 'deliver')
    assert.equal(record.decision.action === 'deliver' && record.decision.winner?.address, '192.0.2.1')
    assert.deepEqual(record.pendingLookups, ['mx.example.test AAAA'])
    assert.deepEqual(record.resolution, {
      kind: 'hosts',
      domain: 'example.test',
      implicit: false,
      hosts: [{ exchange: 'mx.example.test', preference: 10, addresses: ['192.0.2.1'], errors: [] }],
    })
    assert.match(
      describeDelivery(record),
      /winner 192\.0\.2\.1; lookups left pending mx\.example\.test AAAA$/,
    )
    assert.deepEqual(
      held.map((t) => t.address),
      ['192.0.2.1'],
    )
  })

  it('an AAAA answer starts the race at once, the A still pending', async function () {
    connects = { '2001:db8::1': 1 }
    const r = route({
      ...ONE_MX,
      'mx.example.test': { aaaa: { at: 3, addresses: ['2001:db8::1'] }, a: 'never' },
    })
    const record = await r.until(4)
    assert.deepEqual(starts, [{ address: '2001:db8::1', at: 3 }])
    assert.deepEqual(record.pendingLookups, ['mx.example.test A'])
  })

  it('the backup MX whose lookups never answer holds nothing back, and is named as pending', async function () {
    connects = { '192.0.2.10': 1 }
    const r = route({
      'example.test': {
        mx: [
          { exchange: 'mx1.example.test', priority: 10 },
          { exchange: 'mx2.example.test', priority: 20 },
        ],
      },
      'mx1.example.test': { aaaa: { at: 2, addresses: [] }, a: { at: 1, addresses: ['192.0.2.10'] } },
      'mx2.example.test': { aaaa: 'never', a: 'never' },
    })
    const record = await r.until(3)
    assert.deepEqual(starts, [{ address: '192.0.2.10', at: 2 }])
    assert.deepEqual(record.pendingLookups, ['mx2.example.test AAAA', 'mx2.example.test A'])
    assert.equal(record.decision.action === 'deliver' && record.decision.winner?.address, '192.0.2.10')
    assert.match(
      describeDelivery(record),
      /lookups left pending mx2\.example\.test AAAA, mx2\.example\.test A/,
    )
  })

  it('a late AAAA joins the running race: IPv6 starts one attempt delay after IPv4', async function () {
    connects = { '2001:db8::1': 1 }
    const r = route({
      ...ONE_MX,
      'mx.example.test': {
        aaaa: { at: 100, addresses: ['2001:db8::1'] },
        a: { at: 1, addresses: ['192.0.2.1'] },
      },
    })
    const record = await r.until(302)
    assert.deepEqual(starts, [
      { address: '192.0.2.1', at: 51 },
      { address: '2001:db8::1', at: 301 },
    ])
    assert.ok(record.race)
    assert.deepEqual(
      record.race.attempts.map((a) => [a.target.address, a.startMs, a.outcome]),
      [
        ['192.0.2.1', 0, 'cancelled'],
        ['2001:db8::1', 250, 'connected'],
      ],
    )
    assert.equal(record.pendingLookups, undefined, 'every lookup had answered')
    // The record is complete for what was learned: both addresses, the plan of both.
    assert.equal(record.resolution.kind, 'hosts')
    assert.deepEqual(record.resolution.kind === 'hosts' && record.resolution.hosts[0].addresses, [
      '2001:db8::1',
      '192.0.2.1',
    ])
    assert.deepEqual(record.decision.action === 'deliver' && record.decision.targets.map((t) => t.address), [
      '2001:db8::1',
      '192.0.2.1',
    ])
  })

  it('a SERVFAIL on the AAAA still delivers over IPv4, the error kept', async function () {
    connects = { '192.0.2.1': 1 }
    const r = route({
      ...ONE_MX,
      'mx.example.test': { aaaa: { at: 1, code: 'ESERVFAIL' }, a: { at: 2, addresses: ['192.0.2.1'] } },
    })
    const record = await r.until(3)
    assert.deepEqual(starts, [{ address: '192.0.2.1', at: 2 }])
    assert.equal(record.decision.action === 'deliver' && record.decision.winner?.address, '192.0.2.1')
    assert.deepEqual(record.plan?.dnsErrors, ['mx.example.test AAAA ESERVFAIL'])
    assert.equal(record.pendingLookups, undefined)
  })

  it('SERVFAIL on both lookups defers as a DNS problem without racing', async function () {
    const r = route({
      ...ONE_MX,
      'mx.example.test': { aaaa: { at: 1, code: 'ESERVFAIL' }, a: { at: 2, code: 'ESERVFAIL' } },
    })
    const record = await r.until(3)
    assert.deepEqual(starts, [])
    assert.equal(record.decision.action, 'defer')
    assert.match(record.decision.action === 'defer' ? record.decision.reason : '', /^DNS lookup failed/)
  })

  it('when every started attempt failed, a lookup answered later still joins and wins', async function () {
    connects = { '192.0.2.20': 1 }
    const refusing: Racer<ScriptedSocket> = {
      ...racer,
      connect(t) {
        const s = racer.connect(t, 'connect')
        if (t.address === '192.0.2.10')
          setTimeout(() => s.emit('error', Object.assign(new Error('refused'), { code: 'ECONNREFUSED' })), 1)
        return s
      },
    }
    const r = route(
      {
        'example.test': {
          mx: [
            { exchange: 'mx1.example.test', priority: 10 },
            { exchange: 'mx2.example.test', priority: 20 },
          ],
        },
        'mx1.example.test': { aaaa: { at: 1, addresses: [] }, a: { at: 1, addresses: ['192.0.2.10'] } },
        'mx2.example.test': { aaaa: { at: 1000, addresses: [] }, a: { at: 1000, addresses: ['192.0.2.20'] } },
      },
      { racer: refusing },
    )
    await clock.tickAsync(999)
    assert.equal(r.answered(), false)
    const record = await r.until(2)
    assert.deepEqual(
      starts.map((s) => [s.address, s.at]),
      [
        ['192.0.2.10', 1],
        ['192.0.2.20', 1000],
      ],
    )
    assert.equal(record.decision.action === 'deliver' && record.decision.winner?.address, '192.0.2.20')
  })

  it('a race that reaches its deadline with lookups pending defers, naming them before the reason', async function () {
    const r = route(
      {
        'example.test': {
          mx: [
            { exchange: 'mx1.example.test', priority: 10 },
            { exchange: 'mx2.example.test', priority: 20 },
          ],
        },
        'mx1.example.test': { aaaa: { at: 1, addresses: [] }, a: { at: 1, addresses: ['192.0.2.10'] } },
        'mx2.example.test': { aaaa: 'never', a: 'never' },
      },
      { settings: settingsWith({ race: { success: 'connect', deadline_ms: '1000' } }) },
    )
    const record = await r.until(1001)
    assert.equal(record.decision.action, 'defer')
    assert.deepEqual(record.pendingLookups, ['mx2.example.test AAAA', 'mx2.example.test A'])
    assert.match(
      describeDelivery(record),
      /; lookups left pending mx2\.example\.test AAAA, mx2\.example\.test A; defer: no MX address of example\.test answered: 192\.0\.2\.10: no answer in 1000 ms$/,
    )
  })

  it('an AAAA answer first to a host that refused IPv6 by policy waits for its A, and IPv6 is never tried', async function () {
    connects = { '192.0.2.1': 1, '2001:db8::1': 1 }
    const r = route(
      {
        ...ONE_MX,
        'mx.example.test': {
          aaaa: { at: 1, addresses: ['2001:db8::1'] },
          a: { at: 200, addresses: ['192.0.2.1'] },
        },
      },
      {
        senderPolicy: {
          ipv6Refused: (x) =>
            x === 'mx.example.test' ? { refusal: '550 5.7.25', until: Date.now() + 60_000 } : undefined,
        },
      },
    )
    const record = await r.until(201)
    assert.deepEqual(starts, [{ address: '192.0.2.1', at: 200 }])
    assert.deepEqual(
      record.plan?.filtered.map((f) => f.address),
      ['2001:db8::1'],
    )
  })

  it('an AAAA answer first when IPv6 failed lately for the host waits for the A, which then leads', async function () {
    connects = { '192.0.2.1': 1 }
    const health = new HealthCache({ ttlMs: 60_000, maxEntries: 100 })
    health.record('2001:db8::1', 'ipv6', 'mx.example.test', {
      ok: false,
      error: 'connect ETIMEDOUT',
      latencyMs: 0,
      at: Date.now(),
    })
    const r = route(
      {
        ...ONE_MX,
        'mx.example.test': {
          aaaa: { at: 1, addresses: ['2001:db8::1'] },
          a: { at: 20, addresses: ['192.0.2.1'] },
        },
      },
      { health },
    )
    const record = await r.until(21)
    assert.deepEqual(starts, [{ address: '192.0.2.1', at: 20 }])
    assert.equal(record.decision.action === 'deliver' && record.decision.winner?.address, '192.0.2.1')
  })

  it('with racing off every answer is awaited, as before', async function () {
    const r = route(
      {
        ...ONE_MX,
        'mx.example.test': { aaaa: { at: 3000, code: 'ETIMEOUT' }, a: { at: 1, addresses: ['192.0.2.1'] } },
      },
      { settings: settingsWith({ race: { enabled: 'false' } }) },
    )
    await clock.tickAsync(2999)
    assert.equal(r.answered(), false)
    const record = await r.until(1)
    assert.deepEqual(starts, [])
    assert.deepEqual(record.plan?.dnsErrors, ['mx.example.test AAAA ETIMEOUT'])
    assert.equal(record.pendingLookups, undefined)
  })

  it('a family this host cannot send from is left unqueried', async function () {
    connects = { '192.0.2.1': 1 }
    const r = route(
      { ...ONE_MX, 'mx.example.test': { aaaa: 'never', a: { at: 1, addresses: ['192.0.2.1'] } } },
      {
        hostFamilies: { ipv4: { scopes: ['loopback', 'private', 'global'] }, ipv6: { scopes: ['loopback'] } },
      },
    )
    const record = await r.until(2)
    assert.deepEqual(asked, ['mx.example.test A'])
    assert.deepEqual(starts, [{ address: '192.0.2.1', at: 1 }])
    assert.equal(record.pendingLookups, undefined)
  })
})
