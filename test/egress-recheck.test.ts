// The background recheck of impaired IPv6 egress: which race leaves an IPv6 address worth it,
// how often it runs, and what its probe's answer does to the state. Fake clocks, fake probes.

import assert from 'node:assert/strict'

import { EgressMemory } from '../lib/egress'
import { recheckEgress, type RecheckOptions, recheckTarget } from '../lib/egress-recheck'
import { learnFromRace } from '../lib/learned'
import type { Plan } from '../lib/plan'
import type { AttemptRecord, RaceResult, RaceSocket, RaceTarget } from '../lib/race'

const v6: RaceTarget = {
  address: '2001:db8::25',
  family: 'ipv6',
  exchange: 'mx.e4.test',
  preference: 10,
  port: 25,
}
const v4: RaceTarget = {
  address: '192.0.2.25',
  family: 'ipv4',
  exchange: 'mx.e4.test',
  preference: 10,
  port: 25,
}
const socket = {} as RaceSocket

const plan = (ipv4FirstForEgress?: string[]): Plan => ({
  domain: 'e4.test',
  kept: [v4, v6],
  filtered: [],
  dnsErrors: [],
  ...(ipv4FirstForEgress ? { ipv4FirstForEgress } : {}),
})

const attempt = (
  target: RaceTarget,
  outcome: AttemptRecord['outcome'],
  more: Partial<AttemptRecord> = {},
) => ({
  target,
  startMs: 0,
  endMs: 5,
  outcome,
  ...more,
})

/** IPv4 greeted first; IPv6 as given. */
const ipv4Won = (v6Attempt?: AttemptRecord): RaceResult<RaceSocket> => ({
  winner: { index: 0, target: v4, socket },
  attempts: [attempt(v4, 'connected'), ...(v6Attempt ? [v6Attempt] : [])],
  elapsedMs: 5,
  untried: v6Attempt ? [] : [v6],
})

/** Epoch ms of the fake clock the egress memory and the recheck read. */
let clock = 0

/** Egress impaired by two black-holed MX hosts, at `clock`. */
function impaired() {
  clock = 1_000_000
  const egress = new EgressMemory({
    destinations: 2,
    windowMs: 600_000,
    maxEntries: 100,
    perf: { now: () => clock },
  })
  for (const exchange of ['mx1.test', 'mx2.test']) {
    egress.record({ exchange, family: 'ipv6', outcome: 'unanswered', at: clock })
    egress.record({ exchange, family: 'ipv4', outcome: 'connected', at: clock })
  }
  assert.equal(egress.read(clock).ipv6Impaired, true)
  return { egress, advance: (ms: number) => (clock += ms) }
}

function options(egress: EgressMemory, probe: RecheckOptions['probe']) {
  const lines: string[] = []
  const probed: RaceTarget[] = []
  const opts: RecheckOptions = {
    egress,
    intervalMs: 60_000,
    timeoutMs: 1000,
    probe: (t, timeoutMs) => {
      probed.push(t)
      return probe(t, timeoutMs)
    },
    onResult: (result) => learnFromRace({ egress }, result, 250),
    log: (level, msg) => lines.push(`${level} ${msg}`),
    now: () => clock,
  }
  return { opts, lines, probed }
}

const connected = (t: RaceTarget): RaceResult<RaceSocket> => ({
  winner: { index: 0, target: t, socket },
  attempts: [attempt(t, 'connected', { connectMs: 3, greeting: '220 ok', replyCode: 220 })],
  elapsedMs: 4,
  untried: [],
})
const timedOut = (t: RaceTarget): RaceResult<RaceSocket> => ({
  attempts: [attempt(t, 'timed out', { endMs: 1000, error: 'no answer in 1000 ms' })],
  elapsedMs: 1000,
  untried: [],
})

describe('egress-recheck', () => {
  describe('recheckTarget', () => {
    it('is the untried IPv6 address of an MX host started with IPv4 for impaired egress, IPv4 having won', () => {
      assert.equal(recheckTarget(plan(['mx.e4.test']), ipv4Won()), v6)
    })

    it('is an IPv6 attempt cancelled before its connect, too', () => {
      assert.equal(recheckTarget(plan(['mx.e4.test']), ipv4Won(attempt(v6, 'cancelled'))), v6)
    })

    it('is nothing when the race already said something of IPv6: connected, refused or timed out', () => {
      const p = plan(['mx.e4.test'])
      assert.equal(recheckTarget(p, ipv4Won(attempt(v6, 'cancelled', { connectMs: 2 }))), undefined)
      assert.equal(
        recheckTarget(p, ipv4Won(attempt(v6, 'failed', { error: 'connect ECONNREFUSED' }))),
        undefined,
      )
      assert.equal(recheckTarget(p, ipv4Won(attempt(v6, 'timed out'))), undefined)
    })

    it('is nothing when egress did not lead the plan, or IPv6 won, or nothing won', () => {
      assert.equal(recheckTarget(plan(), ipv4Won()), undefined)
      assert.equal(recheckTarget(plan(['mx.other.test']), ipv4Won()), undefined)
      const v6Won: RaceResult<RaceSocket> = { ...connected(v6), untried: [v4] }
      assert.equal(recheckTarget(plan(['mx.e4.test']), v6Won), undefined)
      assert.equal(
        recheckTarget(plan(['mx.e4.test']), { attempts: [], elapsedMs: 0, untried: [v6] }),
        undefined,
      )
    })
  })

  describe('recheckEgress', () => {
    it('an IPv6 connect clears impaired egress, and says nothing of its own (the change has its line)', async () => {
      const { egress } = impaired()
      const { opts, lines, probed } = options(egress, async (t) => connected(t))
      assert.equal(await recheckEgress(v6, opts), true)
      assert.deepEqual(probed, [v6])
      assert.equal(egress.read(clock).ipv6Impaired, false)
      assert.deepEqual(lines, [])
    })

    it('silence keeps it impaired, in one line naming the address', async () => {
      const { egress } = impaired()
      const { opts, lines } = options(egress, async (t) => timedOut(t))
      await recheckEgress(v6, opts)
      assert.equal(egress.read(clock).ipv6Impaired, true)
      assert.equal(lines.length, 1)
      assert.match(
        lines[0],
        /^info IPv6 egress recheck at mx\.e4\.test \[2001:db8::25\]:25: .*timed out.*; still impaired$/,
      )
    })

    it('runs at most once per interval, never two at a time, and not at all with interval 0 or healthy egress', async () => {
      const { egress, advance } = impaired()
      let release: () => void = () => {}
      const held = new Promise<void>((r) => (release = r))
      const { opts, probed } = options(egress, async (t) => {
        await held
        return timedOut(t)
      })
      const first = recheckEgress(v6, opts)
      assert.equal(await recheckEgress(v6, opts), false, 'one under way')
      release()
      assert.equal(await first, true)
      assert.equal(await recheckEgress(v6, opts), false, 'within the interval')
      advance(60_000)
      assert.equal(await recheckEgress(v6, opts), true, 'the interval has passed')
      assert.equal(probed.length, 2)

      advance(60_000)
      assert.equal(await recheckEgress(v6, { ...opts, intervalMs: 0 }), false)
      const healthy = new EgressMemory({ destinations: 2, windowMs: 600_000, maxEntries: 100 })
      assert.equal(await recheckEgress(v6, { ...opts, egress: healthy }), false)
      assert.equal(probed.length, 2)
    })

    it('a probe that throws is logged, and the next recheck may run once the interval has passed', async () => {
      const { egress, advance } = impaired()
      const { opts, lines } = options(egress, async () => {
        throw new Error('socket exploded')
      })
      assert.equal(await recheckEgress(v6, opts), true)
      assert.match(lines[0], /^warn IPv6 egress recheck at mx\.e4\.test .* failed: .*socket exploded/)
      advance(60_000)
      assert.equal(await recheckEgress(v6, opts), true)
    })

    it('never rejects, whatever throws: the probe and the logger both, or the claim itself', async () => {
      const { egress, advance } = impaired()
      const { opts } = options(egress, async () => {
        throw new Error('socket exploded')
      })
      const broken: RecheckOptions = {
        ...opts,
        log: () => {
          throw new Error('logger gone')
        },
      }
      assert.equal(await recheckEgress(v6, broken), true)
      advance(60_000)
      assert.equal(await recheckEgress(v6, broken), true, 'the claim was given back')
      const claimThrows = Object.assign(Object.create(egress) as EgressMemory, {
        claimRecheck: () => {
          throw new Error('state gone')
        },
      })
      assert.equal(await recheckEgress(v6, { ...broken, egress: claimThrows }), false)
    })
  })
})
