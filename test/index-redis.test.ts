// The Haraka face with [redis]: the built plugin connects to a real redis-server on loopback,
// warms each message's records before planning (the delivery record says so), keeps its
// connection across a reload that changes nothing, closes it when [redis] is turned off, and
// routes from local state while Redis is away.

import assert from 'node:assert/strict'

import fixtures, { type DnsServer } from 'haraka-test-fixtures'

import { makeHmail, makePlugin, type PluginHandle, stateOf } from './support/plugin'
import { startRedis, type TestRedis } from './support/harness'
import type { DeliveryRecord } from '../lib/delivery'

type Ini = Record<string, Record<string, string | string[]>>

const until = async (check: () => boolean, what: string): Promise<void> => {
  const end = Date.now() + 10000
  while (!check()) {
    if (Date.now() > end) throw new Error(`not ${what} within 10 s`)
    await new Promise((resolve) => setTimeout(resolve, 20))
  }
}

describe('get_mx hook with [redis] against a real redis-server', function () {
  this.timeout(20000)
  let dns: DnsServer
  let redis: TestRedis
  let plugin: PluginHandle
  let ini: Ini
  let reload: () => void
  const lines: string[] = []

  before(async () => {
    dns = await fixtures.dns.start({
      'dual.test': { mx: [{ preference: 10, exchange: 'mx.dual.test' }] },
      'mx.dual.test': { aaaa: ['::1'], a: ['127.0.0.2'] },
    })
    redis = await startRedis()
  })
  after(async () => {
    if (plugin) plugin.shutdown()
    await dns?.close()
    await redis?.close()
  })

  function load(redisSection: Record<string, string>): void {
    ini = {
      dns: { servers: `127.0.0.1:${dns.port}`, timeout_ms: '300' },
      filter: { allow: ['127.0.0.0/8', '::1/128'] },
      race: { enabled: 'false' },
      redis: redisSection,
    }
    plugin = makePlugin({ register: false })
    plugin.config.get = (name: string, _type: unknown, cb?: () => void) => {
      if (name !== 'happy_eyeballs.ini') return {}
      if (cb) reload = cb
      return ini
    }
    for (const level of ['loginfo', 'logwarn', 'logerror'] as const)
      plugin[level] = (msg: unknown) => void lines.push(`${level} ${String(msg)}`)
    plugin.register()
  }

  function route(domain: string): Promise<DeliveryRecord> {
    const hmail = makeHmail(domain)
    return new Promise((resolve) => {
      plugin.route_mx(
        () => setImmediate(() => resolve(hmail.notes.happy_eyeballs as DeliveryRecord)),
        hmail,
        domain,
      )
    })
  }

  it('warms before planning, keeps the connection over an unchanged reload, closes it when turned off', async () => {
    load({ enabled: 'true', host: '127.0.0.1', port: String(redis.port), prefix: 'idx:' })
    const first = stateOf(plugin).redis
    assert.ok(first)
    await until(() => first.store.up, 'connected')
    assert.ok(lines.includes(`loginfo happy-eyeballs: sharing state through redis://127.0.0.1:${redis.port}`))

    // What another worker learned: ::1 of mx.dual.test refused.
    const outcome = {
      address: '::1',
      family: 'ipv6',
      outcome: { ok: false, error: 'connect ECONNREFUSED', latencyMs: 1, at: Date.now() },
    }
    await redis.command(['SET', 'idx:f:mx.dual.test|ipv6', JSON.stringify(outcome), 'PX', '60000'])
    const record = await route('dual.test')
    // One MX host, two addresses: its two families, its addresses, its policy refusal, its
    // two learnt connect times, and this host's egress evidence.
    assert.deepEqual(record.shared, { store: 'read', keys: 8, filled: 1 })
    assert.equal(record.decision.action, 'deliver')
    if (record.decision.action === 'deliver')
      assert.deepEqual(
        record.decision.targets.map((t) => t.address),
        ['127.0.0.2', '::1'],
      )

    reload()
    assert.equal(stateOf(plugin).redis, first, 'the same connection after a reload that changes nothing')

    ini = { ...ini, redis: { enabled: 'false' } }
    reload()
    assert.equal(stateOf(plugin).redis, undefined)
    assert.equal(first.store.up, false, 'the old connection is closed')
    const local = await route('dual.test')
    assert.equal(local.shared, undefined)
  })

  it('Redis away: each message is routed from local state at once, and the record says so', async () => {
    await redis.stop()
    try {
      load({ enabled: 'true', host: '127.0.0.1', port: String(redis.port) })
      const record = await route('dual.test')
      assert.deepEqual(record.shared, { store: 'unavailable', keys: 8, filled: 0 })
      assert.equal(record.decision.action, 'deliver')
    } finally {
      plugin.shutdown()
      await redis.start()
    }
  })
})
