// From a DNS resolution to the ordered list of addresses worth connecting to, with every
// dropped address and the reason kept for the log and the deferral text.

import { classifyAddress, type Family, type FilterPolicy } from './classify'
import type { HealthView } from './health'
import { type Candidate, orderCandidates } from './order'
import type { MxHost } from './resolve'

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
}

export interface PlanOptions {
  policy: FilterPolicy
  prefer: Family
  firstFamilyCount: number
  maxAddresses: number
  random?: () => number
  health?: HealthView
}

export function planAddresses(domain: string, hosts: MxHost[], opts: PlanOptions): Plan {
  const candidates: Candidate[] = []
  const filtered: FilteredEntry[] = []
  const dnsErrors: string[] = []

  for (const host of hosts) {
    for (const e of host.errors) dnsErrors.push(`${host.exchange} ${e}`)
    for (const raw of host.addresses) {
      const c = classifyAddress(raw, opts.policy)
      if (c.routable) {
        candidates.push({
          address: c.address,
          family: c.family,
          exchange: host.exchange,
          preference: host.preference,
        })
      } else {
        filtered.push({ exchange: host.exchange, address: c.input, reason: c.reason })
      }
    }
  }

  const kept = orderCandidates(candidates, opts)
  return { domain, kept, filtered, dnsErrors }
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
  return parts.join('; ')
}
