// Prometheus metrics, every one read off a message's delivery record (its race, its plan and
// the connects Haraka made for it) or off Haraka's delivered hook: never off log text. Label
// values come from small fixed sets (families, outcomes, range names, DSN statuses), never
// from addresses or domains, so a flood of destinations cannot grow the series.
// The one exception, the watch metrics, carry the [watch] domains: the operator's own list.

import net from 'node:net'

import { Counter, Gauge, Histogram, Registry } from 'prom-client'

import { type Family, RANGE_NAMES } from './classify'
import { explainedFailure } from './connects'
import type { DeliveryRecord, Status } from './delivery'
import type { DomainWatch } from './watch'

export const FAMILIES: readonly Family[] = ['ipv4', 'ipv6']

/**
 * What became of one connect attempt. `greeting_refused` and `policy_refused` are counted
 * whenever a record carries them (a 4xx/5xx greeting, an IPv6 sender-policy refusal);
 * `cancelled` is a race attempt the race gave up on when another address won.
 */
export const ATTEMPT_OUTCOMES = [
  'connected',
  'refused',
  'unreachable',
  'timed_out',
  'greeting_refused',
  'policy_refused',
  'cancelled',
  'failed',
] as const
export type AttemptOutcomeLabel = (typeof ATTEMPT_OUTCOMES)[number]

/** Whose connect it was: the plugin's race, or Haraka's own connect to a planned address. */
export const ATTEMPT_SOURCES = ['race', 'haraka'] as const
export type AttemptSourceLabel = (typeof ATTEMPT_SOURCES)[number]

/** Error codes of a path that does not exist from here: no route, no such local address. */
const UNREACHABLE_CODES: ReadonlySet<string> = new Set([
  'ENETUNREACH',
  'EHOSTUNREACH',
  'EADDRNOTAVAIL',
  'EINVAL',
  'EAFNOSUPPORT',
  'ENETDOWN',
  'EHOSTDOWN',
])

const KNOWN_OUTCOMES: ReadonlySet<string> = new Set(ATTEMPT_OUTCOMES)

/** The code in an error text such as `connect ECONNREFUSED`, when there is one. */
const codeIn = (text: string | undefined): string | undefined => /\b(E[A-Z0-9]{2,})\b/.exec(text ?? '')?.[1]

/**
 * The outcome label of one attempt, from its outcome and its error code (or the code in its
 * error text). An outcome named like a label (`greeting refused`, `policy-refused`) is that
 * label, so outcomes a newer record carries are counted under their own names.
 */
export function attemptOutcome(outcome: string, code?: string, error?: string): AttemptOutcomeLabel {
  const named = outcome
    .trim()
    .toLowerCase()
    .replace(/[\s-]+/g, '_')
  if (named === 'abandoned') return 'cancelled'
  if (named !== 'failed' && KNOWN_OUTCOMES.has(named)) return named as AttemptOutcomeLabel
  if (named !== 'failed') return 'failed'
  const c = code ?? codeIn(error)
  if (c === 'ECONNREFUSED') return 'refused'
  if (c && UNREACHABLE_CODES.has(c)) return 'unreachable'
  if (c === 'ETIMEDOUT' || /\btimed? ?out\b|\bno answer in\b/i.test(error ?? '')) return 'timed_out'
  return 'failed'
}

/** Why an address was filtered: its range name, `blocked`, `not-an-ip-address`, or `other`. */
export function filterReason(reason: string): string {
  // `link-local`, `loopback, IPv4-mapped`, `unspecified, via NAT64`, `blocked by 10.0.0.0/8`
  const head = reason.split(',')[0].trim()
  if (head.startsWith('blocked by ')) return 'blocked'
  if (head === 'not an IP address') return 'not-an-ip-address'
  return RANGE_NAMES.has(head as never) ? head : 'other'
}

/** The family of an address as DNS gave it: an AAAA answer (a colon) is IPv6. */
export const familyOf = (address: string): Family => (address.includes(':') ? 'ipv6' : 'ipv4')

export interface AttemptObservation {
  family: Family
  by: AttemptSourceLabel
  outcome: AttemptOutcomeLabel
}

/** What one routed message adds to the metrics. */
export interface RecordObservations {
  attempts: AttemptObservation[]
  filtered: Array<{ family: Family; reason: string }>
  /** The message started on one family and its last connection was over the other. */
  fallback?: { from: Family; to: Family }
  /** How long the race took, when there was one. */
  raceSeconds?: number
}

/**
 * The race's attempts, then Haraka's own connects to the planned addresses (a raced socket
 * handed over is the race's connect, not a new one).
 */
export function observationsOf(record: DeliveryRecord): RecordObservations {
  const attempts: AttemptObservation[] = []
  const sequence: Array<{ family: Family; connected: boolean }> = []
  for (const a of record.race?.attempts ?? []) {
    attempts.push({
      family: a.target.family,
      by: 'race',
      outcome: attemptOutcome(a.outcome, a.code, a.error),
    })
    sequence.push({ family: a.target.family, connected: a.outcome === 'connected' })
  }
  for (const c of record.connects?.attempts ?? []) {
    if (c.by !== 'haraka' || net.isIP(c.address) === 0) continue
    const family = familyOf(c.address)
    sequence.push({ family, connected: c.outcome === 'connected' })
    if (!c.handedOver)
      attempts.push({ family, by: 'haraka', outcome: attemptOutcome(c.outcome, undefined, c.error) })
  }
  const first = sequence[0]?.family
  const last = sequence.filter((s) => s.connected).at(-1)?.family
  return {
    attempts,
    filtered: (record.plan?.filtered ?? []).map((f) => ({
      family: familyOf(f.address),
      reason: filterReason(f.reason),
    })),
    ...(first && last && first !== last ? { fallback: { from: first, to: last } } : {}),
    ...(record.race ? { raceSeconds: record.race.elapsedMs / 1000 } : {}),
  }
}

/** `4.4.4`, with the class the DSN shows: 5 on a bounce whatever the planned status. */
const statusText = (s: Status, final: boolean): string =>
  `${final ? 5 : Math.floor(s.code / 100)}.${s.subject}.${s.detail}`

/**
 * The DSN status this plugin set on a deferral (`final` false) or a bounce: its own decision,
 * Haraka's null MX bounce it asked for, or its explanation when Haraka ran out of the planned
 * addresses. Undefined when the failure is Haraka's or another plugin's.
 */
export function decidedStatus(record: DeliveryRecord, err: string, final: boolean): string | undefined {
  const d = record.decision
  // Haraka bounces a null MX with the status the plugin asked for; it sets no DSN of its own.
  if (d.action === 'null-mx') return final ? statusText(d.status, true) : undefined
  const explained = explainedFailure(record, err)
  return explained ? statusText(explained.status, final) : undefined
}

/** Seconds: from a fast loopback connect to a race at its default deadline and beyond. */
export const RACE_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60]

export const METRIC = {
  attempts: 'happy_eyeballs_connect_attempts_total',
  deliveries: 'happy_eyeballs_deliveries_total',
  deferrals: 'happy_eyeballs_deferrals_total',
  bounces: 'happy_eyeballs_bounces_total',
  fallbacks: 'happy_eyeballs_family_fallbacks_total',
  filtered: 'happy_eyeballs_filtered_addresses_total',
  raceDuration: 'happy_eyeballs_race_duration_seconds',
  healthEntries: 'happy_eyeballs_health_entries',
  watchUp: 'happy_eyeballs_watch_up',
  watchProbes: 'happy_eyeballs_watch_probes_total',
  watchLastProbe: 'happy_eyeballs_watch_last_probe_timestamp_seconds',
  watchConnect: 'happy_eyeballs_watch_connect_seconds',
  redisErrors: 'happy_eyeballs_redis_errors_total',
  egressImpaired: 'happy_eyeballs_ipv6_egress_impaired',
  familyUsable: 'happy_eyeballs_host_family_usable',
  attemptDelay: 'happy_eyeballs_attempt_delay_seconds',
} as const

/** What this process has learnt about its own host, read at each scrape. */
export interface LearnedGauges {
  ipv6EgressImpaired: boolean
  /** The families this host can send from; absent when the check is off ([main] connectivity_check_s=0). */
  usableFamilies?: readonly Family[]
  /** The attempt delay an MX host without connect times of its own gets now, per family. */
  attemptDelayMs: Record<Family, number>
}

/** The plugin's metrics on a registry of their own (not prom-client's global one). */
export class PluginMetrics {
  readonly registry: Registry
  private readonly attempts: Counter<'family' | 'outcome' | 'by'>
  private readonly deliveries: Counter<'family'>
  private readonly deferrals: Counter<'status'>
  private readonly bounces: Counter<'status'>
  private readonly fallbacks: Counter<'from' | 'to'>
  private readonly filtered: Counter<'family' | 'reason'>
  private readonly raceDuration: Histogram
  private readonly redisErrorCount: Counter
  private healthSize: () => number = () => 0
  private learned: () => LearnedGauges | undefined = () => undefined
  // A message's record is counted once, whichever of its hooks sees it first.
  private readonly counted = new WeakSet<DeliveryRecord>()
  // Watched domains are labels: the operator's [watch] list bounds them.
  private readonly watchUp: Gauge<'domain' | 'family'>
  private readonly watchProbes: Counter<'domain' | 'family' | 'outcome'>
  private readonly watchLastProbe: Gauge<'domain'>
  private readonly watchConnect: Gauge<'domain' | 'family'>
  /** Per watched domain, its probe series (`family outcome`), to drop them when it goes. */
  private readonly watchSeries = new Map<string, Set<string>>()
  // Every message counts a few attempts and a delivery: their children are looked up once
  // (the label sets are small and fixed), not through prom-client's label handling each time.
  private readonly attemptChildren = new Map<string, Counter.Internal>()
  private readonly deliveryChildren = new Map<Family, Counter.Internal>()

  constructor(registry: Registry = new Registry()) {
    this.registry = registry
    const registers = [registry]
    this.attempts = new Counter({
      name: METRIC.attempts,
      help: 'Connect attempts to MX addresses, by family, outcome and whose attempt it was (race or haraka)',
      labelNames: ['family', 'outcome', 'by'],
      registers,
    })
    this.deliveries = new Counter({
      name: METRIC.deliveries,
      help: 'Messages this plugin routed that Haraka delivered, by family of the delivering address',
      labelNames: ['family'],
      registers,
    })
    this.deferrals = new Counter({
      name: METRIC.deferrals,
      help: 'Deferrals whose DSN status this plugin set, by status',
      labelNames: ['status'],
      registers,
    })
    this.bounces = new Counter({
      name: METRIC.bounces,
      help: 'Bounces whose DSN status this plugin set, by status',
      labelNames: ['status'],
      registers,
    })
    this.fallbacks = new Counter({
      name: METRIC.fallbacks,
      help: 'Messages that started on one family and connected last over the other',
      labelNames: ['from', 'to'],
      registers,
    })
    this.filtered = new Counter({
      name: METRIC.filtered,
      help: 'MX addresses dropped from a plan, by family and reason (range name, blocked, not-an-ip-address)',
      labelNames: ['family', 'reason'],
      registers,
    })
    this.raceDuration = new Histogram({
      name: METRIC.raceDuration,
      help: 'How long each race took, from its first connect to its winner or its end',
      buckets: RACE_BUCKETS,
      registers,
    })
    const healthSize = (): number => this.healthSize()
    new Gauge({
      name: METRIC.healthEntries,
      help: 'Entries in the health cache (addresses and MX host families with a recent outcome)',
      registers,
      collect() {
        this.set(healthSize())
      },
    })
    // This host's state as each worker sees it. In cluster mode the master serves egress as
    // impaired when some worker judges it so, a family as usable when every worker can use it,
    // and the workers' mean delay.
    const learned = (): LearnedGauges | undefined => this.learned()
    new Gauge({
      name: METRIC.egressImpaired,
      help: "1 when this host's IPv6 egress is judged impaired (new destinations start with IPv4), else 0",
      aggregator: 'max',
      registers,
      collect() {
        const l = learned()
        if (l) this.set(l.ipv6EgressImpaired ? 1 : 0)
        else this.reset()
      },
    })
    new Gauge({
      name: METRIC.familyUsable,
      help: 'Whether this host can send from the family (a usable source address): 1 or 0',
      labelNames: ['family'],
      aggregator: 'min',
      registers,
      collect() {
        const usable = learned()?.usableFamilies
        if (!usable) return this.reset()
        for (const family of FAMILIES) this.labels({ family }).set(usable.includes(family) ? 1 : 0)
      },
    })
    new Gauge({
      name: METRIC.attemptDelay,
      help: "The attempt delay an MX host without connect times of its own gets, learnt from this host's connects",
      labelNames: ['family'],
      aggregator: 'average',
      registers,
      collect() {
        const l = learned()
        if (!l) return this.reset()
        for (const family of FAMILIES) this.labels({ family }).set(l.attemptDelayMs[family] / 1000)
      },
    })
    // In cluster mode each worker watches for its own cache: the master serves a family as up
    // only when every worker reached it, the latest probe, the mean time, the summed probes.
    this.watchUp = new Gauge({
      name: METRIC.watchUp,
      help: 'Watched domain: 1 when some address of the family greeted in the latest round, else 0',
      labelNames: ['domain', 'family'],
      aggregator: 'min',
      registers,
    })
    this.watchProbes = new Counter({
      name: METRIC.watchProbes,
      help: 'Probes of watched domains, by family and outcome',
      labelNames: ['domain', 'family', 'outcome'],
      registers,
    })
    this.watchLastProbe = new Gauge({
      name: METRIC.watchLastProbe,
      help: 'Watched domain: when its latest round ended (Unix time)',
      labelNames: ['domain'],
      aggregator: 'max',
      registers,
    })
    this.watchConnect = new Gauge({
      name: METRIC.watchConnect,
      help: "Watched domain: the family's fastest time to the greeting in the latest round",
      labelNames: ['domain', 'family'],
      aggregator: 'average',
      registers,
    })
    this.redisErrorCount = new Counter({
      name: METRIC.redisErrors,
      help: 'Redis commands of the shared state that failed or timed out, and Redis connection errors',
      registers,
    })
    // Zeros from the start, so a rate is right from the first message.
    for (const family of FAMILIES) {
      this.deliveries.labels({ family }).inc(0)
      for (const by of ATTEMPT_SOURCES)
        for (const outcome of ATTEMPT_OUTCOMES) this.attempts.labels({ family, outcome, by }).inc(0)
    }
    this.fallbacks.labels({ from: 'ipv6', to: 'ipv4' }).inc(0)
    this.fallbacks.labels({ from: 'ipv4', to: 'ipv6' }).inc(0)
  }

  /** Where the health entries gauge reads its value. */
  healthFrom(size: () => number): void {
    this.healthSize = () => {
      try {
        return size()
      } catch {
        return 0
      }
    }
  }

  /** Where the gauges of this host's egress, families and learnt delay read their values. */
  learnedFrom(read: () => LearnedGauges | undefined): void {
    this.learned = () => {
      try {
        return read()
      } catch {
        return undefined
      }
    }
  }

  /** Counts a message's route once: its attempts, filtered addresses, fallback and race. */
  route(record: DeliveryRecord): void {
    if (this.counted.has(record)) return
    this.counted.add(record)
    const o = observationsOf(record)
    for (const a of o.attempts) this.attemptOf(a).inc()
    for (const f of o.filtered) this.filtered.labels({ family: f.family, reason: f.reason }).inc()
    if (o.fallback) this.fallbacks.labels(o.fallback).inc()
    if (o.raceSeconds !== undefined) this.raceDuration.observe(o.raceSeconds)
  }

  /** Haraka's delivered hook for a message this plugin routed; `ip` the delivering address. */
  delivered(record: DeliveryRecord, ip: unknown): void {
    this.route(record)
    const version = typeof ip === 'string' ? net.isIP(ip) : 0
    if (version) this.deliveryOf(version === 6 ? 'ipv6' : 'ipv4').inc()
  }

  private attemptOf(a: AttemptObservation): Counter.Internal {
    const key = `${a.family} ${a.outcome} ${a.by}`
    let child = this.attemptChildren.get(key)
    if (!child) {
      child = this.attempts.labels({ family: a.family, outcome: a.outcome, by: a.by })
      this.attemptChildren.set(key, child)
    }
    return child
  }

  private deliveryOf(family: Family): Counter.Internal {
    let child = this.deliveryChildren.get(family)
    if (!child) {
      child = this.deliveries.labels({ family })
      this.deliveryChildren.set(family, child)
    }
    return child
  }

  /** Haraka's deferred hook (`final` false) or bounce hook for a message this plugin routed. */
  failed(record: DeliveryRecord, err: string, final: boolean): void {
    this.route(record)
    const status = decidedStatus(record, err, final)
    if (status) (final ? this.bounces : this.deferrals).labels({ status }).inc()
  }

  /** A watched domain's latest round: up per family, its probes, when, the fastest greeting. */
  watched(r: DomainWatch): void {
    const outcomes = this.watchSeries.get(r.domain) ?? new Set<string>()
    this.watchSeries.set(r.domain, outcomes)
    for (const p of r.probes) outcomes.add(`${p.family} ${p.outcome}`)
    for (const p of r.probes)
      this.watchProbes.labels({ domain: r.domain, family: p.family, outcome: p.outcome }).inc()
    for (const family of FAMILIES) {
      const f = r.families[family]
      if (f) this.watchUp.labels({ domain: r.domain, family }).set(f.up ? 1 : 0)
      else this.watchUp.remove({ domain: r.domain, family })
      if (f?.connectMs !== undefined)
        this.watchConnect.labels({ domain: r.domain, family }).set(f.connectMs / 1000)
      else this.watchConnect.remove({ domain: r.domain, family })
    }
    this.watchLastProbe.labels({ domain: r.domain }).set(r.at / 1000)
  }

  /** Drops the series of domains no longer watched. */
  watchOnly(domains: readonly string[]): void {
    const keep = new Set(domains)
    for (const [domain, outcomes] of this.watchSeries) {
      if (keep.has(domain)) continue
      for (const family of FAMILIES) {
        this.watchUp.remove({ domain, family })
        this.watchConnect.remove({ domain, family })
      }
      for (const key of outcomes) {
        const [family, outcome] = key.split(' ')
        this.watchProbes.remove({ domain, family, outcome })
      }
      this.watchLastProbe.remove({ domain })
      this.watchSeries.delete(domain)
    }
  }

  /** A failed or timed-out command of the shared state, or a Redis connection error. */
  redisError(): void {
    this.redisErrorCount.inc()
  }

  /** The Prometheus text format. */
  text(): Promise<string> {
    return this.registry.metrics()
  }
}

/** The process's metrics: one set for every plugin instance and reload, as Haraka has one process. */
export const processMetrics = new PluginMetrics()
