// The planning options of a destination, as delivery and the watched-domain probes both use
// them: the filter, preferences and family rules of the settings, the health cache, policy
// memory, this host's families (which are queried and which are usable) and its IPv6 egress.
// One builder, so a probe is planned exactly as a message to the same domain would be.

import { classifyAddress, type Family } from './classify'
import type { Settings } from './config'
import { familiesToQuery, type HostFamilies, mayLimit, type QueryPlan, unusableReason } from './connectivity'
import type { HealthView } from './health'
import type { Learned } from './learned'
import type { PlanOptions } from './plan'
import type { PolicyView } from './policy-memory'
import type { SwitchedHost } from './sender-policy'

export interface PlanningInputs {
  settings: Settings
  health?: HealthView
  /** MX hosts that refused this sender over IPv6 by policy lately. */
  senderPolicy?: PolicyView
  /** MX hosts this message was switched to IPv4 for. */
  switched?: readonly SwitchedHost[]
  /** The families this host can send from (lib/connectivity); absent: both, everywhere. */
  hostFamilies?: HostFamilies
  /** The families resolution asks for (queryPlanOf). */
  query?: QueryPlan
  /** Connect times and IPv6 egress learnt across destinations (lib/learned). */
  learned?: Learned
}

const LOOPBACK: Record<Family, string> = { ipv4: '127.0.0.1', ipv6: '::1' }

/** The families worth a DNS query from this host; undefined when nothing is known. */
export function queryPlanOf(
  hostFamilies: HostFamilies | undefined,
  settings: Settings,
): QueryPlan | undefined {
  return hostFamilies
    ? familiesToQuery(hostFamilies, (f) => classifyAddress(LOOPBACK[f], settings.filter.policy).routable)
    : undefined
}

/** The planning options for one destination; `random` drives the shuffle of equal MX hosts. */
export function planningOptions(inputs: PlanningInputs, random?: () => number): PlanOptions {
  const { settings, hostFamilies, learned } = inputs
  return {
    policy: settings.filter.policy,
    prefer: settings.prefer,
    firstFamilyCount: settings.firstFamilyCount,
    maxAddresses: settings.maxAddresses,
    ...(inputs.health ? { health: inputs.health } : {}),
    family: settings.family,
    ...(settings.policy.enabled && inputs.senderPolicy ? { senderPolicy: inputs.senderPolicy } : {}),
    ...(inputs.switched ? { switched: inputs.switched } : {}),
    ...(random ? { random } : {}),
    ...(hostFamilies && mayLimit(hostFamilies)
      ? {
          unusable: (a: string, f: Family) => unusableReason(hostFamilies, f, a),
          ...(inputs.query ? { notQueried: inputs.query.notQueried } : {}),
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
  }
}
