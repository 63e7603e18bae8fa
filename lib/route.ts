// One domain's route: resolve, filter, order, optionally race, and decide what Haraka should
// do — deliver to this list, defer or bounce with this status and reason. The result is the
// message's delivery record.

import { classifyAddress, type Family } from './classify'
import type { Settings } from './config'
import { familiesToQuery, type HostFamilies, mayLimit, unusableReason } from './connectivity'
import type { MessageConnects } from './connects'
import {
  type DeliveryRecord,
  describeRaceFailure,
  describeUnusable,
  type RaceRecord,
  STATUS,
} from './delivery'
import type { HealthCache } from './health'
import { type Plan, planAddresses } from './plan'
import type { PolicyView } from './policy-memory'
import type { SwitchedHost } from './sender-policy'
import { type WarmRequest, type WarmResult, warmRequestOf } from './shared-health'
import {
  type AttemptRecord,
  raceConnect,
  type RaceResult,
  type RaceSocket,
  type RaceSuccess,
  type RaceTarget,
} from './race'
import { type DnsClient, resolveDestination } from './resolve'
import { delayFor, type Learned, learnFromRace } from './learned'

export { STATUS, type Status } from './delivery'

/** The fields of one Haraka MX entry (an IP literal). */
export interface MxEntry {
  exchange: string
  priority: number
  port: number
  bind?: string
  from_dns: string
}

export interface Racer<S extends RaceSocket> {
  /** A socket for one attempt, reporting what `success` needs (the greeting, or the connect). */
  connect(target: RaceTarget, success: RaceSuccess): S
  hold(target: RaceTarget, socket: S): void
  /** Ends a loser gracefully; without it losers are destroyed. */
  release?(socket: S): void
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
  /** The message's connect log, carried by its record. */
  connects?: MessageConnects
  /** MX hosts that refused this sender over IPv6 by policy lately. */
  senderPolicy?: PolicyView
  /** MX hosts this message was switched to IPv4 for. */
  switched?: readonly SwitchedHost[]
  /**
   * The shared state (Redis): fills the local caches for this message's MX hosts and
   * addresses before planning, which stays synchronous over them. Bounded by the store's
   * timeout; never rejects.
   */
  shared?: { warm(request: WarmRequest): Promise<WarmResult> }
  /** The families this host can send from (lib/connectivity); absent: both, everywhere. */
  hostFamilies?: HostFamilies
  /** Connect times and IPv6 egress learnt across destinations (lib/learned). */
  learned?: Learned
}

const LOOPBACK: Record<Family, string> = { ipv4: '127.0.0.1', ipv6: '::1' }

/** The plan's candidates as connect targets: the configured port and a bind per family. */
export function targetsOf(plan: Plan, settings: Settings): RaceTarget[] {
  return plan.kept.map((c) => ({
    ...c,
    port: settings.port,
    ...(settings.bind[c.family] ? { bind: settings.bind[c.family] } : {}),
  }))
}

/** The targets as Haraka MX entries, in order. */
export function entriesOf(targets: RaceTarget[]): MxEntry[] {
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

export async function routeDomain<S extends RaceSocket>(
  domain: string,
  deps: RouteDeps<S>,
): Promise<DeliveryRecord> {
  const { settings, health, hostFamilies, learned } = deps
  const query = hostFamilies
    ? familiesToQuery(hostFamilies, (f) => classifyAddress(LOOPBACK[f], settings.filter.policy).routable)
    : undefined
  const resolution = await resolveDestination(domain, deps.dns, query ? { families: query.families } : {})
  let shared: WarmResult | undefined
  const record = (decision: DeliveryRecord['decision'], plan?: Plan, race?: RaceRecord): DeliveryRecord => ({
    domain: resolution.domain,
    resolution,
    ...(plan ? { plan } : {}),
    ...(race ? { race } : {}),
    decision,
    ...(deps.connects ? { connects: deps.connects } : {}),
    ...(shared ? { shared } : {}),
  })

  switch (resolution.kind) {
    case 'null-mx':
      return record({
        action: 'null-mx',
        status: STATUS.nullMx,
        reason: `${resolution.domain} has a null MX: it accepts no mail`,
      })
    case 'no-domain':
      return record({ action: 'bounce', status: STATUS.noDomain, reason: resolution.detail })
    case 'temporary':
      return record({
        action: 'defer',
        status: STATUS.dnsTemporary,
        reason: `DNS lookup failed: ${resolution.detail}`,
      })
  }

  // What other workers and hosts learned about these hosts, in the local caches before planning.
  if (deps.shared) shared = await deps.shared.warm(warmRequestOf(resolution.hosts))

  const plan = planAddresses(resolution.domain, resolution.hosts, {
    policy: settings.filter.policy,
    prefer: settings.prefer,
    firstFamilyCount: settings.firstFamilyCount,
    maxAddresses: settings.maxAddresses,
    health,
    family: settings.family,
    ...(settings.policy.enabled && deps.senderPolicy ? { senderPolicy: deps.senderPolicy } : {}),
    ...(deps.switched ? { switched: deps.switched } : {}),
    ...(deps.random ? { random: deps.random } : {}),
    ...(hostFamilies && mayLimit(hostFamilies)
      ? {
          unusable: (a: string, f: Family) => unusableReason(hostFamilies, f, a),
          notQueried: query?.notQueried,
        }
      : {}),
    ...(learned?.egress
      ? {
          egress: {
            ipv6Impaired: learned.egress.read().ipv6Impaired,
            known: (h: string) => Boolean(learned.connectTimes?.knows(h)),
          },
        }
      : {}),
  })

  if (!plan.kept.length) {
    // Only DNS errors and no address at all: a temporary DNS problem, not a routing one.
    if (!plan.filtered.length && plan.dnsErrors.length) {
      const reason = `DNS lookup failed: ${plan.dnsErrors.join(', ')}`
      return record({ action: 'defer', status: STATUS.dnsTemporary, reason }, plan)
    }
    const reason = describeUnusable(plan)
    const bounce = settings.filter.allFiltered === 'bounce' && plan.filtered.length > 0
    return record(
      bounce
        ? { action: 'bounce', status: STATUS.noRouteFinal, reason }
        : { action: 'defer', status: STATUS.noRoute, reason },
      plan,
    )
  }

  const targets = targetsOf(plan, settings)
  const { racer } = deps
  if (!racer || !settings.race.enabled) return record({ action: 'deliver', targets }, plan)

  const { success } = settings.race
  const result = await raceConnect(targets, {
    attemptDelayMs: settings.race.attemptDelayMs,
    ...(learned?.connectTimes
      ? {
          attemptDelayFor: delayFor(learned.connectTimes, {
            minMs: settings.race.minAttemptDelayMs,
            maxMs: settings.race.attemptDelayMs,
          }),
        }
      : {}),
    groupDelayMs: settings.race.groupDelayMs,
    deadlineMs: Math.max(
      100,
      Math.min(settings.race.deadlineMs, (deps.answerBy ?? Infinity) - performance.now()),
    ),
    connect: (t) => racer.connect(t, success),
    success,
    ...(racer.release ? { release: (s: S) => racer.release?.(s) } : {}),
  })
  recordRace(health, result, settings.race.attemptDelayMs)
  if (learned) learnFromRace(learned, result, settings.race.attemptDelayMs)
  const race: RaceRecord = {
    attempts: result.attempts,
    elapsedMs: result.elapsedMs,
    untried: targets.slice(result.attempts.length),
  }

  if (!result.winner) {
    // A server that refused at its greeting for good: Haraka hears the refusal itself and
    // decides as it would without the plugin (a 5xx greeting bounces), never a retry instead.
    const refused = result.attempts.filter(refusedForGood).map((a) => a.target)
    if (refused.length) {
      const rest = targets.filter((t) => !refused.includes(t))
      return record({ action: 'deliver', targets: [...refused, ...rest] }, plan, race)
    }
    const reason = describeRaceFailure(plan.domain, race)
    return record({ action: 'defer', status: STATUS.noAnswer, reason }, plan, race)
  }

  const { target, socket } = result.winner
  racer.hold(target, socket)
  return record({ action: 'deliver', targets: afterRace(targets, result), winner: target }, plan, race)
}

/** A greeting that is neither a welcome nor a temporary refusal: 5xx, or not SMTP at all. */
const refusedForGood = (a: AttemptRecord): boolean =>
  a.outcome === 'failed' && a.greeting !== undefined && !(a.replyCode !== undefined && a.replyCode < 500)

/**
 * Feeds the health cache: every connect and every error, and, as "slow" (never as an error),
 * an attempt that lost the race after waiting a whole attempt delay without an answer, which
 * is how a black hole looks, and a slow but working path too (its own delay when it was learnt).
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
    } else if (a.outcome === 'cancelled' && waited >= (a.delayMs ?? attemptDelayMs))
      health.record(address, family, exchange, { ok: false, slow: true, latencyMs: waited, at })
  }
}
