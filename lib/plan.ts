// From a DNS resolution to the ordered list of addresses worth connecting to, with every
// dropped address and the reason kept for the log and the deferral text.

import { classifyAddress, type Family, type FilterPolicy } from './classify'
import type { HealthView } from './health'
import { describeRule, familyPolicyFor, type FamilyRules } from './host-patterns'
import { type Candidate, type EgressLead, orderCandidates, type OrderNotes } from './order'
import type { PolicyView } from './policy-memory'
import type { MxHost } from './resolve'
import type { SwitchedHost } from './sender-policy'

export interface FilteredEntry {
  exchange: string
  address: string
  reason: string
}

export interface Plan {
  domain: string
  /** Connect targets, in the order to try them. */
  kept: Candidate[]
  filtered: FilteredEntry[]
  /** Per-host DNS failures that did not stop the plan (`mx.example AAAA ETIMEOUT`). */
  dnsErrors: string[]
  /** Families not looked up because this host cannot send over them, with why. */
  notQueried?: Array<{ family: Family; reason: string }>
  /** MX hosts started with IPv4 because this host's IPv6 egress is impaired (lib/egress). */
  ipv4FirstForEgress?: string[]
}

export interface PlanOptions {
  policy: FilterPolicy
  prefer: Family
  firstFamilyCount: number
  maxAddresses: number
  random?: () => number
  health?: HealthView
  /** Per-destination family rules ([family]). */
  family?: FamilyRules
  /** MX hosts that refused IPv6 by sender policy lately. */
  senderPolicy?: PolicyView
  /** MX hosts this message was switched to IPv4 for (hmail.todo.notes). */
  switched?: readonly SwitchedHost[]
  /** Why this host cannot connect to an address over its family (lib/connectivity); undefined: it can. */
  unusable?(address: string, family: Family): string | undefined
  /** Families resolution left out for lack of connectivity, for the record. */
  notQueried?: Array<{ family: Family; reason: string }>
  /** This host's IPv6 egress: impaired, new destinations start with IPv4. */
  egress?: EgressLead
  /**
   * MX hosts whose A lookup has not answered yet: one that refused this sender over IPv6
   * keeps its IPv6 out until it is known whether IPv4 is there.
   */
  ipv4Pending?: ReadonlySet<string>
}

const isoSeconds = (ms: number): string => new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z')

/**
 * Why the IPv6 addresses of a host that refused this sender over IPv6 are left out: the
 * message's own switch first, else the remembered refusal.
 */
function ipv6RefusedReason(exchange: string, opts: PlanOptions): string | undefined {
  const name = exchange.toLowerCase()
  if (opts.switched?.some((s) => s.exchange.toLowerCase() === name))
    return 'IPv6 refused by policy for this message'
  const remembered = opts.senderPolicy?.ipv6Refused(exchange)
  return remembered ? `IPv6 refused by policy (until ${isoSeconds(remembered.until)})` : undefined
}

export function planAddresses(domain: string, hosts: MxHost[], opts: PlanOptions): Plan {
  const candidates: Candidate[] = []
  const filtered: FilteredEntry[] = []
  const dnsErrors: string[] = []

  const hostPrefer = new Map<string, Family>()

  for (const host of hosts) {
    for (const e of host.errors) dnsErrors.push(`${host.exchange} ${e}`)
    const rules = familyPolicyFor(domain, host.exchange, opts.family)
    if (rules.prefer) hostPrefer.set(host.exchange, rules.prefer)
    const usable: Candidate[] = []
    for (const raw of host.addresses) {
      const c = classifyAddress(raw, opts.policy)
      if (!c.routable) {
        filtered.push({ exchange: host.exchange, address: c.input, reason: c.reason })
        continue
      }
      const excludedBy = rules.excluded.get(c.family)
      if (excludedBy) {
        filtered.push({ exchange: host.exchange, address: c.address, reason: describeRule(excludedBy) })
        continue
      }
      const unusable = opts.unusable?.(c.address, c.family)
      if (unusable) {
        filtered.push({ exchange: host.exchange, address: c.address, reason: unusable })
        continue
      }
      usable.push({
        address: c.address,
        family: c.family,
        exchange: host.exchange,
        preference: host.preference,
      })
    }
    // A host that refused this sender over IPv6 keeps its IPv6 only when it has no usable IPv4.
    const refused =
      usable.some((c) => c.family === 'ipv4') || opts.ipv4Pending?.has(host.exchange)
        ? ipv6RefusedReason(host.exchange, opts)
        : undefined
    for (const c of usable) {
      if (refused && c.family === 'ipv6')
        filtered.push({ exchange: c.exchange, address: c.address, reason: refused })
      else candidates.push(c)
    }
  }

  const notes: OrderNotes = { ipv4FirstForEgress: [] }
  const kept = orderCandidates(candidates, { ...opts, hostPrefer }, notes)
  return {
    domain,
    kept,
    filtered,
    dnsErrors,
    ...(opts.notQueried?.length ? { notQueried: opts.notQueried } : {}),
    ...(notes.ipv4FirstForEgress.length ? { ipv4FirstForEgress: notes.ipv4FirstForEgress } : {}),
  }
}

/**
 * The family these MX hosts of one preference would be tried with first once both families
 * have answered, by the plan's own rules (family rules, sender-policy refusals, health): the
 * answer worth a Resolution Delay (RFC 8305 §3) when the other family answered first.
 */
export function leadingFamilyOf(
  domain: string,
  exchanges: readonly string[],
  preference: number,
  opts: PlanOptions,
): Family {
  const candidates: Candidate[] = []
  const hostPrefer = new Map<string, Family>()
  for (const exchange of exchanges) {
    const rules = familyPolicyFor(domain, exchange, opts.family)
    if (rules.prefer) hostPrefer.set(exchange, rules.prefer)
    const v4 = !rules.excluded.get('ipv4')
    const v6 = !rules.excluded.get('ipv6') && !(v4 && ipv6RefusedReason(exchange, opts))
    // Stand-ins, one per family: the order asks the health of families, never of these.
    if (v6) candidates.push({ address: `ipv6 of ${exchange}`, family: 'ipv6', exchange, preference })
    if (v4) candidates.push({ address: `ipv4 of ${exchange}`, family: 'ipv4', exchange, preference })
  }
  const [first] = orderCandidates(candidates, { ...opts, hostPrefer, random: () => 0 })
  return first?.family ?? opts.prefer
}

const showAddress = (a: string): string => (a.includes(':') ? `[${a}]` : a)

/** `mx1.example [2001:db8::1], mx1.example 192.0.2.1` — the connect order. */
export function describeKept(plan: Plan): string {
  return plan.kept.map((c) => `${c.exchange} ${showAddress(c.address)}`).join(', ') || 'none'
}

/** `fe80::1 of mx.example: link-local; ...` — every dropped address with its reason. */
export function describeFiltered(plan: Plan): string {
  return plan.filtered.map((f) => `${f.address} of ${f.exchange}: ${f.reason}`).join('; ')
}

/** The one log line per message. */
export function describePlan(plan: Plan): string {
  const parts = [`plan for ${plan.domain}: try ${describeKept(plan)}`]
  if (plan.filtered.length) parts.push(`filtered ${describeFiltered(plan)}`)
  if (plan.dnsErrors.length) parts.push(`dns errors ${plan.dnsErrors.join(', ')}`)
  if (plan.notQueried?.length) parts.push(describeNotQueried(plan.notQueried))
  if (plan.ipv4FirstForEgress?.length) parts.push(describeEgressLead(plan.ipv4FirstForEgress))
  return parts.join('; ')
}

/** `AAAA not queried (no IPv6 connectivity: no IPv6 address but loopback/link-local)` */
export function describeNotQueried(list: NonNullable<Plan['notQueried']>): string {
  return list.map((n) => `${n.family === 'ipv6' ? 'AAAA' : 'A'} not queried (${n.reason})`).join(', ')
}

/** `IPv4 first for mx.example: IPv6 egress impaired` */
export function describeEgressLead(hosts: readonly string[]): string {
  return `IPv4 first for ${hosts.join(', ')}: IPv6 egress impaired`
}
