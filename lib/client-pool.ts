// The bridge to Haraka's outbound client pool. Race sockets are made the way the running
// Haraka makes its own (a pluggable TLS-capable stream with a line processor), the winner
// is held paused until Haraka asks for that address (with success `greeting`, paused at the
// server's first line, every line seen replayed to Haraka at hand-over; a loser gets QUIT only
// after a complete greeting, else it is just closed), and Haraka's own connects to planned
// addresses are timed for the health cache and written to their message's delivery record.
// Connections this plugin did not plan (smtp_forward, lmtp, other plugins) pass through
// untouched. Installed once per process: a second plugin instance or a config reload reuses
// the installed bridge, so a socket raced by one is claimed through the same wrapper.

import { randomUUID } from 'node:crypto'

import { LRUCache } from 'lru-cache'

import { describeConnectError, type MessageConnects } from './connects'
import type { ConnectOutcome } from './health'
import { describeError } from './errors'
import { GreetingWatch } from './greeting'
import type { PlannedEntries, PlannedEntry } from './planned'
import {
  CLOSED_BEFORE_GREETING,
  GREETING_EVENT,
  type GreetingReply,
  greetingError,
  type RaceSocket,
  type RaceSuccess,
  type RaceTarget,
  welcomes,
} from './race'
import type { Racer } from './route'

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
  end(data?: string): void
  writable?: boolean
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
  /** The entries this plugin planned, and the message each belongs to. */
  planned?: PlannedEntries
  /**
   * Haraka 3.0.x only: the planned entry Haraka is connecting to right now (its get_client
   * gets no entry, only port and host), from the 3.0.x delivery adapter.
   */
  currentEntry?: () => unknown
  /**
   * Installs a reply filter on a socket Haraka is given for a planned target of a known
   * message, before Haraka reads its first line (lib/reply-filter.ts).
   */
  watchReplies?: (socket: PoolSocket, target: RaceTarget, record: MessageConnects) => void
}

/**
 * Raced sockets Haraka left unclaimed in a row, with no claim between them, before racing is
 * turned off. On a working install a winner is claimed within milliseconds and a miss is
 * rare and isolated (a message dropped between get_mx and its first connect, an address
 * Haraka skips as local), so claims keep resetting the count. A Haraka whose delivery path
 * does not reach the wrapped get_client never claims one: ten messages then cost a second
 * connection each, instead of every message from then on.
 */
export const UNCLAIMED_LIMIT = 10

interface Held {
  socket: PoolSocket
  timer: NodeJS.Timeout
}

/** What the bridge keeps of a race socket until Haraka takes it or it is closed. */
interface Raced {
  /** Success `greeting`: the lines seen so far. */
  watch?: GreetingWatch
  /** Writes the attempt to its message's record as connected, if nothing was written yet. */
  connected?: () => void
}

/** How long a released loser may take to answer QUIT before it is destroyed. */
const QUIT_GRACE_MS = 2000

const noop = (): void => {}

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
const BRIDGE = Symbol.for('haraka-plugin-happy-eyeballs.bridge')

type Wrapper = ((...args: unknown[]) => unknown) & { [WRAPPED]?: unknown; [BRIDGE]?: unknown }

export class ClientPoolBridge {
  readonly shape: PoolShape
  private deps: BridgeDeps
  private readonly held = new Map<string, Held[]>()
  private readonly raced = new WeakMap<PoolSocket, Raced>()
  // Addresses planned recently, so Haraka's own connects to them can be timed; bounded.
  private readonly planned = new LRUCache<string, RaceTarget>({ max: 10000, ttl: 10 * 60 * 1000 })
  private original: ((...args: unknown[]) => unknown) | undefined
  private unclaimedInARow = 0
  private racingOff: string | undefined

  constructor(deps: BridgeDeps) {
    this.deps = deps
    this.shape = detectPoolShape(deps.pool)
  }

  /** The bridge already installed on this pool module, by this or another plugin instance. */
  static installedOn(pool: unknown): ClientPoolBridge | undefined {
    const fn = (pool as { get_client?: Wrapper } | undefined)?.get_client
    const bridge = typeof fn === 'function' ? fn[BRIDGE] : undefined
    return bridge instanceof ClientPoolBridge && bridge.ready ? bridge : undefined
  }

  get ready(): boolean {
    return this.original !== undefined
  }

  /** Whether winners are still raced: off once Haraka kept leaving them unclaimed. */
  get racing(): boolean {
    return this.ready && this.racingOff === undefined
  }

  /** Points logging, outcomes and the 3.0.x entry source at a newer plugin instance. */
  rebind(deps: Pick<BridgeDeps, 'onOutcome' | 'log' | 'planned' | 'currentEntry' | 'watchReplies'>): void {
    this.deps = { ...this.deps, ...deps }
  }

  /** Replaces get_client on the module object once; see installedOn for reuse. */
  install(): boolean {
    if (this.shape === 'unknown') return false
    const pool = this.deps.pool as unknown as Record<PropertyKey, unknown>
    const current = pool.get_client as Wrapper
    const original = (current[WRAPPED] as ((...args: unknown[]) => unknown) | undefined) ?? current
    const bridge = (this.shape === 'mx'
      ? this.mxGetClient(original)
      : this.legacyGetClient(original)) as unknown as Wrapper
    bridge[WRAPPED] = original
    bridge[BRIDGE] = this
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

  /**
   * A racer for one message: the bridge's sockets, each attempt's outcome written to the
   * message's record as it happens (connected, failed with its error, or abandoned by the race).
   */
  racerFor(record: MessageConnects): Racer<PoolSocket> {
    return {
      connect: (target, success = 'connect') => {
        const started = performance.now()
        let socket: PoolSocket
        try {
          socket = this.connect(target, success)
        } catch (err) {
          record.add(raceAttempt(target, started, 'failed', describeError(err)))
          throw err
        }
        const connected = watchRaceAttempt(socket, target, started, record, success)
        const raced = this.raced.get(socket)
        if (raced) raced.connected = connected
        return socket
      },
      hold: (target, socket) => this.hold(target, socket),
      release: (socket) => this.release(socket),
    }
  }

  /**
   * A socket for one race attempt. Success `connect`: paused as soon as it connects, so no
   * byte is lost. Success `greeting`: it reads until the server's first line, reports it to
   * the race (GREETING_EVENT) and is paused there, every line kept for Haraka.
   */
  connect(target: RaceTarget, success: RaceSuccess = 'connect'): PoolSocket {
    const socket = this.deps.createSocket({
      port: target.port,
      host: target.address,
      ...(target.bind ? { localAddress: target.bind } : {}),
    })
    if (success === 'greeting') this.raced.set(socket, { watch: new GreetingWatch(socket) })
    else socket.once('connect', () => socket.pause())
    return socket
  }

  /**
   * Ends a race socket nobody will use: QUIT and close once its greeting is complete (a
   * client that speaks sooner is a pre-greeting violation to postscreen), else closed at once.
   */
  release(socket: PoolSocket): void {
    const watch = this.raced.get(socket)?.watch
    this.raced.delete(socket)
    watch?.stop()
    socket.on('error', noop)
    if (!watch?.complete || socket.writable === false) return socket.destroy()
    const timer = setTimeout(() => socket.destroy(), QUIT_GRACE_MS)
    timer.unref()
    socket.once('close', () => clearTimeout(timer))
    socket.end('QUIT\r\n')
    socket.resume() // read the reply and the close, to nobody
  }

  /** Remembers the planned targets so Haraka's own connects to them feed the health cache. */
  plan(targets: RaceTarget[]): void {
    for (const t of targets) this.planned.set(keyOf(t.address, t.port, t.bind), t)
  }

  /** Keeps a connected winner until Haraka asks for its address, or closes it after holdMs. */
  hold(target: RaceTarget, socket: PoolSocket): void {
    const key = keyOf(target.address, target.port, target.bind)
    // Won at the deadline without a greeting: connected all the same.
    this.raced.get(socket)?.connected?.()
    socket.removeAllListeners('error')
    socket.removeAllListeners('connect')
    const entry: Held = {
      socket,
      timer: setTimeout(() => {
        this.remove(key, entry)
        this.drop(entry)
        this.deps.log('warn', `closed unclaimed connection to ${target.address}:${target.port}`)
        this.countUnclaimed()
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

  private countUnclaimed(): void {
    this.unclaimedInARow++
    if (this.racingOff || this.unclaimedInARow < UNCLAIMED_LIMIT) return
    this.racingOff = `${this.unclaimedInARow} raced connections in a row were never claimed by Haraka`
    this.deps.log(
      'warn',
      `not racing connections any more: ${this.racingOff} (an outbound path this plugin does not know); ` +
        'planning goes on',
    )
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
    this.release(entry.socket)
  }

  private take(key: string): PoolSocket | undefined {
    const list = this.held.get(key)
    const entry = list?.shift()
    if (!entry) return undefined
    if (!list?.length) this.held.delete(key)
    clearTimeout(entry.timer)
    entry.socket.removeAllListeners('error')
    entry.socket.removeAllListeners('close')
    this.unclaimedInARow = 0
    return entry.socket
  }

  /**
   * Gives a held socket to Haraka as its client pool would have, then lets data flow: the
   * greeting lines read during the race first, to the listeners Haraka attached in its callback.
   */
  private handOver(socket: PoolSocket, name: string, callback: Callback): void {
    socket.name = name
    socket.__uuid = randomUUID()
    socket.setTimeout(this.deps.connectTimeoutS() * 1000)
    const watch = this.raced.get(socket)?.watch
    this.raced.delete(socket)
    process.nextTick(() => {
      watch?.stop()
      callback(null, socket)
      watch?.replay()
      socket.resume()
    })
  }

  /** Haraka's own connect to a planned address, timed for the health cache and the message. */
  private timed(target: RaceTarget, record: MessageConnects | undefined, callback: Callback): Callback {
    const started = performance.now()
    return (err, socket) => {
      try {
        const latencyMs = Math.round(performance.now() - started)
        const error = err ? describeConnectError(err) : undefined
        record?.add({
          address: target.address,
          port: target.port,
          by: 'haraka',
          outcome: err ? 'failed' : 'connected',
          ...(error ? { error } : {}),
          ms: latencyMs,
          at: Date.now(),
        })
        this.deps.onOutcome(target, { ok: !err, ...(error ? { error } : {}), latencyMs, at: Date.now() })
      } catch (e) {
        this.deps.log('error', `health record failed: ${describeError(e)}`)
      }
      if (!err && record) this.filterReplies(socket as PoolSocket, target, record)
      callback(err, socket)
    }
  }

  /** Gives a socket of a planned message to the reply filter; a failure leaves it unfiltered. */
  private filterReplies(socket: PoolSocket, target: RaceTarget, record: MessageConnects): void {
    try {
      this.deps.watchReplies?.(socket, target, record)
    } catch (e) {
      this.deps.log('error', `reply filter not installed: ${describeError(e)}`)
    }
  }

  /** A held socket given to Haraka, written to the message it was claimed for. */
  private claimed(socket: PoolSocket, target: RaceTarget, record: MessageConnects | undefined): PoolSocket {
    record?.add({
      address: target.address,
      port: target.port,
      by: 'haraka',
      outcome: 'connected',
      handedOver: true,
      ms: 0,
      at: Date.now(),
    })
    if (record) this.filterReplies(socket, target, record)
    return socket
  }

  /** Haraka 3.0.x: the planned entry being connected, if it is the one at host:port. */
  private currentPlanned(host: string, port: number | string): PlannedEntry | undefined {
    const p = this.deps.planned?.entry(this.deps.currentEntry?.())
    return p && p.target.address === host && String(p.target.port) === String(port) ? p : undefined
  }

  private mxGetClient(original: (...args: unknown[]) => unknown) {
    return (mx: { path?: string; exchange?: string; port?: number; bind?: string }, callback: Callback) => {
      if (mx && !mx.path && mx.exchange) {
        const key = keyOf(mx.exchange, mx.port ?? 25, mx.bind)
        // Haraka 3.1+ passes the very entry object this plugin handed over.
        const mine = this.deps.planned?.entry(mx)
        const planned = mine?.target ?? this.planned.get(key)
        const socket = this.take(key)
        if (socket) {
          const args = { port: mx.port, host: mx.exchange, localAddress: mx.bind }
          if (planned) this.claimed(socket, planned, mine?.record)
          return this.handOver(socket, `outbound::${JSON.stringify(args)}`, callback)
        }
        if (planned) return original(mx, this.timed(planned, mine?.record, callback))
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
        const mine = this.currentPlanned(host, port ?? 25)
        const planned = mine?.target ?? this.planned.get(key)
        const socket = this.take(key)
        if (socket) {
          if (planned) this.claimed(socket, planned, mine?.record)
          return this.handOver(socket, `outbound::${port}:${host}:${localAddr}`, callback)
        }
        if (planned)
          return original(port, host, localAddr, isUnix, this.timed(planned, mine?.record, callback))
      }
      return original(port, host, localAddr, isUnix, callback)
    }
  }
}

function raceAttempt(
  target: RaceTarget,
  started: number,
  outcome: 'connected' | 'failed' | 'abandoned',
  error?: string,
): Parameters<MessageConnects['add']>[0] {
  return {
    address: target.address,
    port: target.port,
    by: 'race',
    outcome,
    ...(error ? { error } : {}),
    ms: Math.round(performance.now() - started),
    at: Date.now(),
  }
}

/**
 * Writes one race attempt's first outcome to the record: connected (at the TCP connect, or at a
 * welcoming greeting), failed (an error, a refusing greeting, the server's close before it), or
 * abandoned, a loser closed by the race. Returns a function that writes it as connected, for a
 * socket won without a greeting.
 */
function watchRaceAttempt(
  socket: PoolSocket,
  target: RaceTarget,
  started: number,
  record: MessageConnects,
  success: RaceSuccess,
): () => void {
  let settled = false
  const settle = (outcome: 'connected' | 'failed' | 'abandoned', error?: string): void => {
    if (settled) return
    settled = true
    socket.removeListener('connect', onConnect)
    socket.removeListener(GREETING_EVENT, onGreeting)
    socket.removeListener('error', onError)
    socket.removeListener('end', onEnd)
    socket.removeListener('close', onClose)
    // An abandoned loser was slow, not failed: it carries no error.
    record.add(raceAttempt(target, started, outcome, error))
  }
  const onConnect = (): void => settle('connected')
  const onGreeting = (reply: GreetingReply): void =>
    welcomes(reply) ? settle('connected') : settle('failed', greetingError(reply))
  const onError = (err: unknown): void => settle('failed', describeError(err))
  // The server's FIN before its greeting; a loser the race closes sees 'close' alone.
  const onEnd = (): void => settle('failed', CLOSED_BEFORE_GREETING)
  const onClose = (): void => settle('abandoned')
  if (success === 'greeting') {
    socket.once(GREETING_EVENT, onGreeting)
    socket.once('end', onEnd)
  } else socket.once('connect', onConnect)
  socket.once('error', onError)
  socket.once('close', onClose)
  return () => settle('connected')
}
