// The plan: the plugin's own route for the domain, before any connect, as its delivery record.

import os from 'node:os'

import type { Settings } from '../config'
import { type InterfaceList, readHostFamilies } from '../connectivity'
import type { DeliveryRecord } from '../delivery'
import { HealthCache } from '../health'
import type { DnsClient } from '../resolve'
import { routeDomain } from '../route'

/**
 * Answers each query once, so the plugin's route and the plan shown come from the same DNS
 * answers, and names the query in progress.
 */
export function memoDns(dns: DnsClient, onQuery: (text: string) => void): DnsClient {
  const seen = new Map<string, Promise<unknown>>()
  const once = <T>(key: string, text: string, run: () => Promise<T>): Promise<T> => {
    let p = seen.get(key) as Promise<T> | undefined
    if (!p) {
      onQuery(text)
      p = run()
      seen.set(key, p)
    }
    return p
  }
  return {
    resolveMx: (name) => once(`MX ${name}`, `resolving ${name} MX…`, () => dns.resolveMx(name)),
    resolve6: (name) => once(`AAAA ${name}`, `resolving ${name} addresses…`, () => dns.resolve6(name)),
    resolve4: (name) => once(`A ${name}`, `resolving ${name} addresses…`, () => dns.resolve4(name)),
  }
}

/**
 * The plugin's answer to Haraka for mail to domain, from a fresh health cache and no racer,
 * with this host's connectivity as the plugin reads it (unless connectivity_check_s=0).
 */
export function planDomain(
  domain: string,
  settings: Settings,
  dns: DnsClient,
  random: () => number,
  interfaces: () => InterfaceList = os.networkInterfaces,
): Promise<DeliveryRecord> {
  const health = new HealthCache({ ttlMs: settings.cache.ttlS * 1000, maxEntries: settings.cache.maxEntries })
  const hostFamilies =
    settings.connectivityCheckS > 0 ? readHostFamilies(interfaces(), settings.bind) : undefined
  return routeDomain(domain, { settings, dns, health, random, ...(hostFamilies ? { hostFamilies } : {}) })
}

/** The code of a DNS failure because no server answered at all, as opposed to a SERVFAIL. */
export function dnsUnreachable(record: DeliveryRecord): string | undefined {
  const r = record.resolution
  return r.kind === 'temporary' && (r.code === 'ECONNREFUSED' || r.code === 'ETIMEOUT') ? r.code : undefined
}
