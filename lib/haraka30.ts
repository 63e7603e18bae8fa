// The Haraka 3.0.x delivery adapter. 3.0.x never reads an entry's `from_dns`: it matches
// tls.ini `force_tls_hosts` against `mx.exchange` and the domain, sends `mx.exchange` as the
// TLS servername, and with TLS forced passes even an IP literal to dns.resolve (an IPv4
// literal becomes a DNS query, an IPv6 one EBADNAME, and the address is skipped). With
// `ipv6_enabled=true` found_mx copies every entry per family, dropping `bind` and `from_dns`.
// For the entries this plugin planned, and only those, this adapter does what stock 3.0.x does
// for the same MX host name: TLS forced by the MX host name or the domain, servername and
// certificate name = the MX host, each address tried once with its bind. Every other entry
// (another routing plugin's, Haraka's own lookup) goes through Haraka's code untouched.
// Installed once per process on Haraka's own HMailItem prototype and OutboundTLS singleton.

import net from 'node:net'

import type { PlannedEntries, PlannedList } from './planned'

type Method = (this: unknown, ...args: unknown[]) => unknown

export interface Mx30 {
  exchange?: string
  priority?: number
  port?: number | string
  bind?: string
  from_dns?: string
  path?: string
}

export interface HMail30 {
  todo?: { domain?: string; force_tls?: boolean }
  mxlist?: Mx30[]
  hostlist?: string[]
  force_tls?: boolean
  try_deliver(): unknown
  try_deliver_host(mx: Mx30): unknown
  logdebug?(msg: string): void
}

/** The parts of Haraka 3.0.x's outbound/tls singleton the adapter reads or wraps. */
export interface OutboundTls30 {
  cfg?: { force_tls_hosts?: unknown; rejectUnauthorized?: unknown }
  get_tls_options(mx: unknown): unknown
}

export type IpInList = (list: unknown, name: string) => boolean

export interface Haraka30Modules {
  /** `outbound/hmail`: the HMailItem class. */
  hmail: unknown
  /** `outbound/tls`: the OutboundTLS singleton. */
  tls: unknown
  /** haraka-net-utils' ip_in_list, Haraka's own matcher for tls.ini host lists. */
  ipInList: unknown
}

export interface Haraka30Deps {
  planned: PlannedEntries
  log(level: 'info' | 'warn' | 'error', msg: string): void
}

/** How this Haraka names the TLS peer of an IP-literal entry. */
export type TlsNaming =
  | { kind: 'native' } // 3.1+: reads from_dns itself
  | { kind: 'adapted'; adapter: Haraka30Delivery } // 3.0.x with this adapter installed
  | { kind: 'unavailable'; reason: string } // 3.0.x, adapter not installable: IP literals could weaken TLS
  | { kind: 'unknown' } // no outbound modules to tell by: planning as is

const WRAPPED = Symbol.for('haraka-plugin-happy-eyeballs.hmail30.original')
const ADAPTER = Symbol.for('haraka-plugin-happy-eyeballs.hmail30.adapter')

const isFn = (v: unknown): v is Method => typeof v === 'function'
const source = (fn: unknown): string => (isFn(fn) ? Function.prototype.toString.call(fn) : '')

/** The names a tls.ini host list holds (`x[]=` is an array, `x=` a string). */
function listedNames(list: unknown): string[] {
  if (typeof list === 'string') return [list]
  if (Array.isArray(list)) return list.map(String)
  return list && typeof list === 'object' ? Object.keys(list) : []
}

const bare = (name: string): string => name.trim().toLowerCase().replace(/\.$/, '')

interface Round {
  plan: PlannedList
  /** `priority|exchange|port` → planned entry: found_mx's per-family copies keep those. */
  byKey: Map<string, object>
  /** Entries already tried in this round: a second per-family copy is skipped. */
  tried: Set<object>
}

const keyOf = (mx: Mx30): string => `${mx.priority}|${mx.exchange}|${mx.port ?? 25}`

export class Haraka30Delivery {
  private deps: Haraka30Deps
  private readonly rounds = new WeakMap<object, Round>()
  private current: object | undefined
  private installed: Array<() => void> = []
  private warned = false
  private tls: OutboundTls30 | undefined
  private ipInList: IpInList = () => false

  constructor(deps: Haraka30Deps) {
    this.deps = deps
  }

  /** The adapter already installed on this HMailItem prototype, if any. */
  static installedOn(hmail: unknown): Haraka30Delivery | undefined {
    const proto = (hmail as { prototype?: Record<PropertyKey, unknown> } | undefined)?.prototype
    const adapter = proto?.[ADAPTER]
    return adapter instanceof Haraka30Delivery ? adapter : undefined
  }

  /** Points logging and the planned entries at a newer plugin instance. */
  rebind(deps: Haraka30Deps): void {
    this.deps = deps
  }

  /** The planned entry Haraka is connecting to right now (inside try_deliver_host). */
  currentEntry(): object | undefined {
    return this.current
  }

  /** Wraps found_mx, try_deliver, try_deliver_host and get_tls_options; false if a shape is off. */
  install(modules: Haraka30Modules): boolean {
    const proto = (modules.hmail as { prototype?: Record<PropertyKey, unknown> } | undefined)?.prototype
    const tls = modules.tls as (OutboundTls30 & Record<PropertyKey, unknown>) | undefined
    if (!proto || !tls || !isFn(modules.ipInList)) return false
    if (![proto.found_mx, proto.try_deliver, proto.try_deliver_host, tls.get_tls_options].every(isFn)) {
      return false
    }
    this.tls = tls
    this.ipInList = modules.ipInList as IpInList
    this.wrap(proto, 'found_mx', (original, hmail, args) => {
      this.startRound(hmail, args[0] ? undefined : args[1])
      return original.apply(hmail, args)
    })
    this.wrap(proto, 'try_deliver', (original, hmail, args) => {
      const entry = this.nextPlanned(hmail as HMail30)
      if (!entry) return original.apply(hmail, args)
      return this.deliver(hmail as HMail30, entry)
    })
    this.wrap(proto, 'try_deliver_host', (original, hmail, args) => {
      if (!this.deps.planned.entry(args[0])) return original.apply(hmail, args)
      const previous = this.current
      this.current = args[0] as object
      try {
        return original.apply(hmail, args)
      } finally {
        this.current = previous
      }
    })
    this.wrap(tls, 'get_tls_options', (original, obtls, args) => {
      const options = original.apply(obtls, args)
      const name = this.tlsName(args[0])
      if (name && options && typeof options === 'object')
        (options as { servername?: string }).servername = name
      return options
    })
    proto[ADAPTER] = this
    this.installed.push(() => delete proto[ADAPTER])
    return true
  }

  uninstall(): void {
    for (const undo of this.installed.splice(0).reverse()) undo()
  }

  /**
   * Whether an MX entry this plugin planned gets TLS forced, as stock 3.0.x decides for the
   * same MX host: `todo.force_tls`, or tls.ini force_tls_hosts naming the MX host, the
   * address or the domain. Names also match regardless of case and a trailing dot.
   */
  forcedTls(hmail: HMail30, entry: Mx30): boolean {
    if (hmail.todo?.force_tls) return true
    const list = this.tls?.cfg?.force_tls_hosts
    if (!list) return false
    const listed = new Set(listedNames(list).map(bare))
    for (const name of [entry.from_dns, entry.exchange, hmail.todo?.domain]) {
      if (!name) continue
      if (this.ipInList(list, name) || listed.has(bare(name))) {
        hmail.logdebug?.(`Forcing TLS for ${name}`)
        return true
      }
    }
    return false
  }

  /** The MX host name to verify and send as SNI for a planned entry, if it has one. */
  private tlsName(mx: unknown): string | undefined {
    const planned = this.deps.planned.entry(mx)
    const name = planned && (mx as Mx30).from_dns
    return typeof name === 'string' && name && !net.isIP(name) ? name : undefined
  }

  /** Replaces target[name] by a function running body with Haraka's `this`; wraps the original once. */
  private wrap(
    target: Record<PropertyKey, unknown>,
    name: string,
    body: (original: Method, self: unknown, args: unknown[]) => unknown,
  ): void {
    const own = Object.hasOwn(target, name)
    const current = target[name] as Method & { [WRAPPED]?: Method }
    const original = current[WRAPPED] ?? current
    const wrapper: Method & { [WRAPPED]?: Method } = function (this: unknown, ...args: unknown[]) {
      return body(original, this, args)
    }
    wrapper[WRAPPED] = original
    target[name] = wrapper
    this.installed.push(() => {
      if (own) target[name] = original
      else delete target[name]
    })
  }

  /** found_mx got a list: this plugin's (a new round of its addresses) or someone else's. */
  private startRound(hmail: unknown, mxs: unknown): void {
    if (!hmail || typeof hmail !== 'object') return
    const plan = this.deps.planned.list(mxs)
    if (!plan) {
      this.rounds.delete(hmail)
      return
    }
    const byKey = new Map<string, object>()
    for (const entry of plan.entries) byKey.set(keyOf(entry as Mx30), entry)
    this.rounds.set(hmail, { plan, byKey, tried: new Set() })
  }

  /** The planned entry at the head of hmail.mxlist (the entry itself or a per-family copy). */
  private nextPlanned(hmail: HMail30): Mx30 | undefined {
    try {
      const round = this.rounds.get(hmail)
      const head = Array.isArray(hmail.mxlist) ? hmail.mxlist[0] : undefined
      if (!round || !head || typeof head !== 'object' || head.path) return undefined
      if (round.plan.entries.includes(head)) return head
      return round.byKey.get(keyOf(head)) as Mx30 | undefined
    } catch (err) {
      this.warnOnce(`unexpected outbound entry, left to Haraka: ${String(err)}`)
      return undefined
    }
  }

  /** Stock 3.0.x try_deliver for one address of a named MX host, with that host's TLS rules. */
  private deliver(hmail: HMail30, entry: Mx30): unknown {
    const round = this.rounds.get(hmail) as Round
    ;(hmail.mxlist as Mx30[]).shift()
    // found_mx's AAAA and A copies of one IP literal: the address is tried once, as stock
    // tries each address of a host name once.
    if (round.tried.has(entry)) return hmail.try_deliver()
    round.tried.add(entry)
    hmail.force_tls = this.forcedTls(hmail, entry)
    hmail.hostlist = [String(entry.exchange)]
    return hmail.try_deliver_host(entry)
  }

  private warnOnce(msg: string): void {
    if (this.warned) return
    this.warned = true
    this.deps.log('warn', msg)
  }
}

/**
 * Reads how this Haraka names the TLS peer and, on 3.0.x, installs the adapter (or reuses the
 * one installed by an earlier plugin instance).
 */
export function adaptTlsNaming(
  modules: Haraka30Modules,
  deps: Haraka30Deps,
  opts: { legacyPool: boolean },
): TlsNaming {
  const tls = modules.tls as { get_tls_options?: unknown } | undefined
  // 3.1+ (outbound/tls.js get_tls_options): "when mx.exchange looked up in DNS, from_dns has
  // the hostname": Haraka itself already matches and verifies the MX host name.
  if (/\bfrom_dns\b/.test(source(tls?.get_tls_options))) return { kind: 'native' }
  const existing = Haraka30Delivery.installedOn(modules.hmail)
  if (existing) {
    existing.rebind(deps)
    return { kind: 'adapted', adapter: existing }
  }
  // The 3.0.x line: get_client(port, host, ...) and a try_deliver_host step.
  const proto = (modules.hmail as { prototype?: Record<string, unknown> } | undefined)?.prototype
  if (!opts.legacyPool && !isFn(proto?.try_deliver_host)) return { kind: 'unknown' }
  const adapter = new Haraka30Delivery(deps)
  if (adapter.install(modules)) return { kind: 'adapted', adapter }
  return {
    kind: 'unavailable',
    reason: 'outbound/hmail or outbound/tls of an unknown shape: the MX host name cannot be kept for TLS',
  }
}

/**
 * With naming unavailable, why an IP-literal list could weaken TLS for this message (tls.ini
 * forces or verifies TLS, or cannot be read), or undefined when it cannot.
 */
export function tlsNeedsNames(tls: unknown, hmail: { todo?: { force_tls?: boolean } }): string | undefined {
  if (hmail?.todo?.force_tls) return 'TLS is forced for this message'
  const cfg = (tls as OutboundTls30 | undefined)?.cfg
  if (!cfg || typeof cfg !== 'object') return 'the outbound TLS configuration cannot be read'
  if (listedNames(cfg.force_tls_hosts).length) return 'tls.ini force_tls_hosts is set'
  if (cfg.rejectUnauthorized) return 'tls.ini rejectUnauthorized is set'
  return undefined
}
