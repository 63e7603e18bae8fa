import assert from 'node:assert/strict'

import { HealthCache } from '../lib/health'
import type { RaceTarget } from '../lib/race'
import { recordRace } from '../lib/route'

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
