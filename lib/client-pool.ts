// The bridge to Haraka's outbound client pool. Race sockets are made the way the running
// Haraka makes its own (a pluggable TLS-capable stream with a line processor), the winner
// is held paused until Haraka asks for that address, and Haraka's own connects to planned
// addresses are timed for the health cache. Connections this plugin did not plan
// (smtp_forward, lmtp, other plugins) pass through untouched.

import { randomUUID } from 'node:crypto'

import { LRUCache } from 'lru-cache'

import type { ConnectOutcome } from './health'
import { describeError } from './errors'
import type { RaceSocket, RaceTarget } from './race'

export type PoolShape = 'mx' | 'legacy' | 'unknown'

type Callback = (err: unknown, socket: unknown) => void

/** The outbound/client_pool module object: hmail.js calls it through this object. */
export interface ClientPoolModule {
  get_client: (...args: never[]) => unknown
}

export interface PoolSocket extends RaceSocket {
  pause(): void
  resume(): void
  setTimeout(ms: number): void
  name?: string
  __uuid?: string
}

export interface BridgeDeps {
  pool: ClientPoolModule
  /** Makes an unconnected socket the way this Haraka's client pool does. */
  createSocket(options: { port: number; host: string; localAddress?: string }): PoolSocket
  /** Haraka's outbound connect_timeout in seconds, read at hand-over time. */
  connectTimeoutS(): number
  onOutcome(target: RaceTarget, outcome: ConnectOutcome): void
  log(level: 'info' | 'warn' | 'error', msg: string): void
  /** How long a won socket waits for Haraka before it is closed. */
  holdMs?: number
}

interface Held {
  socket: PoolSocket
  timer: NodeJS.Timeout
}

const keyOf = (host: string, port: number | string, bind?: string): string =>
  `${bind ?? ''}|${String(host).toLowerCase()}|${port}`

/** Reads the pool's get_client signature: `(mx, cb)` since 3.1, `(port, host, …)` in 3.0. */
export function detectPoolShape(pool: unknown): PoolShape {
  const fn = (pool as { get_client?: unknown } | undefined)?.get_client
  if (typeof fn !== 'function') return 'unknown'
  const m = /^[^(]*\(\s*([A-Za-z_$][\w$]*)/.exec(Function.prototype.toString.call(fn))
  if (m?.[1] === 'mx') return 'mx'
  if (m?.[1] === 'port') return 'legacy'
  return 'unknown'
}

const WRAPPED = Symbol.for('haraka-plugin-happy-eyeballs.get_client')

export class ClientPoolBridge {
  readonly shape: PoolShape
  private readonly deps: BridgeDeps
  private readonly held = new Map<string, Held[]>()
  // Addresses planned recently, so Haraka's own connects to them can be timed; bounded.
  private readonly planned = new LRUCache<string, RaceTarget>({ max: 10000, ttl: 10 * 60 * 1000 })
  private original: ((...args: unknown[]) => unknown) | undefined

  constructor(deps: BridgeDeps) {
    this.deps = deps
    this.shape = detectPoolShape(deps.pool)
  }

  get ready(): boolean {
    return this.original !== undefined
  }

  /** Replaces get_client on the module object once; a second plugin instance reuses it. */
  install(): boolean {
    if (this.shape === 'unknown') return false
    const pool = this.deps.pool as unknown as Record<PropertyKey, unknown>
    const current = pool.get_client as ((...args: unknown[]) => unknown) & { [WRAPPED]?: unknown }
    const original = (current[WRAPPED] as ((...args: unknown[]) => unknown) | undefined) ?? current
    const bridge = this.shape === 'mx' ? this.mxGetClient(original) : this.legacyGetClient(original)
    ;(bridge as unknown as Record<PropertyKey, unknown>)[WRAPPED] = original
    pool.get_client = bridge
    this.original = original
    return true
  }

  uninstall(): void {
    if (!this.original) return
    ;(this.deps.pool as unknown as Record<string, unknown>).get_client = this.original
    this.original = undefined
    for (const list of this.held.values()) for (const h of list) this.drop(h)
    this.held.clear()
    this.planned.clear()
  }

  /** A socket for one race attempt, paused as soon as it connects so no byte is lost. */
  connect(target: RaceTarget): PoolSocket {
    const socket = this.deps.createSocket({
      port: target.port,
      host: target.address,
      ...(target.bind ? { localAddress: target.bind } : {}),
    })
    socket.once('connect', () => socket.pause())
    return socket
  }

  /** Remembers the planned targets so Haraka's own connects to them feed the health cache. */
  plan(targets: RaceTarget[]): void {
    for (const t of targets) this.planned.set(keyOf(t.address, t.port, t.bind), t)
  }

  /** Keeps a connected winner until Haraka asks for its address, or closes it after holdMs. */
  hold(target: RaceTarget, socket: PoolSocket): void {
    const key = keyOf(target.address, target.port, target.bind)
    socket.removeAllListeners('error')
    socket.removeAllListeners('connect')
    const entry: Held = {
      socket,
      timer: setTimeout(() => {
        this.remove(key, entry)
        this.drop(entry)
        this.deps.log('warn', `closed unclaimed connection to ${target.address}:${target.port}`)
      }, this.deps.holdMs ?? 15000),
    }
    entry.timer.unref()
    // Closed by the peer while waiting: forget it, Haraka then connects afresh.
    socket.on('error', () => this.remove(key, entry) && this.drop(entry))
    socket.once('close', () => this.remove(key, entry) && this.drop(entry))
    const list = this.held.get(key)
    if (list) list.push(entry)
    else this.held.set(key, [entry])
  }

  get heldCount(): number {
    let n = 0
    for (const list of this.held.values()) n += list.length
    return n
  }

  private remove(key: string, entry: Held): boolean {
    const list = this.held.get(key)
    const i = list ? list.indexOf(entry) : -1
    if (!list || i < 0) return false
    list.splice(i, 1)
    if (!list.length) this.held.delete(key)
    return true
  }

  private drop(entry: Held): void {
    clearTimeout(entry.timer)
    entry.socket.removeAllListeners()
    entry.socket.on('error', () => {})
    entry.socket.destroy()
  }

  private take(key: string): PoolSocket | undefined {
    const list = this.held.get(key)
    const entry = list?.shift()
    if (!entry) return undefined
    if (!list?.length) this.held.delete(key)
    clearTimeout(entry.timer)
    entry.socket.removeAllListeners('error')
    entry.socket.removeAllListeners('close')
    return entry.socket
  }

  /** Gives a held socket to Haraka as its client pool would have, then lets data flow. */
  private handOver(socket: PoolSocket, name: string, callback: Callback): void {
    socket.name = name
    socket.__uuid = randomUUID()
    socket.setTimeout(this.deps.connectTimeoutS() * 1000)
    process.nextTick(() => {
      callback(null, socket)
      socket.resume()
    })
  }

  /** Haraka's own connect to a planned address, timed for the health cache. */
  private timed(target: RaceTarget, callback: Callback): Callback {
    const started = performance.now()
    return (err, socket) => {
      try {
        this.deps.onOutcome(target, {
          ok: !err,
          ...(err ? { error: describeError(err) } : {}),
          latencyMs: Math.round(performance.now() - started),
          at: Date.now(),
        })
      } catch (e) {
        this.deps.log('error', `health record failed: ${describeError(e)}`)
      }
      callback(err, socket)
    }
  }

  private mxGetClient(original: (...args: unknown[]) => unknown) {
    return (mx: { path?: string; exchange?: string; port?: number; bind?: string }, callback: Callback) => {
      if (mx && !mx.path && mx.exchange) {
        const key = keyOf(mx.exchange, mx.port ?? 25, mx.bind)
        const socket = this.take(key)
        if (socket) {
          const args = { port: mx.port, host: mx.exchange, localAddress: mx.bind }
          return this.handOver(socket, `outbound::${JSON.stringify(args)}`, callback)
        }
        const planned = this.planned.get(key)
        if (planned) return original(mx, this.timed(planned, callback))
      }
      return original(mx, callback)
    }
  }

  private legacyGetClient(original: (...args: unknown[]) => unknown) {
    return (
      port: number,
      host: string,
      localAddr: string | undefined,
      isUnix: boolean,
      callback: Callback,
    ) => {
      if (!isUnix && host) {
        const key = keyOf(host, port ?? 25, localAddr)
        const socket = this.take(key)
        if (socket) return this.handOver(socket, `outbound::${port}:${host}:${localAddr}`, callback)
        const planned = this.planned.get(key)
        if (planned) return original(port, host, localAddr, isUnix, this.timed(planned, callback))
      }
      return original(port, host, localAddr, isUnix, callback)
    }
  }
}
