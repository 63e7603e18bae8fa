import assert from 'node:assert/strict'

import { type ConnectOutcome, HealthCache, type HealthOptions } from '../lib/health'

const V6 = '2001:db8::25'
const V4 = '192.0.2.25'
const MX = 'mx1.example.com'

const failure = (error = 'ECONNREFUSED'): ConnectOutcome => ({
  ok: false,
  error,
  latencyMs: 12,
  at: 1_700_000_000_000,
})
const success = (): ConnectOutcome => ({ ok: true, latencyMs: 30, at: 1_700_000_000_500 })

// A cache on a fake clock.
function fakeClockCache(opts: Omit<HealthOptions, 'perf'>) {
  const clock = { t: 10_000 }
  const cache = new HealthCache({ ...opts, perf: { now: () => clock.t } })
  const advance = async (ms: number): Promise<void> => {
    clock.t += ms
  }
  return { cache, advance }
}

describe('health', () => {
  describe('record and read back', () => {
    it('a fresh cache knows no failures', () => {
      const { cache } = fakeClockCache({ ttlMs: 60_000, maxEntries: 100 })
      assert.equal(cache.size, 0)
      assert.equal(cache.addressFailed(V6), false)
      assert.equal(cache.familyFailed(MX, 'ipv6'), false)
      assert.equal(cache.lookup(V6), undefined)
    })

    it('a failure marks the address and the (MX host, family) as failed', () => {
      const { cache } = fakeClockCache({ ttlMs: 60_000, maxEntries: 100 })
      const outcome = failure('ETIMEDOUT')
      cache.record(V6, 'ipv6', MX, outcome)
      assert.equal(cache.addressFailed(V6), true)
      assert.equal(cache.familyFailed(MX, 'ipv6'), true)
      assert.deepEqual(cache.lookup(V6), outcome)
      assert.equal(cache.size, 2)
    })

    it('a failure says nothing about the other family, other hosts or other addresses', () => {
      const { cache } = fakeClockCache({ ttlMs: 60_000, maxEntries: 100 })
      cache.record(V6, 'ipv6', MX, failure())
      assert.equal(cache.familyFailed(MX, 'ipv4'), false)
      assert.equal(cache.familyFailed('mx2.example.com', 'ipv6'), false)
      assert.equal(cache.addressFailed('2001:db8::26'), false)
      assert.equal(cache.addressFailed(V4), false)
    })

    it('the MX host name of a family failure is case-insensitive', () => {
      const { cache } = fakeClockCache({ ttlMs: 60_000, maxEntries: 100 })
      cache.record(V6, 'ipv6', 'MX1.Example.COM', failure())
      assert.equal(cache.familyFailed(MX, 'ipv6'), true)
      assert.equal(cache.familyFailed('MX1.EXAMPLE.COM', 'ipv6'), true)
    })

    it('an outcome without an MX host is remembered for the address only', () => {
      const { cache } = fakeClockCache({ ttlMs: 60_000, maxEntries: 100 })
      cache.record(V4, 'ipv4', undefined, failure())
      assert.equal(cache.addressFailed(V4), true)
      assert.equal(cache.familyFailed(MX, 'ipv4'), false)
      assert.equal(cache.size, 1)
    })

    it('an attempt that only lost a race is remembered as slow, never as a failure', () => {
      const { cache } = fakeClockCache({ ttlMs: 60_000, maxEntries: 100 })
      cache.record(V6, 'ipv6', MX, { ok: false, slow: true, latencyMs: 251, at: 0 })
      assert.equal(cache.addressFailed(V6), false)
      assert.equal(cache.familyFailed(MX, 'ipv6'), false)
      assert.equal(cache.addressSlow(V6), true)
      assert.equal(cache.familySlow(MX, 'ipv6'), true)
      assert.equal(cache.lookup(V6)!.error, undefined)
    })

    it('a failure is not slow, and a connect after a slow race clears it', () => {
      const { cache } = fakeClockCache({ ttlMs: 60_000, maxEntries: 100 })
      cache.record(V4, 'ipv4', MX, failure())
      assert.equal(cache.addressSlow(V4), false)
      cache.record(V6, 'ipv6', MX, { ok: false, slow: true, latencyMs: 251, at: 0 })
      cache.record(V6, 'ipv6', MX, success())
      assert.equal(cache.addressSlow(V6), false)
      assert.equal(cache.familySlow(MX, 'ipv6'), false)
    })

    it('a success is remembered but is no failure', () => {
      const { cache } = fakeClockCache({ ttlMs: 60_000, maxEntries: 100 })
      cache.record(V4, 'ipv4', MX, success())
      assert.equal(cache.addressFailed(V4), false)
      assert.equal(cache.familyFailed(MX, 'ipv4'), false)
      assert.equal(cache.lookup(V4)!.ok, true)
    })

    it('a success after a failure clears both the address and the family demotion', () => {
      const { cache } = fakeClockCache({ ttlMs: 60_000, maxEntries: 100 })
      cache.record(V6, 'ipv6', MX, failure())
      cache.record(V6, 'ipv6', MX, success())
      assert.equal(cache.addressFailed(V6), false)
      assert.equal(cache.familyFailed(MX, 'ipv6'), false)
      assert.equal(cache.lookup(V6)!.ok, true)
    })

    it('a failure after a success marks the address failed again (the newest outcome wins)', () => {
      const { cache } = fakeClockCache({ ttlMs: 60_000, maxEntries: 100 })
      cache.record(V6, 'ipv6', MX, success())
      cache.record(V6, 'ipv6', MX, failure('EHOSTUNREACH'))
      assert.equal(cache.addressFailed(V6), true)
      assert.equal(cache.familyFailed(MX, 'ipv6'), true)
      assert.equal(cache.lookup(V6)!.error, 'EHOSTUNREACH')
    })

    it("a success of another address of the same host and family clears the family's demotion", () => {
      const { cache } = fakeClockCache({ ttlMs: 60_000, maxEntries: 100 })
      cache.record(V6, 'ipv6', MX, failure())
      cache.record('2001:db8::26', 'ipv6', MX, success())
      assert.equal(cache.familyFailed(MX, 'ipv6'), false)
      assert.equal(cache.addressFailed(V6), true)
    })

    it('lookup gives back the error text and numbers as recorded, for each of many addresses', () => {
      const { cache } = fakeClockCache({ ttlMs: 60_000, maxEntries: 10_000 })
      const nth = (i: number): string => `2001:db8::${(i + 1).toString(16)}`
      for (let i = 0; i < 2_000; i++) {
        cache.record(nth(i), 'ipv6', `mx${i}.example.com`, {
          ok: false,
          error: i % 3 ? 'ETIMEDOUT' : `421 4.3.2 busy (${i})`,
          latencyMs: i,
          at: 1_700_000_000_000 + i,
        })
      }
      for (let i = 0; i < 2_000; i++) {
        assert.deepEqual(cache.lookup(nth(i)), {
          ok: false,
          error: i % 3 ? 'ETIMEDOUT' : `421 4.3.2 busy (${i})`,
          latencyMs: i,
          at: 1_700_000_000_000 + i,
        })
        assert.equal(cache.familyFailed(`MX${i}.example.com`, 'ipv6'), true)
      }
      assert.equal(cache.size, 4_000)
    })

    it('a slow outcome reads back as slow, with no error', () => {
      const { cache } = fakeClockCache({ ttlMs: 60_000, maxEntries: 100 })
      const slow: ConnectOutcome = { ok: false, slow: true, latencyMs: 251, at: 5 }
      cache.record(V6, 'ipv6', MX, slow)
      assert.deepEqual(cache.lookup(V6), slow)
    })

    it('clear forgets everything', () => {
      const { cache } = fakeClockCache({ ttlMs: 60_000, maxEntries: 100 })
      cache.record(V6, 'ipv6', MX, failure())
      cache.clear()
      assert.equal(cache.size, 0)
      assert.equal(cache.addressFailed(V6), false)
      assert.equal(cache.familyFailed(MX, 'ipv6'), false)
    })

    it('works on the default clock when none is given', () => {
      const cache = new HealthCache({ ttlMs: 60_000, maxEntries: 100 })
      cache.record(V6, 'ipv6', MX, failure())
      assert.equal(cache.addressFailed(V6), true)
      assert.equal(cache.familyFailed(MX, 'ipv6'), true)
    })
  })

  describe('TTL', () => {
    it('a failure demotes until the TTL has passed, and not after', async () => {
      const { cache, advance } = fakeClockCache({ ttlMs: 600_000, maxEntries: 100 })
      cache.record(V6, 'ipv6', MX, failure())
      await advance(599_000)
      assert.equal(cache.addressFailed(V6), true)
      assert.equal(cache.familyFailed(MX, 'ipv6'), true)
      await advance(2_000)
      assert.equal(cache.addressFailed(V6), false)
      assert.equal(cache.familyFailed(MX, 'ipv6'), false)
      assert.equal(cache.lookup(V6), undefined)
      assert.equal(cache.size, 0)
    })

    it('a new outcome restarts the TTL', async () => {
      const { cache, advance } = fakeClockCache({ ttlMs: 1_000, maxEntries: 100 })
      cache.record(V4, 'ipv4', MX, failure())
      await advance(800)
      cache.record(V4, 'ipv4', MX, failure())
      await advance(800)
      assert.equal(cache.addressFailed(V4), true)
      await advance(300)
      assert.equal(cache.addressFailed(V4), false)
    })

    it('a success expires like a failure, leaving nothing behind', async () => {
      const { cache, advance } = fakeClockCache({ ttlMs: 1_000, maxEntries: 100 })
      cache.record(V4, 'ipv4', MX, success())
      await advance(1_001)
      assert.equal(cache.lookup(V4), undefined)
    })

    it('ttlMs 0 remembers nothing', () => {
      const cache = new HealthCache({ ttlMs: 0, maxEntries: 100 })
      cache.record(V6, 'ipv6', MX, failure())
      assert.equal(cache.size, 0)
      assert.equal(cache.addressFailed(V6), false)
      assert.equal(cache.familyFailed(MX, 'ipv6'), false)
      assert.equal(cache.lookup(V6), undefined)
      cache.clear()
    })

    it('ttlMs 0 with a fake clock remembers nothing either, however the clock moves', async () => {
      const { cache, advance } = fakeClockCache({ ttlMs: 0, maxEntries: 100 })
      cache.record(V6, 'ipv6', MX, failure())
      await advance(1)
      assert.equal(cache.addressFailed(V6), false)
      assert.equal(cache.size, 0)
    })

    it('a negative ttlMs remembers nothing (never "forever")', () => {
      const cache = new HealthCache({ ttlMs: -1, maxEntries: 100 })
      cache.record(V6, 'ipv6', MX, failure())
      assert.equal(cache.addressFailed(V6), false)
      assert.equal(cache.size, 0)
    })
  })

  describe('size bound', () => {
    const nth = (i: number): string => `2001:db8::${(i + 1).toString(16)}`

    it('maxEntries 10: 100 distinct addresses leave at most 10 entries', () => {
      const { cache } = fakeClockCache({ ttlMs: 600_000, maxEntries: 10 })
      for (let i = 0; i < 100; i++) cache.record(nth(i), 'ipv6', undefined, failure())
      assert.ok(cache.size <= 10, `size ${cache.size}`)
      assert.equal(cache.addressFailed(nth(99)), true)
      assert.equal(cache.addressFailed(nth(0)), false)
    })

    it('maxEntries 10: 100 distinct addresses of 100 MX hosts leave at most 10 entries', () => {
      const { cache } = fakeClockCache({ ttlMs: 600_000, maxEntries: 10 })
      for (let i = 0; i < 100; i++) cache.record(nth(i), 'ipv6', `mx${i}.example.com`, failure())
      assert.ok(cache.size <= 10, `size ${cache.size}`)
      assert.equal(cache.familyFailed('mx99.example.com', 'ipv6'), true)
      assert.equal(cache.familyFailed('mx0.example.com', 'ipv6'), false)
    })

    it('the least recently used entry goes first: one just read survives', () => {
      const { cache } = fakeClockCache({ ttlMs: 600_000, maxEntries: 10 })
      for (let i = 0; i < 10; i++) cache.record(nth(i), 'ipv6', undefined, failure())
      assert.equal(cache.addressFailed(nth(0)), true)
      cache.record(nth(10), 'ipv6', undefined, failure())
      assert.equal(cache.addressFailed(nth(0)), true)
      assert.equal(cache.addressFailed(nth(1)), false)
      assert.equal(cache.size, 10)
    })
  })
})
