// Per-destination family policy: `[family] ipv4_only[]`, `ipv6_only[]`, `prefer_ipv4[]`,
// `prefer_ipv6[]`, each a recipient domain or an MX host pattern (`gmail.com`, `*.google.com`).
// The shape of Exim's dns_ipv4_lookup and KumoMTA's per-destination ip_lookup_strategy.

import type { Family } from './classify'
import { validDomain } from './resolve'

/**
 * A pattern as matched: `gmail.com`, or `*.google.com` (any name ending in `.google.com`, not
 * `google.com` itself), lower case, A-label form; undefined when it is neither.
 */
export function parseHostPattern(text: string): string | undefined {
  const s = String(text ?? '').trim()
  const wildcard = s.startsWith('*.')
  const name = validDomain(wildcard ? s.slice(2) : s)
  if (!name) return undefined
  return wildcard ? `*.${name}` : name
}

/** Whether `name` (a domain or MX host name, any case, trailing dot allowed) matches `pattern`. */
export function matchesHostPattern(name: string, pattern: string): boolean {
  const n = String(name ?? '')
    .toLowerCase()
    .replace(/\.$/, '')
  if (pattern.startsWith('*.')) return n.endsWith(pattern.slice(1)) && n.length > pattern.length - 1
  return n === pattern
}

export interface FamilyRules {
  ipv4Only: readonly string[]
  ipv6Only: readonly string[]
  preferIpv4: readonly string[]
  preferIpv6: readonly string[]
}

export type FamilyRuleName = 'ipv4_only' | 'ipv6_only' | 'prefer_ipv4' | 'prefer_ipv6'

/** The rule that matched, as reasons name it: `family policy ipv4_only (*.google.com)`. */
export interface MatchedRule {
  rule: FamilyRuleName
  pattern: string
}

export interface HostFamilyPolicy {
  /** Families an `_only` rule excludes, each with the rule that excluded it. */
  excluded: Map<Family, MatchedRule>
  /** The family a `prefer_` rule puts first, when exactly one family is preferred. */
  prefer?: Family
}

export const describeRule = (m: MatchedRule): string => `family policy ${m.rule} (${m.pattern})`

const RULES: ReadonlyArray<{ rule: FamilyRuleName; list: keyof FamilyRules; family: Family }> = [
  { rule: 'ipv4_only', list: 'ipv4Only', family: 'ipv4' },
  { rule: 'ipv6_only', list: 'ipv6Only', family: 'ipv6' },
  { rule: 'prefer_ipv4', list: 'preferIpv4', family: 'ipv4' },
  { rule: 'prefer_ipv6', list: 'preferIpv6', family: 'ipv6' },
]

/** What the rules say about one MX host of `domain`: each rule matches the domain or the host. */
export function familyPolicyFor(
  domain: string,
  exchange: string,
  rules: FamilyRules | undefined,
): HostFamilyPolicy {
  const excluded = new Map<Family, MatchedRule>()
  if (!rules) return { excluded }
  let preferred: Set<Family> | undefined
  for (const { rule, list, family } of RULES) {
    // No rules of a kind (the usual case): nothing to match, nothing allocated.
    if (!rules[list].length) continue
    const pattern = rules[list].find((p) => matchesHostPattern(domain, p) || matchesHostPattern(exchange, p))
    if (!pattern) continue
    if (rule.endsWith('_only')) {
      // ipv4_only leaves IPv6 out, and the other way round; both together leave nothing.
      const other: Family = family === 'ipv4' ? 'ipv6' : 'ipv4'
      if (!excluded.has(other)) excluded.set(other, { rule, pattern })
    } else (preferred ??= new Set()).add(family)
  }
  return { excluded, ...(preferred?.size === 1 ? { prefer: [...preferred][0] } : {}) }
}
