// `haraka-happy-eyeballs status --config DIR` with [redis] on: the fleet's shared state
// summarized (families' health, impaired IPv6 since when, IPv4 by policy until when), as
// text and JSON, from records two "workers" wrote to a real redis-server; Redis away is
// exit 1 naming it; [redis] off without --metrics is a usage error.

import assert from 'node:assert/strict'
import fs from 'node:fs'
import os from 'node:os'
import path from 'node:path'

import { type CliIo, main } from '../lib/cli'
import { type FleetReport, fleetText, summarizeFleet } from '../lib/cli/fleet'
import type { ConnectOutcome } from '../lib/health'
import type { RedisStore } from '../lib/redis-store'
import { SharedState, SharingHealthCache, SharingPolicyMemory } from '../lib/shared-health'
import { SharingEgressMemory } from '../lib/shared-learned'
import { freePort, startRedis, type TestRedis } from './support/harness'
import { openTestStore } from './support/redis-store'

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

const T0 = Date.parse('2026-12-01T10:00:00Z')
const refused = (at: number): ConnectOutcome => ({
  ok: false,
  error: 'connect ECONNREFUSED',
  latencyMs: 1,
  at,
})
const worked = (at: number): ConnectOutcome => ({ ok: true, latencyMs: 2, at })
const iso = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')

describe('fleet status', () => {
  it('summarizes host families, addresses, impaired IPv6 since its first failure, and policy hosts', () => {
    const values = new Map<string, string>([
      [
        'f:mx.a.test|ipv6',
        JSON.stringify({ address: '2001:db8::1', family: 'ipv6', outcome: refused(T0 + 5000), since: T0 }),
      ],
      ['f:mx.a.test|ipv4', JSON.stringify({ address: '192.0.2.1', family: 'ipv4', outcome: worked(T0) })],
      [
        'f:mx.b.test|ipv6',
        JSON.stringify({
          address: '2001:db8::2',
          family: 'ipv6',
          outcome: { ok: false, slow: true, latencyMs: 300, at: T0 },
        }),
      ],
      [
        'a:2001:db8::1',
        JSON.stringify({ address: '2001:db8::1', family: 'ipv6', outcome: refused(T0 + 5000) }),
      ],
      ['a:192.0.2.1', JSON.stringify({ address: '192.0.2.1', family: 'ipv4', outcome: worked(T0) })],
      [
        'p:mx.c.test',
        JSON.stringify({ refusal: 'IPv6 refused by policy at mx.c.test', until: T0 + 86_400_000 }),
      ],
      ['e:mta1.test', JSON.stringify([T0 - 9000, ['mx.b.test', T0, T0], ['mx.d.test', T0 + 1000, 0]])],
      ['e:mta2.test', JSON.stringify([0, ['mx.a.test', T0, T0], ['mx.b.test', T0, T0]])],
      // Evidence older than the window, and evidence before the last IPv6 success: none counts.
      [
        'e:mta3.test',
        JSON.stringify([T0 - 500, ['mx.a.test', T0 - 700_000, T0], ['mx.b.test', T0 - 600, T0]]),
      ],
      ['f:garbage|ipv6', '{nope'],
      ['x:unknown', '1'],
    ])
    const r = summarizeFleet('redis://127.0.0.1:6379', 'he:', values, false, {
      ipv6ImpairedAfter: 2,
      windowMs: 600_000,
      now: T0 + 2000,
    })
    assert.deepEqual(r.egress, [
      {
        host: 'mta1.test',
        ipv6Impaired: false,
        destinations: ['mx.b.test'],
        last: '2026-12-01T10:00:01Z',
        workedAt: '2026-12-01T09:59:51Z',
      },
      {
        host: 'mta2.test',
        ipv6Impaired: true,
        destinations: ['mx.a.test', 'mx.b.test'],
        last: '2026-12-01T10:00:00Z',
      },
      {
        host: 'mta3.test',
        ipv6Impaired: false,
        destinations: [],
        last: '2026-12-01T10:00:00Z',
        workedAt: '2026-12-01T09:59:59Z',
      },
    ])
    assert.deepEqual(r.families, {
      ipv4: { hosts: 1, failingHosts: 0, slowHosts: 0, addresses: 1, failingAddresses: 0 },
      ipv6: { hosts: 2, failingHosts: 1, slowHosts: 1, addresses: 1, failingAddresses: 1 },
    })
    assert.deepEqual(r.impairedIpv6, [
      {
        exchange: 'mx.a.test',
        address: '2001:db8::1',
        error: 'connect ECONNREFUSED',
        since: '2026-12-01T10:00:00Z',
        last: '2026-12-01T10:00:05Z',
      },
    ])
    assert.deepEqual(r.ipv4ByPolicy, [
      {
        exchange: 'mx.c.test',
        refusal: 'IPv6 refused by policy at mx.c.test',
        until: '2026-12-02T10:00:00Z',
      },
    ])
    const text = fleetText(r)
    assert.match(text, /^shared state in redis:\/\/127\.0\.0\.1:6379 \(keys he:\*\)$/m)
    assert.match(text, /^MX hosts failing\s+0\s+1$/m)
    assert.match(text, /^MX hosts slow\s+0\s+1$/m)
    assert.match(
      text,
      /^ {2}mx\.a\.test since 2026-12-01T10:00:00Z \(last 2026-12-01T10:00:05Z: 2001:db8::1 connect ECONNREFUSED\)$/m,
    )
    assert.match(
      text,
      /^IPv6 egress of mta2\.test: impaired \(unanswered at mx\.a\.test, mx\.b\.test; last 2026-12-01T10:00:00Z\)$/m,
    )
    assert.match(text, /^IPv6 egress of mta1\.test: not impaired .*; IPv6 worked 2026-12-01T09:59:51Z$/m)
    assert.match(text, /^ {2}mx\.c\.test until 2026-12-02T10:00:00Z: IPv6 refused by policy at mx\.c\.test$/m)
  })

  describe('over a real redis-server', function () {
    this.timeout(20000)
    let redis: TestRedis
    let dir: string
    before(async () => {
      redis = await startRedis()
      dir = fs.mkdtempSync(path.join(os.tmpdir(), 'he-fleet-'))
    })
    after(async () => {
      await redis?.close()
      fs.rmSync(dir, { recursive: true, force: true })
    })

    function writeIni(ini: string): void {
      fs.writeFileSync(path.join(dir, 'happy_eyeballs.ini'), ini)
    }

    it("status --config reads what two workers shared: IPv6 failing since the first worker's failure", async () => {
      const stores: RedisStore[] = []
      try {
        const workers = [0, 1].map(() => {
          const store = openTestStore(redis.port)
          stores.push(store)
          const shared = new SharedState(store, 'fleet:')
          const health = new SharingHealthCache({ ttlMs: 600_000, maxEntries: 100 })
          const policy = new SharingPolicyMemory({ ttlMs: 86_400_000, maxEntries: 100 })
          const egress = new SharingEgressMemory({
            destinations: 3,
            windowMs: 600_000,
            maxEntries: 100,
            host: 'mta1.test',
          })
          health.shareThrough(shared)
          policy.shareThrough(shared)
          egress.shareThrough(shared)
          return { store, shared, health, policy, egress }
        })
        const end = Date.now() + 10000
        while (!stores.every((s) => s.up) && Date.now() < end) await new Promise((r) => setTimeout(r, 20))
        const now = Date.now()
        const [a, b] = workers
        a.health.record('2001:db8::1', 'ipv6', 'mx.a.test', refused(now - 2000))
        await b.shared.warm({ exchanges: ['mx.a.test'], addresses: ['2001:db8::1'] })
        b.health.record('2001:db8::1', 'ipv6', 'mx.a.test', refused(now - 1000))
        b.health.record('192.0.2.1', 'ipv4', 'mx.a.test', worked(now))
        b.policy.remember('mx.c.test', 'IPv6 refused by policy at mx.c.test', now)
        for (const [w, x] of [
          [a, 'mx1.test'],
          [b, 'mx2.test'],
          [a, 'mx3.test'],
        ] as const) {
          while (stores.some((s) => s.inFlight > 0) && Date.now() < end)
            await new Promise((r) => setTimeout(r, 5))
          await w.shared.warm({ exchanges: [x], addresses: [] })
          w.egress.record({ exchange: x, family: 'ipv6', outcome: 'unanswered', at: now })
          w.egress.record({ exchange: x, family: 'ipv4', outcome: 'connected', at: now })
        }
        while (stores.some((s) => s.inFlight > 0) && Date.now() < end)
          await new Promise((r) => setTimeout(r, 5))

        writeIni(`[redis]\nenabled=true\nhost=127.0.0.1\nport=${redis.port}\nprefix=fleet:\n`)
        const c = capture()
        assert.equal(await main(['status', '--config', dir, '--json'], c.io), 0, c.err())
        const { fleet } = JSON.parse(c.out()) as { fleet: FleetReport }
        assert.equal(fleet.redis, `redis://127.0.0.1:${redis.port}`)
        assert.equal(fleet.families.ipv6.failingHosts, 1)
        assert.equal(fleet.families.ipv4.hosts, 1)
        assert.deepEqual(
          fleet.impairedIpv6.map((h) => [h.exchange, h.since, h.last]),
          [['mx.a.test', iso(now - 2000), iso(now - 1000)]],
        )
        assert.deepEqual(
          fleet.ipv4ByPolicy.map((p) => [p.exchange, p.until]),
          [['mx.c.test', iso(now + 86_400_000)]],
        )
        const text = capture()
        assert.equal(await main(['status', '--config', dir], text.io), 0, text.err())
        assert.match(text.out(), /^MX hosts with impaired IPv6: 1$/m)
        assert.match(text.out(), /^MX hosts on IPv4 by policy: 1$/m)
        assert.deepEqual(
          fleet.egress.map((e) => [e.host, e.ipv6Impaired, e.destinations]),
          [['mta1.test', true, ['mx1.test', 'mx2.test', 'mx3.test']]],
        )
        assert.match(
          text.out(),
          /^IPv6 egress of mta1\.test: impaired \(unanswered at mx1\.test, mx2\.test, mx3\.test;/m,
        )
      } finally {
        for (const s of stores) s.close()
      }
    })

    it('Redis away: exit 1 naming the server; [redis] off and no --metrics: a usage error', async () => {
      const port = await freePort()
      writeIni(`[redis]\nenabled=true\nhost=127.0.0.1\nport=${port}\n`)
      const c = capture()
      assert.equal(await main(['status', '--config', dir, '--timeout', '2000'], c.io), 1)
      assert.match(c.err(), new RegExp(`no answer from redis://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED`))
      writeIni('[redis]\nenabled=false\n')
      const off = capture()
      assert.equal(await main(['status', '--config', dir], off.io), 2)
      assert.match(off.err(), /has no \[redis\] enabled=true: no shared state to read/)
    })
  })
})
