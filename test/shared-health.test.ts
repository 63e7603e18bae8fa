// The shared state in front of the local caches: what one process records reaches another's
// caches through warm (the newest outcome winning, expired ones ignored), writes carry the
// local TTL, bad records are ignored, and a store that cannot answer leaves local state alone.
// Two "workers" over a real redis-server plan the second message with IPv4 first.

import assert from 'node:assert/strict'

import { parseSettings } from '../lib/config'
import { planAddresses } from '../lib/plan'
import { routeDomain } from '../lib/route'
import type { ConnectOutcome } from '../lib/health'
import type { RedisStore } from '../lib/redis-store'
import {
  decodeOutcome,
  decodeRefusal,
  encodeOutcome,
  type KeyValueStore,
  type SharedOutcome,
  SharedState,
  SharingHealthCache,
  SharingPolicyMemory,
  warmRequestOf,
} from '../lib/shared-health'
import { startRedis, type TestRedis } from './support/harness'
import { openTestStore } from './support/redis-store'

/** A store in a Map, with the TTL each key was written with. */
class MapStore implements KeyValueStore {
  readonly values = new Map<string, { value: string; ttlMs: number }>()
  answering = true
  read(keys: string[]): Promise<(string | null)[] | undefined> {
    return Promise.resolve(this.answering ? keys.map((k) => this.values.get(k)?.value ?? null) : undefined)
  }
  write(key: string, value: string, ttlMs: number): void {
    this.values.set(key, { value, ttlMs })
  }
}

const TTL = 600_000
const failed = (at: number, error = 'connect ECONNREFUSED'): ConnectOutcome => ({
  ok: false,
  error,
  latencyMs: 1,
  at,
})
const worked = (at: number): ConnectOutcome => ({ ok: true, latencyMs: 3, at })

function worker(store: KeyValueStore, prefix = 'he:') {
  const shared = new SharedState(store, prefix)
  const health = new SharingHealthCache({ ttlMs: TTL, maxEntries: 100 })
  const policy = new SharingPolicyMemory({ ttlMs: 86_400_000, maxEntries: 100 })
  health.shareThrough(shared)
  policy.shareThrough(shared)
  return { shared, health, policy }
}

const HOSTS = [
  { exchange: 'mx.dead6.test', preference: 10, addresses: ['2001:db8::25', '192.0.2.25'], errors: [] },
]

describe('shared state', () => {
  it("one worker's failure reaches another worker's health cache before it plans", async () => {
    const store = new MapStore()
    const a = worker(store)
    const b = worker(store)
    const now = Date.now()
    a.health.record('2001:db8::25', 'ipv6', 'mx.dead6.test', failed(now))
    assert.equal(b.health.familyFailed('mx.dead6.test', 'ipv6'), false)
    const warmed = await b.shared.warm(warmRequestOf(HOSTS), now)
    // The family's record carries its address: the address record adds nothing newer.
    assert.deepEqual(warmed, { store: 'read', keys: 5, filled: 1 })
    assert.equal(b.health.familyFailed('mx.dead6.test', 'ipv6'), true)
    assert.equal(b.health.addressFailed('2001:db8::25'), true)
    assert.equal(b.health.lookup('2001:db8::25')?.error, 'connect ECONNREFUSED')
    assert.equal(b.health.addressFailed('192.0.2.25'), false)
  })

  it("writes every record with its local cache's TTL, under the prefix", () => {
    const store = new MapStore()
    const a = worker(store, 'fleet1:')
    a.health.record('2001:db8::25', 'ipv6', 'MX.Dead6.test.', failed(1))
    a.policy.remember('MX.dead6.test', 'IPv6 refused by policy', 1000)
    assert.deepEqual(
      [...store.values].map(([k, v]) => [k, v.ttlMs]),
      [
        ['fleet1:a:2001:db8::25', TTL],
        ['fleet1:f:mx.dead6.test|ipv6', TTL],
        ['fleet1:p:mx.dead6.test', 86_400_000],
      ],
    )
    // Compact values: no field names; an address record leaves out the address its key names.
    assert.deepEqual(
      [...store.values.values()].map((v) => v.value),
      [
        '[6,0,1,1,"connect ECONNREFUSED"]',
        '[6,0,1,1,"connect ECONNREFUSED",1,"2001:db8::25"]',
        '[86401000,"IPv6 refused by policy"]',
      ],
    )
  })

  it('compact records read back whole; records of the older object form are still read', () => {
    const slow: SharedOutcome = {
      address: '192.0.2.25',
      family: 'ipv4',
      outcome: { ok: false, slow: true, latencyMs: 1000.04, at: 5 },
    }
    assert.deepEqual(decodeOutcome(encodeOutcome(slow)), {
      ...slow,
      outcome: { ...slow.outcome, latencyMs: 1000 },
    })
    const ok: SharedOutcome = {
      address: '2001:db8::25',
      family: 'ipv6',
      outcome: { ok: true, latencyMs: 3, at: 7 },
    }
    assert.equal(encodeOutcome(ok, false), '[6,1,3,7]')
    assert.deepEqual(decodeOutcome(encodeOutcome(ok, false), '2001:db8::25'), ok)
    assert.equal(decodeOutcome(encodeOutcome(ok, false)), undefined, 'no address in the value nor the key')
    const failedSince: SharedOutcome = { ...ok, outcome: failed(9), since: 4 }
    assert.deepEqual(decodeOutcome(encodeOutcome(failedSince)), failedSince)
    // As the first version wrote them.
    assert.deepEqual(decodeOutcome(JSON.stringify(failedSince)), failedSince)
    assert.deepEqual(decodeRefusal(JSON.stringify({ refusal: 'r', until: 9 })), { refusal: 'r', until: 9 })
    assert.deepEqual(decodeRefusal('[9,"r"]'), { refusal: 'r', until: 9 })
    assert.equal(decodeOutcome('[5,0,1,1]', '::1'), undefined)
    assert.equal(decodeRefusal('["r",9]'), undefined)
  })

  it('the newest outcome wins: an older shared failure does not undo a newer local success', async () => {
    const store = new MapStore()
    const a = worker(store)
    const b = worker(store)
    const now = Date.now()
    a.health.record('2001:db8::25', 'ipv6', 'mx.dead6.test', failed(now - 1000))
    b.health.record('2001:db8::25', 'ipv6', 'mx.dead6.test', worked(now))
    // b's success went to the store too, so read a's again in its place.
    a.health.record('2001:db8::25', 'ipv6', 'mx.dead6.test', failed(now - 1000))
    const warmed = await b.shared.warm(warmRequestOf(HOSTS), now)
    assert.equal(warmed.filled, 0)
    assert.equal(b.health.addressFailed('2001:db8::25'), false)
    assert.equal(b.health.familyFailed('mx.dead6.test', 'ipv6'), false)
  })

  it('an outcome older than the TTL and a refusal past its end are not taken', async () => {
    const store = new MapStore()
    const a = worker(store)
    const b = worker(store)
    const now = Date.now()
    a.health.record('2001:db8::25', 'ipv6', 'mx.dead6.test', failed(now - TTL - 1))
    a.policy.remember('mx.dead6.test', 'IPv6 refused by policy', now - 86_400_000 - 1)
    assert.equal((await b.shared.warm(warmRequestOf(HOSTS), now)).filled, 0)
    assert.equal(b.health.size, 0)
    assert.equal(b.policy.ipv6Refused('mx.dead6.test'), undefined)
  })

  it('a policy refusal reaches the other worker with the same end', async () => {
    const store = new MapStore()
    const a = worker(store)
    const b = worker(store)
    const now = Date.now()
    a.policy.remember('mx.dead6.test', 'IPv6 refused by policy at mx.dead6.test', now)
    await b.shared.warm(warmRequestOf(HOSTS), now)
    assert.deepEqual(b.policy.ipv6Refused('MX.dead6.test'), {
      refusal: 'IPv6 refused by policy at mx.dead6.test',
      until: now + 86_400_000,
    })
  })

  it('garbage and records of an unknown shape under our keys are ignored', async () => {
    const store = new MapStore()
    const b = worker(store)
    store.write('he:a:2001:db8::25', '{not json', TTL)
    store.write('he:f:mx.dead6.test|ipv6', JSON.stringify({ address: 1, outcome: {} }), TTL)
    store.write('he:p:mx.dead6.test', JSON.stringify({ refusal: 5 }), TTL)
    assert.deepEqual(await b.shared.warm(warmRequestOf(HOSTS)), { store: 'read', keys: 5, filled: 0 })
    assert.equal(b.health.size, 0)
  })

  it('a store that cannot answer leaves the local caches as they were', async () => {
    const store = new MapStore()
    const a = worker(store)
    const b = worker(store)
    a.health.record('2001:db8::25', 'ipv6', 'mx.dead6.test', failed(Date.now()))
    store.answering = false
    assert.deepEqual(await b.shared.warm(warmRequestOf(HOSTS)), { store: 'unavailable', keys: 5, filled: 0 })
    assert.equal(b.health.size, 0)
  })

  it('a kind with the tag of another is refused; a kind with TTL 0 shares nothing', async () => {
    const store = new MapStore()
    const shared = new SharedState(store, 'he:')
    const health = new SharingHealthCache({ ttlMs: 0, maxEntries: 10 })
    health.shareThrough(shared)
    assert.throws(() => new SharingHealthCache({ ttlMs: 1, maxEntries: 10 }).shareThrough(shared), /tagged f/)
    health.record('2001:db8::25', 'ipv6', 'mx.dead6.test', failed(1))
    assert.equal(store.values.size, 0)
    assert.deepEqual(await shared.warm(warmRequestOf(HOSTS)), { store: 'read', keys: 0, filled: 0 })
  })

  it('routeDomain warms after DNS and before planning: the plan starts with IPv4; no MX host, no read', async () => {
    const store = new MapStore()
    const a = worker(store)
    const b = worker(store)
    a.health.record('2001:db8::25', 'ipv6', 'mx.dead6.test', failed(Date.now()))
    const reads: string[][] = []
    const counting: KeyValueStore = {
      read: (keys) => (reads.push(keys), store.read(keys)),
      write: (k, v, t) => store.write(k, v, t),
    }
    const shared = new SharedState(counting, 'he:')
    b.health.shareThrough(shared)
    const enotfound = Object.assign(new Error('queryMx ENOTFOUND'), { code: 'ENOTFOUND' })
    const dns = {
      resolveMx: async (name: string) => {
        if (name === 'dead6.test') return [{ exchange: 'mx.dead6.test', priority: 10 }]
        throw enotfound
      },
      resolve6: async () => ['2001:db8::25'],
      resolve4: async () => ['192.0.2.25'],
    }
    const { settings } = parseSettings({
      filter: { allow: ['2001:db8::/32', '192.0.2.0/24'] },
      race: { enabled: 'false' },
    })
    const deps = { settings, dns, health: b.health, shared }
    const record = await routeDomain('dead6.test', deps)
    assert.deepEqual(record.shared, { store: 'read', keys: 4, filled: 1 })
    assert.equal(record.decision.action, 'deliver')
    if (record.decision.action === 'deliver')
      assert.deepEqual(
        record.decision.targets.map((t) => t.address),
        ['192.0.2.25', '2001:db8::25'],
      )
    assert.deepEqual(reads, [
      ['he:f:mx.dead6.test|ipv6', 'he:f:mx.dead6.test|ipv4', 'he:a:2001:db8::25', 'he:a:192.0.2.25'].slice(
        0,
        4,
      ),
    ])
    reads.length = 0
    const nx = await routeDomain('nx.test', deps)
    assert.equal(nx.decision.action, 'bounce')
    assert.equal(nx.shared, undefined)
    assert.deepEqual(reads, [])
  })

  describe('over a real redis-server', function () {
    this.timeout(20000)
    let redis: TestRedis
    const stores: RedisStore[] = []
    before(async () => {
      redis = await startRedis()
    })
    after(async () => {
      for (const s of stores) s.close()
      await redis?.close()
    })

    function redisWorker() {
      const store = openTestStore(redis.port)
      stores.push(store)
      return { store, ...worker(store) }
    }

    it('the second worker plans IPv4 first for a host whose IPv6 the first saw fail; keys expire with the TTL', async () => {
      const a = redisWorker()
      const b = redisWorker()
      const end = Date.now() + 10000
      while (!(a.store.up && b.store.up) && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
      const plan = () =>
        planAddresses('dead6.test', HOSTS, {
          policy: parseSettings({ filter: { allow: ['2001:db8::/32', '192.0.2.0/24'] } }).settings.filter
            .policy,
          prefer: 'ipv6',
          firstFamilyCount: 1,
          maxAddresses: 16,
          health: b.health,
          family: { ipv4Only: [], ipv6Only: [], preferIpv4: [], preferIpv6: [] },
        }).kept.map((c) => c.address)
      assert.deepEqual(plan(), ['2001:db8::25', '192.0.2.25'])
      a.health.record('2001:db8::25', 'ipv6', 'mx.dead6.test', failed(Date.now()))
      while (a.store.inFlight > 0 && Date.now() < end) await new Promise((r) => setTimeout(r, 5))
      assert.equal((await b.shared.warm(warmRequestOf(HOSTS))).filled, 1)
      assert.deepEqual(plan(), ['192.0.2.25', '2001:db8::25'])
      const ttl = Number(/:(-?\d+)/.exec(await redis.command(['PTTL', 'he:f:mx.dead6.test|ipv6']))?.[1])
      assert.ok(ttl > 0 && ttl <= TTL, `PTTL ${ttl}`)
    })
  })
})
