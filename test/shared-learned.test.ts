// Learnt connect times and IPv6 egress evidence shared through the store: what one worker
// measured gives another its attempt delay, the egress evidence of several workers of one host
// adds up to "impaired" and an IPv6 success in one clears it in the others; another host's
// evidence is not taken; the happy path writes nothing for egress; garbage is ignored. Two
// workers over one real redis-server at the end.

import assert from 'node:assert/strict'

import { learnedDelay } from '../lib/connect-times'
import type { RedisStore } from '../lib/redis-store'
import { type KeyValueStore, SharedState } from '../lib/shared-health'
import {
  decodeEstimate,
  decodeEvidence,
  encodeEvidence,
  SharingConnectTimes,
  SharingEgressMemory,
} from '../lib/shared-learned'
import { startRedis, type TestRedis } from './support/harness'
import { openTestStore } from './support/redis-store'

class MapStore implements KeyValueStore {
  readonly values = new Map<string, { value: string; ttlMs: number }>()
  read(keys: string[]): Promise<(string | null)[] | undefined> {
    return Promise.resolve(keys.map((k) => this.values.get(k)?.value ?? null))
  }
  write(key: string, value: string, ttlMs: number): void {
    this.values.set(key, { value, ttlMs })
  }
}

const TTL = 600_000
const WINDOW = 300_000
const BOUNDS = { minMs: 100, maxMs: 250 }

function worker(store: KeyValueStore, host = 'mta1.test') {
  const shared = new SharedState(store, 'he:')
  const times = new SharingConnectTimes({ ttlMs: TTL, maxEntries: 100 })
  const egress = new SharingEgressMemory({ destinations: 3, windowMs: WINDOW, maxEntries: 100, host })
  times.shareThrough(shared)
  egress.shareThrough(shared)
  return { shared, times, egress }
}

const request = (...exchanges: string[]) => ({ exchanges, addresses: [] })
const blackHoled = (w: ReturnType<typeof worker>, exchange: string, at: number) => {
  w.egress.record({ exchange, family: 'ipv6', outcome: 'unanswered', at })
  w.egress.record({ exchange, family: 'ipv4', outcome: 'connected', at })
}

describe('shared learnt state', () => {
  it("an MX host's connect time measured by one worker sets the other's attempt delay; the host-wide estimate stays local", async () => {
    const store = new MapStore()
    const a = worker(store)
    const b = worker(store)
    const now = Date.now()
    for (let i = 0; i < 4; i++)
      a.times.record({ exchange: 'MX.Slow.test.', family: 'ipv6', connectMs: 30, at: now })
    assert.equal(store.values.get('he:t:mx.slow.test|ipv6')?.ttlMs, TTL)
    assert.equal(learnedDelay(b.times.read('mx.slow.test', 'ipv6'), BOUNDS), 250, 'nothing known yet')
    const warmed = await b.shared.warm(request('mx.slow.test'), now)
    assert.equal(warmed.filled, 1)
    const estimate = b.times.read('mx.slow.test', 'ipv6')
    assert.equal(estimate?.of, 'mx')
    assert.equal(estimate?.samples, 4)
    assert.equal(learnedDelay(estimate, BOUNDS), learnedDelay(a.times.read('mx.slow.test', 'ipv6'), BOUNDS))
    assert.equal(b.times.read('other.test', 'ipv6'), undefined, "a's host-wide estimate is not b's")
    assert.equal(b.times.knows('mx.slow.test'), true)
  })

  it('the newest estimate wins and one older than the TTL is not taken', async () => {
    const store = new MapStore()
    const a = worker(store)
    const b = worker(store)
    const now = Date.now()
    a.times.record({ exchange: 'mx.test', family: 'ipv4', connectMs: 200, at: now - 1000 })
    b.times.record({ exchange: 'mx.test', family: 'ipv4', connectMs: 5, at: now })
    // b's own write is the newer: store holds it; a takes it, b keeps its own.
    assert.equal((await a.shared.warm(request('mx.test'), now)).filled, 1)
    assert.equal(a.times.read('mx.test', 'ipv4')?.srttMs, 5)
    assert.equal((await b.shared.warm(request('mx.test'), now)).filled, 0)
    const c = worker(store)
    assert.equal((await c.shared.warm(request('mx.test'), now + TTL)).filled, 0)
    assert.equal(c.times.read('mx.test', 'ipv4'), undefined)
  })

  it("three workers' evidence at three MX hosts marks this host's IPv6 egress impaired in a fourth", async () => {
    const store = new MapStore()
    const workers = [worker(store), worker(store), worker(store), worker(store)]
    const now = Date.now()
    for (const [i, x] of ['mx1.a.test', 'mx2.b.test', 'mx3.c.test'].entries()) {
      await workers[i].shared.warm(request(x), now)
      blackHoled(workers[i], x, now)
      assert.equal(workers[i].egress.read(now).ipv6Impaired, i === 2, `worker ${i} after ${x}`)
    }
    const d = workers[3]
    assert.equal(d.egress.read(now).ipv6Impaired, false)
    assert.equal((await d.shared.warm(request('new.test'), now)).filled, 1)
    const state = d.egress.read(now)
    assert.equal(state.ipv6Impaired, true)
    assert.deepEqual(state.destinations.sort(), ['mx1.a.test', 'mx2.b.test', 'mx3.c.test'])
    assert.equal(store.values.get('he:e:mta1.test')?.ttlMs, WINDOW)
  })

  it('an IPv6 success in one worker clears the impaired state in the others; another host keeps its own', async () => {
    const store = new MapStore()
    const a = worker(store)
    const b = worker(store)
    const elsewhere = worker(store, 'mta2.test')
    const now = Date.now()
    for (const x of ['mx1.test', 'mx2.test', 'mx3.test']) blackHoled(a, x, now)
    await b.shared.warm(request('x.test'), now)
    await elsewhere.shared.warm(request('x.test'), now)
    assert.equal(b.egress.read(now).ipv6Impaired, true)
    assert.equal(elsewhere.egress.read(now).ipv6Impaired, false, "mta1's egress is not mta2's")
    a.egress.record({ exchange: 'mx9.test', family: 'ipv6', outcome: 'connected', at: now + 10 })
    assert.equal(a.egress.read(now + 10).ipv6Impaired, false)
    assert.equal((await b.shared.warm(request('x.test'), now + 20)).filled, 1)
    assert.equal(b.egress.read(now + 20).ipv6Impaired, false)
    assert.deepEqual(b.egress.evidenceOf().hosts, [])
  })

  it('the happy path writes no egress record; evidence older than the window is not taken', async () => {
    const store = new MapStore()
    const a = worker(store)
    const now = Date.now()
    a.egress.record({ exchange: 'mx.test', family: 'ipv6', outcome: 'connected', at: now })
    a.egress.record({ exchange: 'v4only.test', family: 'ipv4', outcome: 'connected', at: now })
    assert.equal(store.values.has('he:e:mta1.test'), false)
    for (const x of ['mx1.test', 'mx2.test', 'mx3.test']) blackHoled(a, x, now)
    const b = worker(store)
    await b.shared.warm(request('x.test'), now + WINDOW)
    assert.equal(b.egress.read(now + WINDOW).ipv6Impaired, false)
    assert.deepEqual(b.egress.evidenceOf().hosts, [])
  })

  it('records of another shape under these keys are ignored', async () => {
    assert.equal(decodeEstimate('{"srttMs":3}'), undefined)
    assert.equal(decodeEstimate('[1,2,0,5]'), undefined)
    assert.equal(decodeEvidence('{"hosts":[]}'), undefined)
    assert.deepEqual(decodeEvidence('[0,["mx.test",5,"x"],7]'), {
      hosts: [['mx.test', { v6UnansweredAt: 5 }]],
    })
    assert.deepEqual(decodeEvidence(encodeEvidence({ clearedAt: 9, hosts: [['m', { v4ConnectedAt: 3 }]] })), {
      clearedAt: 9,
      hosts: [['m', { v4ConnectedAt: 3 }]],
    })
    const store = new MapStore()
    store.values.set('he:t:mx.test|ipv6', { value: 'not json', ttlMs: 1 })
    store.values.set('he:e:mta1.test', { value: '{"a":1}', ttlMs: 1 })
    const b = worker(store)
    assert.equal((await b.shared.warm(request('mx.test'))).filled, 0)
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
    const settled = async (...ws: Array<{ store: RedisStore }>) => {
      const end = Date.now() + 10000
      while (ws.some((w) => !w.store.up || w.store.inFlight > 0) && Date.now() < end)
        await new Promise((r) => setTimeout(r, 5))
    }

    it("the second worker takes the first's learnt delay and impaired egress; keys carry the TTLs", async () => {
      const a = redisWorker()
      const b = redisWorker()
      await settled(a, b)
      const now = Date.now()
      a.times.record({ exchange: 'mx.rtt.test', family: 'ipv6', connectMs: 20, at: now })
      for (const x of ['mx1.test', 'mx2.test', 'mx3.test']) blackHoled(a, x, now)
      await settled(a)
      const warmed = await b.shared.warm(request('mx.rtt.test'), now)
      assert.equal(warmed.store, 'read')
      assert.equal(warmed.filled, 2)
      assert.equal(learnedDelay(b.times.read('mx.rtt.test', 'ipv6'), BOUNDS), 100)
      assert.equal(b.egress.read(now).ipv6Impaired, true)
      const pttl = async (key: string) => Number(/:(-?\d+)/.exec(await redis.command(['PTTL', key]))?.[1])
      const t = await pttl('he:t:mx.rtt.test|ipv6')
      const e = await pttl('he:e:mta1.test')
      assert.ok(t > WINDOW && t <= TTL, `PTTL t ${t}`)
      assert.ok(e > 0 && e <= WINDOW, `PTTL e ${e}`)
    })
  })
})
