// What this plugin takes from the running Haraka's own modules: its HarakaMx class (so the
// entries pass through get_mx_respond unchanged), its client pool and the way that pool
// makes sockets, and on 3.0.x its delivery steps, adapted so TLS follows the MX host name.
// Anything of an unknown shape leaves racing off, planning on.

import {
  type BridgeDeps,
  ClientPoolBridge,
  type ClientPoolModule,
  detectPoolShape,
  type PoolSocket,
} from './client-pool'
import type { MessageConnects } from './connects'
import { adaptTlsNaming, tlsNeedsNames, type TlsNaming } from './haraka30'
import type { ConnectOutcome } from './health'
import { type PlannedEntries, plannedEntries } from './planned'
import type { RaceTarget } from './race'

export type HarakaRequire = (name: string) => unknown

export interface MxClass {
  new (fields: object): object
}

export interface HarakaOutbound {
  /** Haraka's own HarakaMx, or undefined when it has none (3.0.x takes plain objects). */
  HarakaMx?: MxClass
  bridge?: ClientPoolBridge
  /** Why racing is off, when it is. */
  raceUnavailable?: string
  /** outbound.ini inet_prefer when it is not `default`: Haraka regroups every answer by family. */
  inetPrefer?: string
  /** How Haraka names the TLS peer of an IP-literal entry: itself, through the adapter, or not. */
  tlsNaming: TlsNaming['kind']
  /** Why this message must keep Haraka's own routing (TLS could be weakened), or undefined. */
  keepHarakaRouting(hmail: { todo?: { force_tls?: boolean } }): string | undefined
  /** Registers the entries handed to Haraka for one message (`entries[i]` for `targets[i]`). */
  track(entries: object[], targets: RaceTarget[], record: MessageConnects): void
}

/** The fields an entry this plugin builds carries (lib/route.ts MxEntry). */
interface EntryFields {
  exchange?: unknown
  port?: unknown
  bind?: unknown
  from_dns?: unknown
}

/** `[2001:db8::1]:25 (mx.example.com)`, `192.0.2.1:25 from 192.0.2.7 (mx.example.com)`. */
export function describeEntry(e: EntryFields): string {
  const host = String(e.exchange ?? '')
  const shown = host.includes(':') ? `[${host}]` : host
  const bind = e.bind ? ` from ${String(e.bind)}` : ''
  return `${shown}:${String(e.port ?? 25)}${bind} (${String(e.from_dns ?? host)})`
}

const compactClasses = new WeakMap<MxClass, MxClass>()

/**
 * Haraka's own HarakaMx, its instances written as one short string when JSON-encoded: Haraka
 * 3.1+ logs every get_mx answer as the JSON of its entries (and builds that JSON again for a
 * debug line); the address, port, bind and MX host say what an operator needs there, and the
 * plugin's own log line says the rest. Still Haraka's class, so its pool gets the very entry.
 */
export function compactlyLogged(HarakaMx: MxClass): MxClass {
  const known = compactClasses.get(HarakaMx)
  if (known) return known
  const Compact = class extends HarakaMx {
    toJSON(): string {
      return describeEntry(this as EntryFields)
    }
  }
  compactClasses.set(HarakaMx, Compact)
  return Compact
}

type SocketMaker = (options: { port: number; host: string; localAddress?: string }) => PoolSocket

function tryRequire(req: HarakaRequire, name: string): unknown {
  try {
    return req(name)
  } catch {
    return undefined
  }
}

/** The socket maker matching the pool shape: 3.1+ `tls_socket` + line processor, 3.0 `line_socket`. */
function socketMaker(req: HarakaRequire, shape: 'mx' | 'legacy', netUtils: unknown): SocketMaker | undefined {
  if (shape === 'legacy') {
    const lineSocket = tryRequire(req, 'line_socket') as { connect?: SocketMaker } | undefined
    return typeof lineSocket?.connect === 'function'
      ? (o) => (lineSocket.connect as SocketMaker)(o)
      : undefined
  }
  const tls = tryRequire(req, 'tls_socket') as { connect?: SocketMaker } | undefined
  const addLines = (netUtils as { add_line_processor?: (s: PoolSocket) => void } | undefined)
    ?.add_line_processor
  if (typeof tls?.connect !== 'function' || typeof addLines !== 'function') return undefined
  return (o) => {
    const socket = (tls.connect as SocketMaker)(o)
    addLines(socket)
    return socket
  }
}

export interface BindOptions {
  onOutcome(target: RaceTarget, outcome: ConnectOutcome): void
  log(level: 'info' | 'warn' | 'error', msg: string): void
  /** The registry of planned entries; one per process by default. */
  planned?: PlannedEntries
  /** The reply filter for sockets of planned messages (see BridgeDeps.watchReplies). */
  watchReplies?: BridgeDeps['watchReplies']
}

export function bindHarakaOutbound(req: HarakaRequire, opts: BindOptions): HarakaOutbound {
  const planned = opts.planned ?? plannedEntries
  const outbound = tryRequire(req, 'outbound') as
    { net_utils?: { HarakaMx?: MxClass; ip_in_list?: unknown } } | undefined
  const netUtils = outbound?.net_utils
  const HarakaMx = typeof netUtils?.HarakaMx === 'function' ? compactlyLogged(netUtils.HarakaMx) : undefined

  const config = tryRequire(req, 'outbound/config') as
    { cfg?: { connect_timeout?: number; inet_prefer?: string } } | undefined
  const prefer = config?.cfg?.inet_prefer
  const inetPrefer = prefer && prefer !== 'default' ? String(prefer) : undefined

  const pool = tryRequire(req, 'outbound/client_pool') as ClientPoolModule | undefined
  const shape = detectPoolShape(pool)

  const tls = tryRequire(req, 'outbound/tls')
  const naming = adaptTlsNaming(
    { hmail: tryRequire(req, 'outbound/hmail'), tls, ipInList: netUtils?.ip_in_list },
    { planned, log: opts.log },
    { legacyPool: shape === 'legacy' },
  )
  if (naming.kind === 'unavailable') {
    opts.log('warn', `${naming.reason}; messages are left to Haraka while tls.ini forces or verifies TLS`)
  }
  const base = {
    HarakaMx,
    inetPrefer,
    tlsNaming: naming.kind,
    keepHarakaRouting: (hmail: { todo?: { force_tls?: boolean } }) =>
      naming.kind === 'unavailable' ? tlsNeedsNames(tls, hmail) : undefined,
  }

  let bridge: ClientPoolBridge | undefined
  let raceUnavailable: string | undefined
  const createSocket = pool && shape !== 'unknown' ? socketMaker(req, shape, netUtils) : undefined
  const currentEntry = naming.kind === 'adapted' ? () => naming.adapter.currentEntry() : undefined
  if (!pool || shape === 'unknown') raceUnavailable = 'outbound client pool of an unknown shape'
  else if (!createSocket) raceUnavailable = 'Haraka socket module not found'
  else {
    const deps = {
      onOutcome: opts.onOutcome,
      log: opts.log,
      planned,
      currentEntry,
      watchReplies: opts.watchReplies,
    }
    bridge = ClientPoolBridge.installedOn(pool)
    if (bridge) bridge.rebind(deps)
    else {
      bridge = new ClientPoolBridge({
        pool,
        createSocket,
        connectTimeoutS: () => Number(config?.cfg?.connect_timeout) || 30,
        ...deps,
      })
      if (!bridge.install()) {
        bridge = undefined
        raceUnavailable = 'client pool could not be wrapped'
      }
    }
  }

  // Haraka's own connects are seen per message when its pool passes the entry (3.1+) or the
  // 3.0.x adapter says which entry is being connected.
  const observed = Boolean(bridge && (shape === 'mx' || currentEntry))
  const track = (entries: object[], targets: RaceTarget[], record: MessageConnects): void => {
    record.observed = observed
    planned.track(entries, targets, record)
  }
  return {
    ...base,
    track,
    ...(bridge ? { bridge } : {}),
    ...(raceUnavailable ? { raceUnavailable } : {}),
  }
}
