// The command's output, text or JSON: the plan rendered from the delivery record, the probe
// from its report.

import type { Family } from '../classify'
import { type DeliveryRecord, showStatus, STATUS } from '../delivery'
import { describeEgressLead, describeNotQueried, describePlan } from '../plan'
import { ATTEMPT_OUTCOMES, FAMILIES } from '../metrics'
import type { AddressProbe, ProbeReport } from './probe'
import type { StatusReport, WatchedStatus } from './status'

const pad = (s: string, n: number): string => (s.length >= n ? s : s + ' '.repeat(n - s.length))

export interface PlanJson {
  domain: string
  outcome: DeliveryRecord['decision']['action']
  kept: Array<{ address: string; family: Family; exchange: string; preference: number }>
  filtered: Array<{ address: string; exchange: string; reason: string }>
  dnsErrors: string[]
  mx: Array<{ exchange: string; preference: number; addresses: string[]; errors: string[] }>
  implicitMx: boolean
  /** Families not looked up: this host cannot send over them. */
  notQueried?: Array<{ family: Family; reason: string }>
  /** MX hosts started with IPv4 because this host's IPv6 egress is impaired. */
  ipv4FirstForEgress?: string[]
  status?: string
  reason?: string
}

export function planJson(r: DeliveryRecord): PlanJson {
  const { resolution: res, plan, decision: d } = r
  const out: PlanJson = {
    domain: r.domain,
    outcome: d.action,
    kept: [],
    filtered: [],
    dnsErrors: [],
    mx: [],
    implicitMx: res.kind === 'hosts' && res.implicit,
  }
  if (d.action !== 'deliver') {
    out.status = showStatus(d.status)
    out.reason = d.reason
  }
  if (plan) {
    out.kept = plan.kept.map((c) => ({
      address: c.address,
      family: c.family,
      exchange: c.exchange,
      preference: c.preference,
    }))
    out.filtered = plan.filtered.map((f) => ({ address: f.address, exchange: f.exchange, reason: f.reason }))
    out.dnsErrors = plan.dnsErrors.slice()
    if (plan.notQueried) out.notQueried = plan.notQueried.map((n) => ({ ...n }))
    if (plan.ipv4FirstForEgress) out.ipv4FirstForEgress = plan.ipv4FirstForEgress.slice()
  }
  if (res.kind === 'hosts') {
    out.mx = res.hosts.map((h) => ({
      exchange: h.exchange,
      preference: h.preference,
      addresses: h.addresses.slice(),
      errors: h.errors.slice(),
    }))
  }
  return out
}

export function planText(r: DeliveryRecord, port: number): string {
  const lines: string[] = []
  const { resolution: res, plan, decision: d } = r
  if (res.kind === 'hosts') {
    lines.push(
      res.implicit
        ? `${r.domain}: no MX records, the domain itself is the implicit MX (RFC 5321 §5.1)`
        : `${r.domain}: MX hosts`,
    )
    for (const h of res.hosts) {
      const addrs = h.addresses.length ? h.addresses.join(', ') : 'no addresses'
      const errs = h.errors.length ? ` (${h.errors.join(', ')})` : ''
      lines.push(`  ${pad(String(h.preference), 5)} ${h.exchange}: ${addrs}${errs}`)
    }
  }
  if (plan) {
    lines.push(`connect order (port ${port}):`)
    if (!plan.kept.length) lines.push('  none')
    const width = Math.max(0, ...plan.kept.map((c) => c.address.length))
    plan.kept.forEach((c, i) => {
      lines.push(
        `  ${i + 1}. ${pad(c.address, width)}  ${c.family}  ${c.exchange} (preference ${c.preference})`,
      )
    })
    if (plan.filtered.length) {
      lines.push('filtered:')
      for (const f of plan.filtered) lines.push(`  ${f.address} of ${f.exchange}: ${f.reason}`)
    }
    if (plan.dnsErrors.length) {
      lines.push('dns errors:')
      for (const e of plan.dnsErrors) lines.push(`  ${e}`)
    }
    if (plan.notQueried?.length) lines.push(`this host: ${describeNotQueried(plan.notQueried)}`)
    if (plan.ipv4FirstForEgress?.length)
      lines.push(`this host: ${describeEgressLead(plan.ipv4FirstForEgress)}`)
    lines.push(`log: ${describePlan(plan)}`)
  }
  switch (d.action) {
    case 'deliver': {
      const n = d.targets.length
      lines.push(`outcome: deliver (${n} address${n === 1 ? '' : 'es'}, ${d.targets[0]?.address} first)`)
      break
    }
    case 'null-mx':
      lines.push(`outcome: null MX: ${r.domain} accepts no mail (Haraka bounces ${showStatus(d.status)})`)
      break
    default:
      lines.push(`outcome: ${d.action} ${showStatus(d.status)}: ${d.reason}`)
  }
  return lines.join('\n') + '\n'
}

function probeResultText(p: AddressProbe): string {
  if (p.connected) return `connected in ${p.ms} ms`
  // A timeout's text already says how long.
  if (p.error)
    return p.ms === undefined || p.error.startsWith('no answer') ? p.error : `${p.error} after ${p.ms} ms`
  return 'not tried'
}

function probeRaceText(p: AddressProbe): string {
  if (p.race === 'not tried') return 'race: not tried'
  const at = `+${p.raceStartMs} ms`
  return `race: ${p.race === 'connected' ? 'winner' : p.race} (started ${at})`
}

export function probeText(p: ProbeReport): string {
  const lines: string[] = [
    `probe port ${p.port}, attempt delay ${p.attemptDelayMs} ms, timeout ${p.timeoutMs} ms` +
      (p.raceEnabled ? '' : ' (racing disabled in the config)'),
  ]
  const width = Math.max(0, ...p.addresses.map((a) => a.target.address.length))
  const results = p.addresses.map(probeResultText)
  const rwidth = Math.max(0, ...results.map((r) => r.length))
  p.addresses.forEach((a, i) => {
    lines.push(
      `  ${pad(a.target.address, width)}  ${a.target.family}  ${pad(results[i], rwidth)}  ${probeRaceText(a)}`,
    )
  })
  lines.push(`ipv4: ${p.families.ipv4}`, `ipv6: ${p.families.ipv6}`)
  if (p.timeline) lines.push(`race: ${p.timeline}`)
  if (p.chosen) {
    const how = p.raceEnabled
      ? `the race winner with a ${p.attemptDelayMs} ms attempt delay`
      : 'the first address in plan order that connects'
    lines.push(`chosen: ${p.chosen.address} (${p.chosen.exchange}, ${p.chosen.family}): ${how}`)
  } else {
    lines.push(`chosen: none; the plugin would defer ${showStatus(STATUS.noAnswer)}: ${p.failure}`)
  }
  return lines.join('\n') + '\n'
}

export function probeJson(p: ProbeReport): object {
  return {
    port: p.port,
    attemptDelayMs: p.attemptDelayMs,
    timeoutMs: p.timeoutMs,
    raceEnabled: p.raceEnabled,
    addresses: p.addresses.map((a) => ({
      address: a.target.address,
      family: a.target.family,
      exchange: a.target.exchange,
      preference: a.target.preference,
      connected: a.connected,
      ...(a.ms !== undefined ? { ms: a.ms } : {}),
      ...(a.error !== undefined ? { error: a.error } : {}),
      race: a.race,
      ...(a.raceStartMs !== undefined ? { raceStartMs: a.raceStartMs } : {}),
    })),
    families: p.families,
    chosen: p.chosen
      ? { address: p.chosen.address, family: p.chosen.family, exchange: p.chosen.exchange }
      : null,
    timeline: p.timeline,
    ...(p.failure ? { failure: p.failure } : {}),
  }
}

const padLeft = (s: string, n: number): string => (s.length >= n ? s : ' '.repeat(n - s.length) + s)

/** `4.4.4 2, 4.4.1 1`: counts by key, most first; `none` when there are none. */
const byCount = (counts: Record<string, number>): string =>
  Object.entries(counts)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([k, n]) => `${k} ${n}`)
    .join(', ') || 'none'

/** `this host: IPv6 egress impaired; sends from IPv4 yes, IPv6 no; attempt delay IPv4 250 ms, IPv6 120 ms` */
function hostLine(h: StatusReport['host']): string | undefined {
  const parts: string[] = []
  if (h.ipv6EgressImpaired !== null)
    parts.push(
      h.ipv6EgressImpaired ? 'IPv6 egress impaired (new destinations start with IPv4)' : 'IPv6 egress works',
    )
  const fams = ['ipv4', 'ipv6'] as const
  if (fams.some((f) => h.familyUsable[f] !== null))
    parts.push(`sends from ${fams.map((f) => `${f} ${h.familyUsable[f] ? 'yes' : 'no'}`).join(', ')}`)
  if (fams.some((f) => h.attemptDelayMs[f] !== null))
    parts.push(
      `attempt delay for new MX hosts ${fams.map((f) => `${f} ${h.attemptDelayMs[f] ?? '?'} ms`).join(', ')}`,
    )
  return parts.length ? `this host: ${parts.join('; ')}` : undefined
}

/** `watched example.org (latest 2026-12-01T10:40:16.000Z): ipv6 down, ipv4 up 3 ms` */
function watchedLine(w: WatchedStatus): string {
  const families = (['ipv6', 'ipv4'] as const).flatMap((f) => {
    const s = w.families[f]
    if (!s || s.up === null) return []
    const state = s.up ? `up${s.connectMs === null ? '' : ` ${s.connectMs} ms`}` : 'down'
    const probes = byCount(s.probes)
    return [`${f} ${state} (probes: ${probes})`]
  })
  const when = w.lastProbe ? `latest ${w.lastProbe}` : 'not probed yet'
  return `watched ${w.domain} (${when}): ${families.join(', ') || 'no address probed'}`
}

export function statusText(r: StatusReport): string {
  const rows: Array<[string, ...number[]]> = []
  const per = (pick: (f: StatusReport['families']['ipv4']) => number): number[] =>
    FAMILIES.map((f) => pick(r.families[f]))
  for (const outcome of ATTEMPT_OUTCOMES)
    rows.push([`attempts ${outcome}`, ...per((f) => f.attempts[outcome])])
  rows.push(['deliveries', ...per((f) => f.deliveries)])
  rows.push(['fell back to the other family', ...per((f) => f.fellBack)])
  const reasons = [...new Set(FAMILIES.flatMap((f) => Object.keys(r.families[f].filtered)))].sort()
  for (const reason of reasons) rows.push([`filtered ${reason}`, ...per((f) => f.filtered[reason] ?? 0)])
  if (!reasons.length) rows.push(['filtered', 0, 0])
  const width = Math.max(...rows.map((row) => row[0].length))
  const lines = [
    `metrics from ${r.url}`,
    `${pad('', width)}  ${FAMILIES.map((f) => padLeft(f, 6)).join('  ')}`,
  ]
  for (const [label, ...counts] of rows)
    lines.push(`${pad(label, width)}  ${counts.map((n) => padLeft(String(n), 6)).join('  ')}`)
  lines.push(`deferrals by status: ${byCount(r.deferrals)}`)
  lines.push(`bounces by status: ${byCount(r.bounces)}`)
  const race = r.race
  lines.push(
    race.count
      ? `races: ${race.count}, mean ${race.meanMs} ms, p50 ${race.p50Ms} ms, p90 ${race.p90Ms} ms, p99 ${race.p99Ms} ms (from histogram buckets)`
      : 'races: none',
  )
  if (r.healthEntries !== null) lines.push(`health cache entries: ${r.healthEntries}`)
  const host = hostLine(r.host)
  if (host) lines.push(host)
  for (const w of r.watched) lines.push(watchedLine(w))
  return lines.join('\n') + '\n'
}

export function statusJson(r: StatusReport): StatusReport {
  return r
}
