// One domain's route: resolve, filter, order, optionally race, and decide what Haraka should
// do — deliver to this list, defer or bounce with this status and reason. The result is the
// message's delivery record.

import type { Family } from './classify'
import type { Settings } from './config'
import type { HostFamilies, QueryPlan } from './connectivity'
import type { MessageConnects } from './connects'
import {
  type DeliveryRecord,
  describeRaceFailure,
  describeUnusable,
  type RaceRecord,
  STATUS,
} from './delivery'
import type { HealthCache } from './health'
import { seededRandom } from './order'
import { planningOptions, queryPlanOf } from './planning'
import { leadingFamilyOf, type Plan, planAddresses, type PlanOptions } from './plan'
import type { PolicyView } from './policy-memory'
import type { SwitchedHost } from './sender-policy'
import { type WarmRequest, type WarmResult, warmRequestOf } from './shared-health'
import { delayFor, type Learned, learnFromRace } from './learned'
import {
  type AttemptRecord,
  type RaceOptions,
  type RaceResult,
  type RaceSocket,
  type RaceSuccess,
  type RaceTarget,
  type RunningRace,
  startRace,
} from './race'
import { raceStartAt } from './race-start'
import { recheckTarget } from './egress-recheck'
import {
  type AddressLookup,
  type DnsClient,
  hostsOf,
  pendingLookups,
  type Resolution,
  type ResolutionProgress,
  resolveDestination,
} from './resolve'

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
  /**
   * Probes an IPv6 address in the background (lib/egress-recheck): called after a race that
   * started IPv4 first for impaired egress and left that address unanswered.
   */
  recheckEgress?(target: RaceTarget): void
}

/** One message's route: its dependencies, the families asked for, what the shared state gave. */
interface MessageRoute<S extends RaceSocket> extends RouteDeps<S> {
  /** The families resolution asks for, and those it leaves out (lib/connectivity). */
  query?: QueryPlan
  /** The shared state's answer, once it was asked. */
  warmed?: WarmResult
  /** The shared state's read, while it is under way or once it was made (one per message). */
  warming?: Promise<void>
}

/** Asks the shared state once per message; a second call waits for the first. */
function warm<S extends RaceSocket>(deps: MessageRoute<S>, request: WarmRequest): Promise<void> {
  if (!deps.shared) return Promise.resolve()
  return (deps.warming ??= deps.shared.warm(request).then((warmed) => {
    deps.warmed = warmed
  }))
}

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
  routeDeps: RouteDeps<S>,
): Promise<DeliveryRecord> {
  const { hostFamilies, settings } = routeDeps
  const query = queryPlanOf(hostFamilies, settings)
  const deps: MessageRoute<S> = { ...routeDeps, ...(query ? { query } : {}) }
  const { racer } = deps
  if (!racer || !settings.race.enabled) {
    // Without a race nothing can start early: every answer is awaited, as Haraka would.
    const resolution = await resolveDestination(domain, deps.dns, resolveOptions(deps))
    return settle(resolution, deps, planOptions(deps, deps.random))
  }
  return routeRacing(domain, deps, racer)
}

/** The families resolution asks for: those this host can send from. */
const resolveOptions = <S extends RaceSocket>(deps: MessageRoute<S>): { families?: readonly Family[] } =>
  deps.query ? { families: deps.query.families } : {}

/** The planning options of this message; `random` drives the shuffle of equal MX hosts. */
const planOptions = <S extends RaceSocket>(deps: MessageRoute<S>, random?: () => number): PlanOptions =>
  planningOptions(deps, random)

/** The record of one message, as far as it went. */
function recordOf<S extends RaceSocket>(
  deps: MessageRoute<S>,
  resolution: Resolution,
  decision: DeliveryRecord['decision'],
  plan?: Plan,
  race?: RaceRecord,
  pending: string[] = [],
): DeliveryRecord {
  return {
    domain: resolution.domain,
    resolution,
    ...(plan ? { plan } : {}),
    ...(race ? { race } : {}),
    ...(pending.length ? { pendingLookups: pending } : {}),
    decision,
    ...(deps.connects ? { connects: deps.connects } : {}),
    ...(deps.warmed ? { shared: deps.warmed } : {}),
  }
}

/** The answer from a complete resolution: final DNS outcomes, the plan, then the race if any. */
async function settle<S extends RaceSocket>(
  resolution: Resolution,
  deps: MessageRoute<S>,
  planOpts: PlanOptions,
): Promise<DeliveryRecord> {
  const record = (decision: DeliveryRecord['decision'], plan?: Plan): DeliveryRecord =>
    recordOf(deps, resolution, decision, plan)
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
  await warm(deps, warmRequestOf(resolution.hosts))

  const plan = planAddresses(resolution.domain, resolution.hosts, planOpts)
  if (!plan.kept.length) {
    // Only DNS errors and no address at all: a temporary DNS problem, not a routing one.
    if (!plan.filtered.length && plan.dnsErrors.length) {
      const reason = `DNS lookup failed: ${plan.dnsErrors.join(', ')}`
      return record({ action: 'defer', status: STATUS.dnsTemporary, reason }, plan)
    }
    const reason = describeUnusable(plan)
    const bounce = deps.settings.filter.allFiltered === 'bounce' && plan.filtered.length > 0
    return record(
      bounce
        ? { action: 'bounce', status: STATUS.noRouteFinal, reason }
        : { action: 'defer', status: STATUS.noRoute, reason },
      plan,
    )
  }

  const targets = targetsOf(plan, deps.settings)
  const { racer } = deps
  if (!racer || !deps.settings.race.enabled) return record({ action: 'deliver', targets }, plan)
  const race = startRace(targets, raceOptions(deps, racer))
  race.close()
  return afterRaceRecord(deps, racer, resolution, plan, await race.result)
}

/** The race's options for this message; its deadline counts from now. */
function raceOptions<S extends RaceSocket>(
  deps: MessageRoute<S>,
  racer: Racer<S>,
  sortPending?: RaceOptions<S>['sortPending'],
): RaceOptions<S> {
  const { race } = deps.settings
  const { learned } = deps
  return {
    attemptDelayMs: race.attemptDelayMs,
    ...(learned?.connectTimes
      ? {
          attemptDelayFor: delayFor(learned.connectTimes, {
            minMs: race.minAttemptDelayMs,
            maxMs: race.attemptDelayMs,
          }),
        }
      : {}),
    groupDelayMs: race.groupDelayMs,
    deadlineMs: Math.max(100, Math.min(race.deadlineMs, (deps.answerBy ?? Infinity) - performance.now())),
    connect: (t) => racer.connect(t, race.success),
    success: race.success,
    ...(racer.release ? { release: (s: S) => racer.release?.(s) } : {}),
    ...(sortPending ? { sortPending } : {}),
  }
}

/** The answer once the race is over: the winner held for Haraka, or why nothing answered. */
function afterRaceRecord<S extends RaceSocket>(
  deps: MessageRoute<S>,
  racer: Racer<S>,
  resolution: Resolution,
  plan: Plan,
  result: RaceResult<S>,
  pending: string[] = [],
): DeliveryRecord {
  learnFrom(deps.health, deps.learned, result, deps.settings.race.attemptDelayMs)
  if (deps.recheckEgress) {
    const recheck = recheckTarget(plan, result)
    if (recheck) deps.recheckEgress(recheck)
  }
  const race: RaceRecord = { attempts: result.attempts, elapsedMs: result.elapsedMs, untried: result.untried }
  const targets = [...result.attempts.map((a) => a.target), ...result.untried]
  const record = (decision: DeliveryRecord['decision']): DeliveryRecord =>
    recordOf(deps, resolution, decision, plan, race, pending)

  if (!result.winner) {
    // A server that refused at its greeting for good: Haraka hears the refusal itself and
    // decides as it would without the plugin (a 5xx greeting bounces), never a retry instead.
    const refused = result.attempts.filter(refusedForGood).map((a) => a.target)
    if (refused.length) {
      const rest = targets.filter((t) => !refused.includes(t))
      return record({ action: 'deliver', targets: [...refused, ...rest] })
    }
    const reason = describeRaceFailure(plan.domain, race)
    return record({ action: 'defer', status: STATUS.noAnswer, reason })
  }

  const { target, socket } = result.winner
  racer.hold(target, socket)
  return record({ action: 'deliver', targets: afterRace(targets, result), winner: target })
}

/**
 * RFC 8305 §3 and §6: the race starts as soon as the leading MX group has a usable address
 * (see ./race-start), later answers join it, and once an attempt has won the lookups still
 * pending are left behind, named in the record. Until the race starts, the complete
 * resolution decides as without early starts.
 */
function routeRacing<S extends RaceSocket>(
  domain: string,
  deps: MessageRoute<S>,
  racer: Racer<S>,
): Promise<DeliveryRecord> {
  const { settings } = deps
  // One shuffle for every plan of this message, so a later answer reorders as little as it can.
  const seed = Math.floor((deps.random ?? Math.random)() * 2 ** 32)
  // The message's planning options, made once at the first plan (after the shared state's read).
  let base: PlanOptions | undefined
  const options = (): PlanOptions => (base ??= planOptions(deps))
  // A host refused over IPv6 by policy keeps its IPv6 out while its A may still come.
  const planNow = (p: ResolutionProgress): Plan => {
    const ipv4Pending = new Set(p.lookups.filter((l) => !l.answer && l.type === 'A').map((l) => l.exchange))
    return planAddresses(p.domain, hostsOf(p.lookups), {
      ...options(),
      random: seededRandom(seed),
      ipv4Pending,
    })
  }
  const answeredAt = new Map<AddressLookup, number>()
  let progress: ResolutionProgress | undefined
  let running: RunningRace<S> | undefined
  let latest: Plan | undefined
  let startTimer: NodeJS.Timeout | undefined
  let complete: Resolution | undefined
  let failure: { error: unknown } | undefined
  let over = false
  // An answer without addresses while racing: the plan is brought up to date at the end only.
  let stale = false

  return new Promise<DeliveryRecord>((resolve, reject) => {
    const known = (p: ResolutionProgress): Plan => {
      stale = false
      return (latest = planNow(p))
    }
    // The latest plan's targets join the race, within the bound on addresses per message.
    const raced = new Set<string>()
    const bound = Math.max(2, settings.maxAddresses)
    const fresh = (plan: Plan): RaceTarget[] => {
      const added = targetsOf(plan, settings).filter((t) => !raced.has(t.address))
      const within = added.slice(0, Math.max(0, bound - raced.size))
      for (const t of within) raced.add(t.address)
      return within
    }
    const feed = (p: ResolutionProgress): void => running?.add(fresh(known(p)))
    const begin = (p: ResolutionProgress, plan: Plan): void => {
      const order = (pending: readonly RaceTarget[]): RaceTarget[] => {
        const rank = new Map((latest ?? plan).kept.map((c, i) => [c.address, i]))
        const at = (t: RaceTarget): number => rank.get(t.address) ?? Infinity
        return pending.slice().sort((a, b) => a.preference - b.preference || at(a) - at(b))
      }
      const race = startRace(fresh(plan), raceOptions(deps, racer, order))
      running = race
      race.result.then((result) => {
        over = true
        if (failure) {
          result.winner?.socket.destroy()
          return reject(failure.error)
        }
        const lookups = progress?.lookups ?? []
        const resolution: Resolution = complete ?? {
          kind: 'hosts',
          domain: p.domain,
          implicit: p.implicit,
          hosts: hostsOf(lookups),
        }
        // The latest plan saw every answer given so far, the last one included.
        const pending = complete ? [] : pendingLookups(lookups)
        const final = stale && progress ? known(progress) : (latest ?? plan)
        resolve(afterRaceRecord(deps, racer, resolution, final, result, pending))
      }, reject)
    }
    const consider = (): void => {
      clearTimeout(startTimer)
      startTimer = undefined
      if (running || complete || !progress || (deps.shared && !deps.warmed)) return
      const p = progress
      // Nothing answered with an address yet: nothing to plan.
      if (!p.lookups.some((l) => l.answer?.addresses.length)) return
      const plan = known(p)
      const at = raceStartAt(p.lookups, plan.kept, (l) => answeredAt.get(l), {
        resolutionDelayMs: settings.dns.resolutionDelayMs,
        leadingFamily: (exchanges, preference) => leadingFamilyOf(p.domain, exchanges, preference, options()),
        demoted: (address) =>
          deps.health.addressFailed(address) || Boolean(deps.health.addressSlow?.(address)),
      })
      if (at === undefined) return
      const wait = at - performance.now()
      if (wait <= 0) begin(p, plan)
      // Whole milliseconds, so these timers share Node's list for their duration (see race.ts).
      else startTimer = setTimeout(consider, Math.ceil(wait))
    }
    const onProgress = (p: ResolutionProgress): void => {
      progress = p
      // What other workers and hosts learned about these MX hosts, asked for while their
      // addresses are looked up; no race starts before it answered (bounded by its timeout).
      if (deps.shared && !deps.warming) void warm(deps, warmRequestOf(hostsOf(p.lookups))).then(consider)
      // Answers after the race ended change nothing: the record names them as pending.
      if (over) return
      const now = performance.now()
      let addresses = false
      for (const l of p.lookups) {
        if (!l.answer || answeredAt.has(l)) continue
        answeredAt.set(l, now)
        addresses ||= l.answer.addresses.length > 0
      }
      if (!running) return consider()
      if (addresses) feed(p)
      else stale = true
    }

    resolveDestination(domain, deps.dns, { ...resolveOptions(deps), onProgress }).then(
      (resolution) => {
        clearTimeout(startTimer)
        startTimer = undefined
        complete = resolution
        if (!running)
          return void settle(resolution, deps, { ...options(), random: seededRandom(seed) }).then(
            resolve,
            reject,
          )
        running.close()
      },
      (error: unknown) => {
        clearTimeout(startTimer)
        startTimer = undefined
        if (!running) return reject(error)
        failure = { error }
        running.close()
      },
    )
  })
}

/** A greeting that is neither a welcome nor a temporary refusal: 5xx, or not SMTP at all. */
const refusedForGood = (a: AttemptRecord): boolean =>
  a.outcome === 'failed' && a.greeting !== undefined && !(a.replyCode !== undefined && a.replyCode < 500)

/**
 * What a race, or a probe shaped as one, teaches: the health cache, and the connect times and
 * egress evidence learnt across destinations.
 */
export function learnFrom(
  health: HealthCache,
  learned: Learned | undefined,
  result: RaceResult<RaceSocket>,
  attemptDelayMs: number,
): void {
  recordRace(health, result, attemptDelayMs)
  if (learned) learnFromRace(learned, result, attemptDelayMs)
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
    } else if (a.outcome === 'cancelled' && waited >= (a.delayMs ?? attemptDelayMs))
      health.record(address, family, exchange, { ok: false, slow: true, latencyMs: waited, at })
  }
}
