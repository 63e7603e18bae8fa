// One domain's route: resolve, filter, order, optionally race, and say what Haraka should
// do — deliver to this list, defer or bounce with this status and reason.

import type { Settings } from './config'
import type { HealthCache } from './health'
import { describeFiltered, describePlan, type Plan, planAddresses } from './plan'
import {
  describeFailures,
  describeTimeline,
  raceConnect,
  type RaceResult,
  type RaceSocket,
  type RaceTarget,
} from './race'
import { type DnsClient, resolveDestination } from './resolve'

/** The fields of one Haraka MX entry (an IP literal). */
export interface MxEntry {
  exchange: string
  priority: number
  port: number
  bind?: string
  from_dns: string
}

/** An RFC 3463 status the deferral or bounce carries: class 4 or 5, subject, detail. */
export interface Status {
  code: 450 | 550
  subject: number
  detail: number
}

export type Route =
  | { action: 'deliver'; targets: RaceTarget[]; entries: MxEntry[]; log: string }
  | { action: 'null-mx'; log: string }
  | { action: 'defer'; status: Status; reason: string; log: string }
  | { action: 'bounce'; status: Status; reason: string; log: string }

export interface Racer<S extends RaceSocket> {
  connect(target: RaceTarget): S
  hold(target: RaceTarget, socket: S): void
}

export interface RouteDeps<S extends RaceSocket> {
  settings: Settings
  dns: DnsClient
  health: HealthCache
  /** Present when connections can be raced on this Haraka. */
  racer?: Racer<S>
  /** performance.now() by which the hook must answer: bounds the race. */
  answerBy?: number
  random?: () => number
}

export const STATUS = {
  dnsTemporary: { code: 450, subject: 4, detail: 3 },
  noRoute: { code: 450, subject: 4, detail: 4 },
  noRouteFinal: { code: 550, subject: 4, detail: 4 },
  noAnswer: { code: 450, subject: 4, detail: 1 },
  badConnection: { code: 450, subject: 4, detail: 2 },
  noDomain: { code: 550, subject: 1, detail: 2 },
} as const satisfies Record<string, Status>

function targetsOf(plan: Plan, settings: Settings): RaceTarget[] {
  return plan.kept.map((c) => ({
    ...c,
    port: settings.port,
    ...(settings.bind[c.family] ? { bind: settings.bind[c.family] } : {}),
  }))
}

function entriesOf(targets: RaceTarget[]): MxEntry[] {
  // Haraka 3.0.x re-sorts by priority: strictly increasing priorities keep this order.
  return targets.map((t, i) => ({
    exchange: t.address,
    priority: i,
    port: t.port,
    ...(t.bind ? { bind: t.bind } : {}),
    from_dns: t.exchange,
  }))
}

/** Winner first; then addresses not yet tried or cancelled; those that failed last. */
function afterRace(targets: RaceTarget[], result: RaceResult<RaceSocket>): RaceTarget[] {
  const failed = new Set(
    result.attempts.filter((a) => a.outcome === 'failed' || a.outcome === 'timed out').map((a) => a.target),
  )
  const win = result.winner?.target
  return [
    ...(win ? [win] : []),
    ...targets.filter((t) => t !== win && !failed.has(t)),
    ...targets.filter((t) => failed.has(t)),
  ]
}

export async function routeDomain<S extends RaceSocket>(domain: string, deps: RouteDeps<S>): Promise<Route> {
  const { settings, health } = deps
  const resolution = await resolveDestination(domain, deps.dns)

  switch (resolution.kind) {
    case 'null-mx':
      return { action: 'null-mx', log: `${resolution.domain} has a null MX` }
    case 'no-domain':
      return {
        action: 'bounce',
        status: STATUS.noDomain,
        reason: resolution.detail,
        log: `bounce: ${resolution.detail}`,
      }
    case 'temporary':
      return {
        action: 'defer',
        status: STATUS.dnsTemporary,
        reason: `DNS lookup failed: ${resolution.detail}`,
        log: `defer: DNS lookup failed: ${resolution.detail}`,
      }
  }

  const plan = planAddresses(resolution.domain, resolution.hosts, {
    policy: settings.filter.policy,
    prefer: settings.prefer,
    firstFamilyCount: settings.firstFamilyCount,
    maxAddresses: settings.maxAddresses,
    health,
    ...(deps.random ? { random: deps.random } : {}),
  })
  const planLine = describePlan(plan)

  if (!plan.kept.length) {
    // Only DNS errors and no address at all: a temporary DNS problem, not a routing one.
    if (!plan.filtered.length && plan.dnsErrors.length) {
      const reason = `DNS lookup failed: ${plan.dnsErrors.join(', ')}`
      return { action: 'defer', status: STATUS.dnsTemporary, reason, log: `${planLine}; defer` }
    }
    const reason = plan.filtered.length
      ? `no usable address for ${plan.domain}: ${describeFiltered(plan)}`
      : `no address records for the MX hosts of ${plan.domain}`
    if (settings.filter.allFiltered === 'bounce' && plan.filtered.length) {
      return { action: 'bounce', status: STATUS.noRouteFinal, reason, log: `${planLine}; bounce` }
    }
    return { action: 'defer', status: STATUS.noRoute, reason, log: `${planLine}; defer` }
  }

  const targets = targetsOf(plan, settings)
  const { racer } = deps
  if (!racer || !settings.race.enabled) {
    return { action: 'deliver', targets, entries: entriesOf(targets), log: planLine }
  }

  const result = await raceConnect(targets, {
    attemptDelayMs: settings.race.attemptDelayMs,
    groupDelayMs: settings.race.groupDelayMs,
    deadlineMs: Math.max(
      100,
      Math.min(settings.race.deadlineMs, (deps.answerBy ?? Infinity) - performance.now()),
    ),
    connect: (t) => racer.connect(t),
  })
  recordRace(health, result, settings.race.attemptDelayMs)
  const timeline = `race ${describeTimeline(result)}`

  if (!result.winner) {
    const untried = targets.slice(result.attempts.length)
    const reason = `no MX address of ${plan.domain} answered: ${describeFailures(result, untried)}`
    return { action: 'defer', status: STATUS.noAnswer, reason, log: `${planLine}; ${timeline}; defer` }
  }

  const { target, socket } = result.winner
  racer.hold(target, socket)
  const ordered = afterRace(targets, result)
  return {
    action: 'deliver',
    targets: ordered,
    entries: entriesOf(ordered),
    log: `${planLine}; ${timeline}; winner ${target.address}`,
  }
}

/**
 * Feeds the health cache: every connect and every error, and, as "slow" (never as an error),
 * an attempt that lost the race after waiting a whole attempt delay without an answer, which
 * is how a black hole looks, and a slow but working path too.
 */
export function recordRace(
  health: HealthCache,
  result: RaceResult<RaceSocket>,
  attemptDelayMs: number,
): void {
  const at = Date.now()
  for (const a of result.attempts) {
    const waited = (a.endMs ?? result.elapsedMs) - a.startMs
    const { address, family, exchange } = a.target
    if (a.outcome === 'connected')
      health.record(address, family, exchange, { ok: true, latencyMs: waited, at })
    else if (a.outcome === 'failed' || a.outcome === 'timed out') {
      const error = a.error ?? `no answer in ${waited} ms`
      health.record(address, family, exchange, { ok: false, error, latencyMs: waited, at })
    } else if (a.outcome === 'cancelled' && waited >= attemptDelayMs)
      health.record(address, family, exchange, { ok: false, slow: true, latencyMs: waited, at })
  }
}

/**
 * Why every planned address failed, from the last outcome the health cache saw for each:
 * replaces Haraka's bare "Tried all MXs" when its own fallback attempts ran out too.
 */
export function explainExhausted(
  domain: string,
  targets: Array<Pick<RaceTarget, 'address'>>,
  health: HealthCache,
): { status: Status; reason: string } {
  let connected = false
  const parts = targets.map(({ address }) => {
    const last = health.lookup(address)
    if (!last) return `${address}: not tried`
    if (last.ok) {
      connected = true
      return `${address}: connected, then the SMTP session failed`
    }
    if (last.slow) return `${address}: not tried after losing the race (no answer in ${last.latencyMs} ms)`
    return `${address}: ${last.error ?? 'failed'}`
  })
  const status = connected ? STATUS.badConnection : STATUS.noAnswer
  return { status, reason: `every MX address of ${domain} failed: ${parts.join('; ')}` }
}
