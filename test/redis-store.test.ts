// The Redis connection of the shared state against a real redis-server on loopback: reads
// and writes with TTLs, haraka-plugin-redis's redis.ini merge, Redis away at start, stopped
// and started again, paused (slow) — one log line each way, bounded pending writes.

import assert from 'node:assert/strict'

import { describeEndpoint, redisClientOptions, RedisStore, type RedisStoreOptions } from '../lib/redis-store'
import { freePort, startRedis, type TestRedis } from './support/harness'
import { openTestStore } from './support/redis-store'

const poll = async (check: () => boolean | Promise<boolean>, what: string, ms = 10000): Promise<void> => {
  const end = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`not ${what} within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

describe('redis store', function () {
  this.timeout(30000)
  let redis: TestRedis
  const stores: RedisStore[] = []
  let lines: string[]
  let errors: number

  before(async () => {
    redis = await startRedis()
  })
  after(async () => {
    await redis?.close()
  })
  beforeEach(async () => {
    lines = []
    errors = 0
    if (!redis.running) await redis.start()
    await redis.command(['FLUSHALL'])
  })
  afterEach(() => {
    for (const s of stores.splice(0)) s.close()
  })

  function open(port = redis.port, over: Partial<RedisStoreOptions> = {}): RedisStore {
    const store = openTestStore(port, {
      timeoutMs: 200,
      log: (level, msg) => lines.push(`${level} ${msg}`),
      onError: () => errors++,
      ...over,
    })
    stores.push(store)
    return store
  }

  it("merges [redis] over redis.ini's [server] as haraka-plugin-redis does, and bounds the client", () => {
    const ini = { server: { host: '10.0.0.9', port: '6380' }, opts: { password: 'fromini' } }
    const fromIni = redisClientOptions({ port: 0, db: 0 }, ini, 64)
    assert.equal(fromIni.socket.host, '10.0.0.9')
    assert.equal(fromIni.socket.port, '6380')
    assert.equal(fromIni.password, 'fromini')
    assert.equal(fromIni.disableOfflineQueue, true)
    assert.equal(fromIni.commandsQueueMaxLength, 64)
    const ours = redisClientOptions({ host: '127.0.0.2', port: 7000, db: 3, password: 'p' }, ini, 64)
    assert.equal(ours.socket.host, '127.0.0.2')
    assert.equal(ours.socket.port, 7000)
    assert.equal(ours.database, 3)
    assert.equal(ours.password, 'p')
    assert.equal(describeEndpoint(ours), 'redis://127.0.0.2:7000/3')
    const none = redisClientOptions({ port: 0, db: 0 }, undefined, 64)
    assert.equal(describeEndpoint(none), 'redis://127.0.0.1:6379')
  })

  it('writes with a TTL and reads back, absent keys as null', async () => {
    const store = open()
    await poll(() => store.up, 'connected')
    store.write('t:a', 'one', 60000)
    await poll(() => store.inFlight === 0, 'written')
    assert.deepEqual(await store.read(['t:a', 't:none']), ['one', null])
    const ttl = Number(/:(-?\d+)/.exec(await redis.command(['PTTL', 't:a']))?.[1])
    assert.ok(ttl > 0 && ttl <= 60000, `PTTL ${ttl}`)
    assert.deepEqual(lines, [`info sharing state through redis://127.0.0.1:${redis.port}`])
  })

  it('Redis away at start: reads give nothing at once, one line; its arrival is one line', async () => {
    const port = await freePort()
    const store = open(port)
    await poll(() => lines.length > 0, 'logged')
    for (let i = 0; i < 5; i++) assert.equal(await store.read(['k']), undefined)
    store.write('k', 'v', 1000)
    assert.equal(store.inFlight, 0)
    const later = await startRedis({ port })
    try {
      await poll(() => store.up, 'connected')
      assert.equal(lines.length, 2, lines.join('\n'))
      assert.match(
        lines[0],
        new RegExp(
          `^warn redis://127\\.0\\.0\\.1:${port} unavailable \\(.*ECONNREFUSED.*\\): delivering from this process's state until it is back$`,
        ),
      )
      assert.equal(lines[1], `info redis://127.0.0.1:${port} is back: sharing state again`)
      assert.ok(errors >= 1)
      assert.deepEqual(await store.read(['k']), [null])
    } finally {
      await later.close()
    }
  })

  it('Redis stopped and started again: one outage line, one recovery line, nothing queued', async () => {
    const store = open()
    await poll(() => store.up, 'connected')
    lines.length = 0
    await redis.stop()
    await poll(() => !store.up, 'away')
    for (let i = 0; i < 20; i++) {
      store.write(`k${i}`, 'v', 60000)
      assert.equal(await store.read([`k${i}`]), undefined)
    }
    assert.equal(store.inFlight, 0)
    await redis.start()
    await poll(() => store.up, 'back')
    assert.equal(lines.length, 2, lines.join('\n'))
    assert.match(
      lines[0],
      /^warn redis:\/\/127\.0\.0\.1:\d+ unavailable \(.+\): delivering from this process's state/,
    )
    assert.match(lines[1], /^info redis:\/\/127\.0\.0\.1:\d+ is back: sharing state again$/)
    // Nothing written while it was away arrives late.
    assert.match(await redis.command(['DBSIZE']), /^:0\r\n$/)
  })

  it('a paused Redis: reads give up after timeout_ms, writes beyond the bound are dropped, one line each way', async () => {
    const store = open(redis.port, { timeoutMs: 20, maxPending: 3, slowReads: 3 })
    await poll(() => store.up, 'connected')
    lines.length = 0
    await redis.command(['CLIENT', 'PAUSE', '1500', 'ALL'])
    for (let i = 0; i < 10; i++) store.write(`w${i}`, 'v', 60000)
    assert.equal(store.inFlight, 3)
    for (let i = 0; i < 6; i++) assert.equal(await store.read(['w0']), undefined)
    assert.ok(errors >= 6, `${errors} errors`)
    assert.equal(lines.length, 1, lines.join('\n'))
    assert.match(lines[0], /unavailable \(no answer within 20 ms, 3 times in a row\)/)
    await poll(async () => (await store.read(['w0'])) !== undefined, 'answering again')
    assert.equal(lines.length, 2, lines.join('\n'))
    assert.match(lines[1], /is back: sharing state again$/)
    await poll(() => store.inFlight === 0, 'writes done')
    assert.match(await redis.command(['DBSIZE']), /^:3\r\n$/)
  })
})
