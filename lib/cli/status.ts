// `status`: what a running Haraka's plugin has seen, read from its /metrics endpoint and
// summed per family: attempts by outcome, deliveries, fallbacks, filtered addresses by reason,
// the plugin's deferrals and bounces by status, the race durations, this host's IPv6 egress,
// families and learnt attempt delay, and the watched domains' latest results.

import type { Family } from '../classify'
import { ATTEMPT_OUTCOMES, type AttemptOutcomeLabel, METRIC } from '../metrics'
import { ExpositionError, parseExposition, type Sample } from './prom-text'

export interface FamilyStatus {
  /** Race and Haraka's own connects together. */
  attempts: Record<AttemptOutcomeLabel, number>
  deliveries: number
  /** Messages that started on this family and connected last over the other. */
  fellBack: number
  filtered: Record<string, number>
}

export interface RaceSummary {
  count: number
  /** Mean, and quantiles estimated from the histogram buckets, in ms; null without races. */
  meanMs: number | null
  p50Ms: number | null
  p90Ms: number | null
  p99Ms: number | null
}

/** A watched domain's latest round, per family it has addresses of. */
export interface WatchedFamilyStatus {
  /** Some address greeted in the latest round; null when the latest round planned none. */
  up: boolean | null
  /** The fastest greeting of the latest round; null when none greeted. */
  connectMs: number | null
  /** Probes since the start, by outcome. */
  probes: Record<string, number>
}

export interface WatchedStatus {
  domain: string
  /** When its latest round ended, ISO 8601; null before the first. */
  lastProbe: string | null
  families: Partial<Record<Family, WatchedFamilyStatus>>
}

/** What the plugin knows of its own host; null where the endpoint did not say. */
export interface HostStatus {
  /** IPv6 egress judged impaired: new destinations start with IPv4. */
  ipv6EgressImpaired: boolean | null
  /** The family has a usable source address (null with the connectivity check off). */
  familyUsable: Record<Family, boolean | null>
  /** The attempt delay an MX host without connect times of its own gets, ms. */
  attemptDelayMs: Record<Family, number | null>
}

export interface StatusReport {
  url: string
  families: Record<Family, FamilyStatus>
  deferrals: Record<string, number>
  bounces: Record<string, number>
  race: RaceSummary
  healthEntries: number | null
  host: HostStatus
  /** The [watch] domains, by name. */
  watched: WatchedStatus[]
}

/** The endpoint did not answer with metrics: exit status 1. */
export class EndpointError extends Error {}

const emptyFamily = (): FamilyStatus => ({
  attempts: Object.fromEntries(ATTEMPT_OUTCOMES.map((o) => [o, 0])) as Record<AttemptOutcomeLabel, number>,
  deliveries: 0,
  fellBack: 0,
  filtered: {},
})

const isFamily = (v: string | undefined): v is Family => v === 'ipv4' || v === 'ipv6'
const add = (to: Record<string, number>, key: string, n: number): void => {
  to[key] = (to[key] ?? 0) + n
}

/**
 * The q-quantile of a cumulative histogram, by linear interpolation inside the bucket that
 * holds it (as PromQL's histogram_quantile); the last finite bound when it lies in +Inf.
 */
export function bucketQuantile(q: number, buckets: Array<{ le: number; count: number }>): number | null {
  const sorted = [...buckets].sort((a, b) => a.le - b.le)
  const total = sorted.at(-1)?.count ?? 0
  if (!total) return null
  const rank = q * total
  let lower = 0
  let below = 0
  for (const b of sorted) {
    if (b.count >= rank) {
      if (b.le === Infinity) return lower
      const inBucket = b.count - below
      return inBucket ? lower + ((b.le - lower) * (rank - below)) / inBucket : b.le
    }
    lower = b.le
    below = b.count
  }
  return lower
}

/** The report from the samples of a /metrics page. */
export function summarize(url: string, samples: Sample[]): StatusReport {
  const families = { ipv4: emptyFamily(), ipv6: emptyFamily() }
  const report: StatusReport = {
    url,
    families,
    deferrals: {},
    bounces: {},
    race: { count: 0, meanMs: null, p50Ms: null, p90Ms: null, p99Ms: null },
    healthEntries: null,
    host: {
      ipv6EgressImpaired: null,
      familyUsable: { ipv4: null, ipv6: null },
      attemptDelayMs: { ipv4: null, ipv6: null },
    },
    watched: [],
  }
  const watched = new Map<string, WatchedStatus>()
  const watchedDomain = (domain: string): WatchedStatus => {
    let w = watched.get(domain)
    if (!w) watched.set(domain, (w = { domain, lastProbe: null, families: {} }))
    return w
  }
  const watchedFamily = (domain: string, family: Family): WatchedFamilyStatus =>
    (watchedDomain(domain).families[family] ??= { up: null, connectMs: null, probes: {} })
  const buckets: Array<{ le: number; count: number }> = []
  let sumSeconds = 0
  for (const s of samples) {
    const { family, outcome, from, reason, status, le } = s.labels
    switch (s.name) {
      case METRIC.attempts:
        if (isFamily(family) && (ATTEMPT_OUTCOMES as readonly string[]).includes(outcome))
          families[family].attempts[outcome as AttemptOutcomeLabel] += s.value
        break
      case METRIC.deliveries:
        if (isFamily(family)) families[family].deliveries += s.value
        break
      case METRIC.fallbacks:
        if (isFamily(from)) families[from].fellBack += s.value
        break
      case METRIC.filtered:
        if (isFamily(family) && reason && s.value) add(families[family].filtered, reason, s.value)
        break
      case METRIC.deferrals:
        if (status && s.value) add(report.deferrals, status, s.value)
        break
      case METRIC.bounces:
        if (status && s.value) add(report.bounces, status, s.value)
        break
      case `${METRIC.raceDuration}_bucket`:
        if (le !== undefined) buckets.push({ le: le === '+Inf' ? Infinity : Number(le), count: s.value })
        break
      case `${METRIC.raceDuration}_sum`:
        sumSeconds = s.value
        break
      case `${METRIC.raceDuration}_count`:
        report.race.count = s.value
        break
      case METRIC.healthEntries:
        report.healthEntries = s.value
        break
      case METRIC.egressImpaired:
        report.host.ipv6EgressImpaired = s.value >= 1
        break
      case METRIC.familyUsable:
        if (isFamily(family)) report.host.familyUsable[family] = s.value >= 1
        break
      case METRIC.attemptDelay:
        if (isFamily(family) && Number.isFinite(s.value))
          report.host.attemptDelayMs[family] = Math.round(s.value * 1000)
        break
      case METRIC.watchUp:
        if (s.labels.domain && isFamily(family)) watchedFamily(s.labels.domain, family).up = s.value >= 1
        break
      case METRIC.watchConnect:
        if (s.labels.domain && isFamily(family))
          watchedFamily(s.labels.domain, family).connectMs = Math.round(s.value * 1000)
        break
      case METRIC.watchLastProbe:
        if (s.labels.domain && Number.isFinite(s.value))
          watchedDomain(s.labels.domain).lastProbe = new Date(s.value * 1000).toISOString()
        break
      case METRIC.watchProbes:
        if (s.labels.domain && isFamily(family) && outcome && s.value)
          add(watchedFamily(s.labels.domain, family).probes, outcome, s.value)
        break
    }
  }
  report.watched = [...watched.values()].sort((a, b) => a.domain.localeCompare(b.domain))
  if (report.race.count > 0) {
    const ms = (seconds: number | null): number | null =>
      seconds === null ? null : Math.round(seconds * 1000)
    report.race.meanMs = ms(sumSeconds / report.race.count)
    report.race.p50Ms = ms(bucketQuantile(0.5, buckets))
    report.race.p90Ms = ms(bucketQuantile(0.9, buckets))
    report.race.p99Ms = ms(bucketQuantile(0.99, buckets))
  }
  return report
}

/** Fetches and reads the endpoint; an EndpointError says why it gave no metrics. */
export async function fetchStatus(url: string, timeoutMs: number): Promise<StatusReport> {
  let text: string
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(timeoutMs), redirect: 'error' })
    text = await res.text()
    if (!res.ok) throw new EndpointError(`${url} answered ${res.status} ${res.statusText}`.trim())
  } catch (err) {
    if (err instanceof EndpointError) throw err
    throw new EndpointError(`no answer from ${url}: ${whyFetchFailed(err, timeoutMs)}`)
  }
  let samples: Sample[]
  try {
    samples = parseExposition(text).samples
  } catch (err) {
    if (err instanceof ExpositionError)
      throw new EndpointError(`${url} gave no Prometheus metrics (${err.message})`)
    throw err
  }
  if (!samples.some((s) => s.name.startsWith('happy_eyeballs_'))) {
    throw new EndpointError(
      `${url} has no happy_eyeballs_ metrics: is it the plugin's [metrics] listen endpoint?`,
    )
  }
  return summarize(url, samples)
}

/** `connect ECONNREFUSED 127.0.0.1:9464`, `timed out after 5000 ms`: fetch hides it in a cause. */
function whyFetchFailed(err: unknown, timeoutMs: number): string {
  const e = err as { name?: string; message?: string; cause?: { code?: string; message?: string } }
  if (e?.name === 'TimeoutError' || e?.name === 'AbortError') return `timed out after ${timeoutMs} ms`
  return e?.cause?.message ?? e?.cause?.code ?? e?.message ?? String(err)
}
