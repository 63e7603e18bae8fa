// What every worker and host learns, shared through a store (Redis): connect outcomes per
// address and per MX host family, and MX hosts that refused IPv6 by policy. The local caches
// stay in front and planning reads only them: before a message is planned, `warm` fills them
// from the store for that message's MX hosts and addresses in one read, waiting at most the
// store's timeout. Every local write goes on to the store (write-through, fire-and-forget)
// with the local cache's TTL. Other kinds of record join as a SharedKind: a key per id, a TTL,
// and how a value fills its local cache (learnt connect times and IPv6 egress evidence:
// lib/shared-learned).

import { LRUCache } from 'lru-cache'

import type { Family } from './classify'
import { type ConnectOutcome, HealthCache, type HealthOptions } from './health'
import { PolicyMemory, type PolicyMemoryOptions, type RememberedRefusal } from './policy-memory'

/** What a message needs from the store: its MX hosts and their addresses. */
export interface WarmRequest {
  exchanges: readonly string[]
  addresses: readonly string[]
}

/** One kind of shared record: its ids for a message, its encoding and its local cache. */
export interface SharedKind<V> {
  /** In the key, after the prefix: `a`, `f`, `p`. */
  tag: string
  /** TTL of a written key: the local cache's. 0: the kind is not shared. */
  ttlMs(): number
  idsFor(request: WarmRequest): string[]
  encode(value: V): string
  /** Undefined for anything this version cannot read: it is ignored. `id` as in the key. */
  decode(text: string, id: string): V | undefined
  /** Fills the local cache with a value read from the store, unless the local one is newer. */
  fill(id: string, value: V, now: number): boolean
}

/** The store behind the kinds: Redis (./redis-store) or any other with these two calls. */
export interface KeyValueStore {
  read(keys: string[]): Promise<(string | null)[] | undefined>
  write(key: string, value: string, ttlMs: number): void
}

export interface WarmResult {
  /** `read`: the store answered; `unavailable`: away, slow or failing: local state only. */
  store: 'read' | 'unavailable'
  keys: number
  /** Records read from the store that were newer than the local ones, and taken. */
  filled: number
}

type AnyKind = SharedKind<never> & {
  encode(value: unknown): string
  fill(id: string, value: unknown, now: number): boolean
}

export class SharedState {
  private readonly kinds: AnyKind[] = []

  constructor(
    private readonly store: KeyValueStore,
    private readonly prefix: string,
  ) {}

  /** Adds a kind; kinds fill in the order they were added. */
  add<V>(kind: SharedKind<V>): this {
    if (this.kinds.some((k) => k.tag === kind.tag)) throw new Error(`a shared kind tagged ${kind.tag} exists`)
    this.kinds.push(kind as unknown as AnyKind)
    return this
  }

  key(tag: string, id: string): string {
    return `${this.prefix}${tag}:${id}`
  }

  /** Writes one record through to the store (never waits, never throws). */
  share<V>(kind: SharedKind<V>, id: string, value: V): void {
    const ttl = kind.ttlMs()
    if (ttl <= 0) return
    try {
      this.store.write(this.key(kind.tag, id), kind.encode(value), ttl)
    } catch {
      // the store bounds itself; a value that cannot be written is not shared
    }
  }

  /** Fills the local caches for one message from the store: one read, bounded by the store. */
  async warm(request: WarmRequest, now = Date.now()): Promise<WarmResult> {
    const wanted: Array<{ kind: AnyKind; id: string }> = []
    for (const kind of this.kinds) {
      if (kind.ttlMs() <= 0) continue
      for (const id of new Set(kind.idsFor(request))) wanted.push({ kind, id })
    }
    if (!wanted.length) return { store: 'read', keys: 0, filled: 0 }
    const values = await this.store.read(wanted.map((w) => this.key(w.kind.tag, w.id)))
    if (!values) return { store: 'unavailable', keys: wanted.length, filled: 0 }
    let filled = 0
    wanted.forEach(({ kind, id }, i) => {
      const text = values[i]
      if (typeof text !== 'string') return
      try {
        const value = kind.decode(text, id)
        if (value !== undefined && kind.fill(id, value, now)) filled++
      } catch {
        // a record another version wrote, or garbage: ignored
      }
    })
    return { store: 'read', keys: wanted.length, filled }
  }
}

// ---------------------------------------------------------------------------------------
// The local caches that write through: the same classes, with each write also shared.

/** An outcome as shared: the outcome and the address it was seen on. */
export interface SharedOutcome {
  address: string
  family: Family
  outcome: ConnectOutcome
  /** MX host family records: epoch ms of the first of the failures in a row up to this one. */
  since?: number
}

export const exchangeId = (exchange: string): string => exchange.toLowerCase().replace(/\.$/, '')
const familyId = (exchange: string, family: Family): string => `${exchangeId(exchange)}|${family}`
const FAMILIES: readonly Family[] = ['ipv6', 'ipv4']

// Records are short JSON arrays, without field names (a third of the bytes of the objects the
// first version wrote). Records in that older object form are still read, so a rolling upgrade
// shares both ways until the last old worker is gone; an old worker ignores the new form.
//   outcome: [family 4|6, flags (1 ok, 2 slow), latencyMs, at, error or 0, since or 0, address]
//            an address record leaves out its address, which is its key's id;
//            trailing zeros are left out.
//   refusal: [until, refusal]

const OK = 1
const SLOW = 2
const finite = (n: unknown): n is number => typeof n === 'number' && Number.isFinite(n)

/** The compact form of an outcome record; `withAddress` false when the key names it. */
export function encodeOutcome(v: SharedOutcome, withAddress = true): string {
  const o = v.outcome
  const flags = (o.ok ? OK : 0) | (o.slow ? SLOW : 0)
  const record: Array<string | number> = [
    v.family === 'ipv6' ? 6 : 4,
    flags,
    Math.round(o.latencyMs * 10) / 10,
    o.at,
    o.error ?? 0,
    v.since ?? 0,
    withAddress ? v.address : 0,
  ]
  while (record.length > 4 && record[record.length - 1] === 0) record.pop()
  return JSON.stringify(record)
}

/** A shared outcome record, either form, or undefined for anything else. */
export function decodeOutcome(text: string, address?: string): SharedOutcome | undefined {
  const v = JSON.parse(text) as unknown
  if (Array.isArray(v)) return decodeCompactOutcome(v as unknown[], address)
  return decodeObjectOutcome(v as Partial<SharedOutcome> | null)
}

function decodeCompactOutcome(v: unknown[], keyAddress: string | undefined): SharedOutcome | undefined {
  const [fam, flags, latencyMs, at, error, since, address] = v
  const family = fam === 6 ? 'ipv6' : fam === 4 ? 'ipv4' : undefined
  const where = typeof address === 'string' && address ? address : keyAddress
  if (!family || !where || !finite(flags) || !finite(latencyMs) || !finite(at)) return undefined
  const outcome: ConnectOutcome = {
    ok: (flags & OK) !== 0,
    latencyMs,
    at,
    ...(typeof error === 'string' && error ? { error } : {}),
    ...((flags & SLOW) !== 0 ? { slow: true } : {}),
  }
  return { address: where, family, outcome, ...(finite(since) && since > 0 ? { since } : {}) }
}

/** The object form the first version wrote. */
function decodeObjectOutcome(v: Partial<SharedOutcome> | null): SharedOutcome | undefined {
  const o = v?.outcome as Partial<ConnectOutcome> | undefined
  if (!v || typeof v.address !== 'string' || (v.family !== 'ipv4' && v.family !== 'ipv6')) return undefined
  if (!o || typeof o.ok !== 'boolean' || typeof o.at !== 'number' || typeof o.latencyMs !== 'number')
    return undefined
  const outcome: ConnectOutcome = {
    ok: o.ok,
    latencyMs: o.latencyMs,
    at: o.at,
    ...(typeof o.error === 'string' ? { error: o.error } : {}),
    ...(o.slow === true ? { slow: true } : {}),
  }
  return {
    address: v.address,
    family: v.family,
    outcome,
    ...(typeof v.since === 'number' ? { since: v.since } : {}),
  }
}

const failedOutcome = (o: ConnectOutcome): boolean => !o.ok && !o.slow

/** A health cache whose outcomes are shared, and filled from what others shared. */
export class SharingHealthCache extends HealthCache {
  private sharedState?: SharedState
  readonly outcomeTtlMs: number

  /** MX host family health: the newest outcome on any address of that host and family. */
  readonly sharedFamilies: SharedKind<SharedOutcome> = {
    tag: 'f',
    ttlMs: () => this.outcomeTtlMs,
    idsFor: (r) => r.exchanges.flatMap((x) => FAMILIES.map((f) => familyId(x, f))),
    encode: (v) => encodeOutcome(v),
    decode: (text) => decodeOutcome(text),
    fill: (id, v, now) => {
      if (!this.fillShared(v, id.slice(0, id.lastIndexOf('|')), now)) return false
      this.noteFailing(id, v.outcome, v.since)
      return true
    },
  }

  /** Address outcomes; filled after the families, so an address's own outcome has the last word. */
  readonly sharedAddresses: SharedKind<SharedOutcome> = {
    tag: 'a',
    ttlMs: () => this.outcomeTtlMs,
    idsFor: (r) => [...r.addresses],
    encode: (v) => encodeOutcome(v, false),
    decode: (text, id) => decodeOutcome(text, id),
    fill: (_id, v, now) => this.fillShared(v, undefined, now),
  }

  /** MX host families failing now → since when: for the fleet's view (status). */
  private readonly failingSince: LRUCache<string, number> | undefined

  constructor(opts: HealthOptions) {
    super(opts)
    this.outcomeTtlMs = opts.ttlMs
    this.failingSince =
      opts.ttlMs > 0 ? new LRUCache<string, number>({ max: opts.maxEntries, ttl: opts.ttlMs }) : undefined
  }

  /** Remembers since when a host family fails; returns it (undefined when it does not fail). */
  private noteFailing(id: string, outcome: ConnectOutcome, since?: number): number | undefined {
    if (outcome.slow) return this.failingSince?.get(id)
    if (!failedOutcome(outcome)) {
      this.failingSince?.delete(id)
      return undefined
    }
    const known = this.failingSince?.get(id)
    const first = Math.min(known ?? Infinity, since ?? Infinity, outcome.at)
    this.failingSince?.set(id, first)
    return first
  }

  /** Shares every later write through `shared` (undefined: this process only). */
  shareThrough(shared: SharedState | undefined): void {
    this.sharedState = shared
    shared?.add(this.sharedFamilies).add(this.sharedAddresses)
  }

  override record(
    address: string,
    family: Family,
    exchange: string | undefined,
    outcome: ConnectOutcome,
  ): void {
    super.record(address, family, exchange, outcome)
    const shared = this.sharedState
    if (!shared || this.outcomeTtlMs <= 0) return
    const value: SharedOutcome = { address, family, outcome }
    shared.share(this.sharedAddresses, address, value)
    if (!exchange) return
    const id = familyId(exchange, family)
    const since = this.noteFailing(id, outcome)
    shared.share(this.sharedFamilies, id, since === undefined ? value : { ...value, since })
  }

  private fillShared(v: SharedOutcome, exchange: string | undefined, now: number): boolean {
    if (v.outcome.at + this.outcomeTtlMs <= now) return false
    const local = this.lookup(v.address)
    // The newest outcome wins, as it does locally.
    if (local && local.at >= v.outcome.at) return false
    super.record(v.address, v.family, exchange, v.outcome)
    return true
  }
}

export const encodeRefusal = (v: RememberedRefusal): string => JSON.stringify([v.until, v.refusal])

/** A shared policy refusal, either form, or undefined for anything else. */
export function decodeRefusal(text: string): RememberedRefusal | undefined {
  const parsed = JSON.parse(text) as unknown
  const [until, refusal] = Array.isArray(parsed)
    ? (parsed as unknown[])
    : [
        (parsed as Partial<RememberedRefusal> | null)?.until,
        (parsed as Partial<RememberedRefusal> | null)?.refusal,
      ]
  return typeof refusal === 'string' && finite(until) ? { refusal, until } : undefined
}

/** Policy memory whose refusals are shared, and filled from what others shared. */
export class SharingPolicyMemory extends PolicyMemory {
  private sharedState?: SharedState
  private readonly refusalTtlMs: number

  readonly sharedRefusals: SharedKind<RememberedRefusal> = {
    tag: 'p',
    ttlMs: () => this.refusalTtlMs,
    idsFor: (r) => r.exchanges.map(exchangeId),
    encode: encodeRefusal,
    decode: decodeRefusal,
    fill: (id, v, now) => {
      if (v.until <= now) return false
      const local = this.ipv6Refused(id)
      if (local && local.until >= v.until) return false
      super.remember(id, v.refusal, v.until - this.refusalTtlMs)
      return true
    },
  }

  constructor(opts: PolicyMemoryOptions) {
    super(opts)
    this.refusalTtlMs = opts.ttlMs
  }

  shareThrough(shared: SharedState | undefined): void {
    this.sharedState = shared
    shared?.add(this.sharedRefusals)
  }

  override remember(exchange: string, refusal: string, now = Date.now()): void {
    super.remember(exchange, refusal, now)
    if (!this.sharedState || this.refusalTtlMs <= 0) return
    this.sharedState.share(this.sharedRefusals, exchangeId(exchange), {
      refusal,
      until: now + this.refusalTtlMs,
    })
  }
}

/** The MX hosts and addresses of a resolved destination, as `warm` takes them. */
export function warmRequestOf(
  hosts: ReadonlyArray<{ exchange: string; addresses: readonly string[] }>,
): WarmRequest {
  return {
    exchanges: hosts.map((h) => h.exchange),
    addresses: hosts.flatMap((h) => h.addresses),
  }
}
