import assert from 'node:assert/strict'

import { defaultSettings, parseSettings } from '../lib/config'
import { ConnectTimes } from '../lib/connect-times'
import type { HostFamilies } from '../lib/connectivity'
import { describeDelivery } from '../lib/delivery'
import { EgressMemory } from '../lib/egress'
import { HealthCache } from '../lib/health'
import type { RaceTarget } from '../lib/race'
import type { DnsClient } from '../lib/resolve'
import { recordRace, routeDomain } from '../lib/route'

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
