import assert from 'node:assert/strict'

import FakeTimers, { type Clock } from '@sinonjs/fake-timers'

import { parseSettings, type Settings } from '../lib/config'
import { ConnectTimes } from '../lib/connect-times'
import type { HostFamilies } from '../lib/connectivity'
import { EgressMemory } from '../lib/egress'
import { HealthCache } from '../lib/health'
import type { Learned } from '../lib/learned'
import { planAddresses } from '../lib/plan'
import { planningOptions, queryPlanOf } from '../lib/planning'
import type { AttemptRecord, RaceResult, RaceSocket, RaceTarget } from '../lib/race'
import type { DnsClient, Resolution, ResolveOptions } from '../lib/resolve'
import { type DomainWatch, limiter, type WatchConfig, type WatchDeps, Watcher } from '../lib/watch'

const MX = 'mx.watched.test'
const settingsWith = (ini: Record<string, Record<string, unknown>> = {}): Settings =>
  parseSettings({ filter: { allow: ['127.0.0.0/8', '::1/128'] }, ...ini }).settings

const hosts = (...addresses: string[]): Resolution => ({
  kind: 'hosts',
  domain: 'watched.test',
  implicit: false,
  hosts: [{ exchange: MX, preference: 10, addresses, errors: [] }],
})

const noDns: DnsClient = {
  resolveMx: () => Promise.reject(new Error('no DNS in this test')),
  resolve4: () => Promise.reject(new Error('no DNS in this test')),
  resolve6: () => Promise.reject(new Error('no DNS in this test')),
}

type Answer = Pick<AttemptRecord, 'outcome' | 'error' | 'code' | 'greeting' | 'replyCode'> & { ms?: number }

/** A race of one as probeGreeting reports it. */
function raceOf(target: RaceTarget, answer: Answer): RaceResult<RaceSocket> {
  const { ms = 5, ...rest } = answer
  const attempt: AttemptRecord = { target, startMs: 0, endMs: ms, ...rest }
  return {
    attempts: [attempt],
    elapsedMs: ms,
    untried: [],
    ...(answer.outcome === 'connected' ? { winner: { index: 0, target, socket: {} as RaceSocket } } : {}),
  }
}

const GREETED: Answer = { outcome: 'connected', greeting: '220 mx ESMTP', replyCode: 220 }
const REFUSED: Answer = { outcome: 'failed', error: 'connect ECONNREFUSED ::1:25', code: 'ECONNREFUSED' }

interface Rig {
  watcher: Watcher
  health: HealthCache
  probed: RaceTarget[]
  results: DomainWatch[]
  logs: string[]
}

function rig(
  answers: (t: RaceTarget) => Answer | Promise<Answer>,
  opts: { config?: Partial<WatchConfig>; resolve?: WatchDeps['resolve']; settings?: Settings } = {},
): Rig {
  const health = new HealthCache({ ttlMs: 600_000, maxEntries: 100 })
  const probed: RaceTarget[] = []
  const results: DomainWatch[] = []
  const logs: string[] = []
  const settings = opts.settings ?? settingsWith()
  const watcher = new Watcher(
    { domains: ['watched.test'], intervalMs: 60_000, concurrency: 4, timeoutMs: 1_000, ...opts.config },
    {
      settings: () => settings,
      dns: () => noDns,
      health: () => health,
      onResult: (r) => results.push(r),
      log: (level, msg) => logs.push(`${level}: ${msg}`),
      resolve: opts.resolve ?? (() => Promise.resolve(hosts('::1', '127.0.0.1', 'fe80::1'))),
      probe: async (t) => {
        probed.push(t)
        return raceOf(t, await answers(t))
      },
      now: () => 1_700_000_000_000,
    },
  )
  return { watcher, health, probed, results, logs }
}

describe('watch', () => {
  describe('a round', () => {
    it('probes every planned address at the configured port, never a filtered one', async () => {
      const r = rig(() => GREETED, { settings: settingsWith({ main: { port: '2525' } }) })
      await r.watcher.round()
      assert.deepEqual(r.probed.map((t) => `${t.address}:${t.port}`).sort(), ['127.0.0.1:2525', '::1:2525'])
    })

    it('feeds the health cache: a refused IPv6 demotes the MX host family, a later greeting clears it', async () => {
      let v6: Answer = REFUSED
      const r = rig((t) => (t.family === 'ipv6' ? v6 : GREETED))
      const [first] = await r.watcher.round()
      assert.equal(r.health.familyFailed(MX, 'ipv6'), true)
      assert.equal(r.health.addressFailed('::1'), true)
      assert.equal(r.health.familyFailed(MX, 'ipv4'), false)
      assert.deepEqual(first.families, { ipv6: { up: false }, ipv4: { up: true, connectMs: 5 } })
      assert.deepEqual(
        first.probes.map((p) => [p.address, p.outcome, p.error]),
        [
          ['::1', 'refused', 'connect ECONNREFUSED ::1:25'],
          ['127.0.0.1', 'connected', undefined],
        ],
      )
      assert.ok(
        r.logs.includes('warn: watch watched.test: ipv6 down (::1 connect ECONNREFUSED ::1:25)'),
        r.logs.join('\n'),
      )

      v6 = GREETED
      const [second] = await r.watcher.round()
      assert.equal(r.health.familyFailed(MX, 'ipv6'), false)
      assert.deepEqual(second.families.ipv6, { up: true, connectMs: 5 })
      assert.ok(r.logs.includes('info: watch watched.test: ipv6 up again'), r.logs.join('\n'))
    })

    it('names each outcome as the metrics do: greeting refused, timed out, unreachable', async () => {
      const answers: Record<string, Answer> = {
        '::1': {
          outcome: 'failed',
          error: 'greeting 421 4.7.0 busy',
          greeting: '421 4.7.0 busy',
          replyCode: 421,
        },
        '127.0.0.1': { outcome: 'timed out', error: 'no answer in 1000 ms', ms: 1000 },
        '127.0.0.2': { outcome: 'failed', error: 'connect ENETUNREACH', code: 'ENETUNREACH' },
      }
      const r = rig((t) => answers[t.address], {
        resolve: () => Promise.resolve(hosts('::1', '127.0.0.1', '127.0.0.2')),
        settings: settingsWith({ main: { max_addresses: '8' } }),
      })
      const [result] = await r.watcher.round()
      const byAddress = Object.fromEntries(result.probes.map((p) => [p.address, p.outcome]))
      assert.deepEqual(byAddress, {
        '::1': 'greeting_refused',
        '127.0.0.1': 'timed_out',
        '127.0.0.2': 'unreachable',
      })
      assert.deepEqual(result.families, { ipv6: { up: false }, ipv4: { up: false } })
    })

    it('a server that connects but never greets is down to the watch and only slow to delivery', async () => {
      // probeGreeting's race hands over a silent connection at the deadline, without a greeting.
      const r = rig((t) => (t.family === 'ipv6' ? { outcome: 'connected', ms: 1000 } : GREETED))
      const [result] = await r.watcher.round()
      const v6 = result.probes.find((p) => p.family === 'ipv6')
      assert.deepEqual(v6 && [v6.outcome, v6.error], ['timed_out', 'no greeting in 1000 ms'])
      assert.equal(result.families.ipv6?.up, false)
      assert.equal(r.health.addressFailed('::1'), false)
      assert.equal(r.health.addressSlow('::1'), true)
    })

    it('a DNS failure, NXDOMAIN, a null MX or an all-filtered plan is a problem and probes nothing', async () => {
      const cases: Array<[Resolution, RegExp]> = [
        [
          { kind: 'temporary', domain: 'watched.test', detail: 'MX lookup for watched.test: ETIMEOUT' },
          /^DNS lookup failed: MX lookup/,
        ],
        [
          { kind: 'no-domain', domain: 'watched.test', detail: 'NXDOMAIN for watched.test' },
          /^NXDOMAIN for watched\.test$/,
        ],
        [{ kind: 'null-mx', domain: 'watched.test' }, /null MX/],
        [hosts('fe80::1', '0.0.0.0'), /link-local/],
      ]
      for (const [resolution, problem] of cases) {
        const r = rig(() => GREETED, { resolve: () => Promise.resolve(resolution) })
        const [result] = await r.watcher.round()
        assert.match(result.problem ?? '', problem)
        assert.deepEqual(r.probed, [])
        assert.deepEqual(result.families, {})
        assert.equal(r.logs.length, 1, r.logs.join('\n'))
      }
    })

    it("an error inside a round is logged and becomes the domain's problem, never thrown", async () => {
      const r = rig(() => GREETED, { resolve: () => Promise.reject(new Error('resolver broke')) })
      const [result] = await r.watcher.round()
      assert.equal(result.problem, 'internal error: resolver broke')
      assert.ok(r.logs.some((l) => l.startsWith('error: watch watched.test: internal error: resolver broke')))
      assert.deepEqual(r.results, [result])
    })

    it('runs at most `concurrency` lookups and probes at once, over every domain', async () => {
      let active = 0
      let most = 0
      const domains = Array.from({ length: 6 }, (_, i) => `d${i}.test`)
      const r = rig(
        async () => {
          active++
          most = Math.max(most, active)
          await new Promise((resolve) => setImmediate(resolve))
          active--
          return GREETED
        },
        {
          config: { domains, concurrency: 3 },
          resolve: async (domain) => {
            active++
            most = Math.max(most, active)
            await new Promise((resolve) => setImmediate(resolve))
            active--
            return { ...hosts('::1', '127.0.0.1', '127.0.0.2'), domain }
          },
        },
      )
      const results = await r.watcher.round()
      assert.equal(results.length, 6)
      assert.equal(r.probed.length, 6 * 3)
      assert.equal(most, 3)
    })
  })

  describe('planned and learnt from as delivery', () => {
    const noIpv6: HostFamilies = { ipv4: { scopes: ['global', 'loopback'] }, ipv6: { scopes: [] } }

    function learning(
      answers: (t: RaceTarget) => Answer,
      deps: { hostFamilies?: HostFamilies; learned?: Learned; resolution?: (d: string) => Resolution } = {},
    ) {
      const probed: RaceTarget[] = []
      const asked: ResolveOptions[] = []
      const health = new HealthCache({ ttlMs: 600_000, maxEntries: 100 })
      const settings = settingsWith()
      const watcher = new Watcher(
        { domains: ['watched.test'], intervalMs: 60_000, concurrency: 1, timeoutMs: 1_000 },
        {
          settings: () => settings,
          dns: () => noDns,
          health: () => health,
          hostFamilies: () => deps.hostFamilies,
          learned: () => deps.learned,
          log: () => {},
          resolve: (d, _dns, options) => {
            asked.push(options)
            return Promise.resolve(deps.resolution?.(d) ?? hosts('::1', '127.0.0.1'))
          },
          probe: (t) => {
            probed.push(t)
            return Promise.resolve(raceOf(t, answers(t)))
          },
          now: () => Date.now(),
        },
      )
      return { watcher, probed, asked, health, settings }
    }

    it('a family this host cannot send from is neither queried nor probed, as for a message', async () => {
      const r = learning(() => GREETED, { hostFamilies: noIpv6 })
      await r.watcher.round()
      assert.deepEqual(r.asked, [{ families: ['ipv4'] }])
      assert.deepEqual(
        r.probed.map((t) => t.address),
        ['127.0.0.1'],
      )
      // The same inputs give delivery the same plan.
      const resolution = hosts('::1', '127.0.0.1')
      const plan = planAddresses(
        'watched.test',
        resolution.kind === 'hosts' ? resolution.hosts : [],
        planningOptions({
          settings: r.settings,
          health: r.health,
          hostFamilies: noIpv6,
          query: queryPlanOf(noIpv6, r.settings),
        }),
      )
      assert.deepEqual(
        plan.kept.map((c) => c.address),
        ['127.0.0.1'],
      )
    })

    it('with IPv6 egress impaired the probes start with IPv4, as a new destination would', async () => {
      const egress = new EgressMemory({ destinations: 1, windowMs: 600_000, maxEntries: 100 })
      egress.record({ exchange: 'other.test', family: 'ipv6', outcome: 'unanswered', at: Date.now() })
      egress.record({ exchange: 'other.test', family: 'ipv4', outcome: 'connected', at: Date.now() })
      const connectTimes = new ConnectTimes({ ttlMs: 600_000, maxEntries: 100 })
      const r = learning(() => GREETED, { learned: { egress, connectTimes } })
      // Concurrency 1: the probes go out in the plan's order.
      await r.watcher.round()
      assert.deepEqual(
        r.probed.map((t) => t.address),
        ['127.0.0.1', '::1'],
      )
      const plain = learning(() => GREETED)
      await plain.watcher.round()
      assert.deepEqual(
        plain.probed.map((t) => t.address),
        ['::1', '127.0.0.1'],
      )
    })

    it("probes feed the learnt connect times and the egress evidence, as a race's attempts do", async () => {
      const egress = new EgressMemory({ destinations: 2, windowMs: 600_000, maxEntries: 100 })
      const connectTimes = new ConnectTimes({ ttlMs: 600_000, maxEntries: 100 })
      let exchange = 'mx1.test'
      const r = learning(
        (t) =>
          t.family === 'ipv6'
            ? { outcome: 'timed out', error: 'no answer in 1000 ms', ms: 1000 }
            : { ...GREETED, ms: 12 },
        {
          learned: { egress, connectTimes },
          resolution: () => ({
            kind: 'hosts',
            domain: 'watched.test',
            implicit: false,
            hosts: [{ exchange, preference: 10, addresses: ['::1', '127.0.0.1'], errors: [] }],
          }),
        },
      )
      await r.watcher.round()
      assert.equal(connectTimes.read('mx1.test', 'ipv4')?.of, 'mx')
      assert.equal(connectTimes.read('mx1.test', 'ipv4')?.srttMs, 12)
      assert.equal(connectTimes.read('mx1.test', 'ipv6'), undefined, 'no IPv6 connect was measured')
      assert.equal(egress.read().ipv6Impaired, false)
      exchange = 'mx2.test'
      await r.watcher.round()
      assert.equal(egress.read().ipv6Impaired, true)
      assert.deepEqual(egress.read().destinations.sort(), ['mx1.test', 'mx2.test'])
    })
  })

  describe('schedule', () => {
    let clock: Clock
    beforeEach(() => {
      clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate'] })
    })
    afterEach(() => clock.uninstall())

    it('starts at once, and the next round only `interval` after the previous one ended', async () => {
      const pending: Array<() => void> = []
      const r = rig(() => new Promise<Answer>((resolve) => pending.push(() => resolve(GREETED))))
      r.watcher.start()
      await clock.tickAsync(0)
      assert.equal(r.probed.length, 2, 'the first round probes at once')
      // The round hangs on its probes for three intervals: no second round starts meanwhile.
      await clock.tickAsync(180_000)
      assert.equal(r.probed.length, 2)
      for (const done of pending.splice(0)) done()
      await clock.tickAsync(0)
      assert.equal(r.results.length, 1)
      await clock.tickAsync(59_999)
      assert.equal(r.probed.length, 2)
      await clock.tickAsync(1)
      assert.equal(r.probed.length, 4, 'the second round, one interval after the first ended')
      r.watcher.stop()
    })

    it('stop ends the schedule: no timer is left and no round starts again', async () => {
      const r = rig(() => GREETED)
      r.watcher.start()
      await clock.tickAsync(0)
      assert.equal(r.results.length, 1)
      r.watcher.stop()
      assert.equal(clock.countTimers(), 0)
      await clock.tickAsync(600_000)
      assert.equal(r.results.length, 1)
      r.watcher.start()
      await clock.tickAsync(0)
      assert.equal(r.results.length, 1, 'a stopped watcher stays stopped')
    })

    it('a round under way when stopped reports nothing and feeds no health', async () => {
      const pending: Array<() => void> = []
      const r = rig(() => new Promise<Answer>((resolve) => pending.push(() => resolve(REFUSED))))
      r.watcher.start()
      await clock.tickAsync(0)
      r.watcher.stop()
      for (const done of pending.splice(0)) done()
      await clock.tickAsync(0)
      assert.deepEqual(r.results, [])
      assert.equal(r.health.size, 0)
      assert.equal(clock.countTimers(), 0)
    })

    it('its timers do not keep the process alive', () => {
      clock.uninstall()
      const r = rig(() => GREETED, { config: { domains: [] } })
      const before = process.getActiveResourcesInfo().filter((n) => n === 'Timeout').length
      r.watcher.start()
      // An unref'd timer is not among the active resources that hold the process.
      const after = process.getActiveResourcesInfo().filter((n) => n === 'Timeout').length
      r.watcher.stop()
      assert.equal(after, before)
      clock = FakeTimers.install({ toFake: ['setTimeout', 'clearTimeout', 'setImmediate'] })
    })
  })

  describe('limiter', () => {
    it('hands a freed slot to the next waiting run, so no more than n ever run', async () => {
      const limit = limiter(2)
      let active = 0
      let most = 0
      const order: number[] = []
      const job = (i: number) => async () => {
        active++
        most = Math.max(most, active)
        await new Promise((resolve) => setImmediate(resolve))
        order.push(i)
        active--
        return i
      }
      const results = await Promise.all([0, 1, 2, 3, 4].map((i) => limit(job(i))))
      // A run that starts while another hands its slot over still waits its turn.
      assert.deepEqual(results, [0, 1, 2, 3, 4])
      assert.equal(most, 2)
      assert.deepEqual(order, [0, 1, 2, 3, 4])
    })
  })
})
