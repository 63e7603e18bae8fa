// What this plugin takes from the running Haraka's own modules: its HarakaMx class (so the
// entries pass through get_mx_respond unchanged), its client pool and the way that pool
// makes sockets. Anything of an unknown shape leaves racing off, planning on.

import { ClientPoolBridge, type ClientPoolModule, detectPoolShape, type PoolSocket } from './client-pool'
import type { ConnectOutcome } from './health'
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
}

export function bindHarakaOutbound(req: HarakaRequire, opts: BindOptions): HarakaOutbound {
  const outbound = tryRequire(req, 'outbound') as { net_utils?: { HarakaMx?: MxClass } } | undefined
  const netUtils = outbound?.net_utils
  const HarakaMx = typeof netUtils?.HarakaMx === 'function' ? netUtils.HarakaMx : undefined

  const config = tryRequire(req, 'outbound/config') as
    { cfg?: { connect_timeout?: number; inet_prefer?: string } } | undefined
  const prefer = config?.cfg?.inet_prefer
  const inetPrefer = prefer && prefer !== 'default' ? String(prefer) : undefined

  const pool = tryRequire(req, 'outbound/client_pool') as ClientPoolModule | undefined
  const shape = detectPoolShape(pool)
  if (!pool || shape === 'unknown') {
    return { HarakaMx, inetPrefer, raceUnavailable: 'outbound client pool of an unknown shape' }
  }
  const createSocket = socketMaker(req, shape, netUtils)
  if (!createSocket) return { HarakaMx, inetPrefer, raceUnavailable: 'Haraka socket module not found' }

  const bridge = new ClientPoolBridge({
    pool,
    createSocket,
    connectTimeoutS: () => Number(config?.cfg?.connect_timeout) || 30,
    onOutcome: opts.onOutcome,
    log: opts.log,
  })
  if (!bridge.install()) {
    return { HarakaMx, inetPrefer, raceUnavailable: 'client pool could not be wrapped' }
  }
  return { HarakaMx, bridge, inetPrefer }
}
