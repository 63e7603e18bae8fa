// The Redis connection behind the shared state: haraka-plugin-redis's client and redis.ini
// merge, bounded in time and in pending commands. A read waits at most `timeoutMs`; a write
// is fire-and-forget and dropped when too many are pending or Redis is away. Redis down,
// slow or coming back is one log line each way; nothing here throws at its caller.

import { createRequire } from 'node:module'

import { describeError } from './errors'

/** The commands of a node-redis client (the `redis` package haraka-plugin-redis uses) this needs. */
export interface RedisClient {
  readonly isReady: boolean
  connect(): Promise<unknown>
  destroy(): void
  on(event: 'error', listener: (err: Error) => void): unknown
  on(event: 'ready' | 'end', listener: () => void): unknown
  mGet(keys: string[]): Promise<(string | null)[]>
  set(key: string, value: string, options: { PX: number }): Promise<unknown>
  pTTL(key: string): Promise<number>
  scanIterator(options: { MATCH: string; COUNT: number }): AsyncIterable<string[]>
  info(section?: string): Promise<string>
}

/** What `redis.createClient` takes: haraka-plugin-redis's merged endpoint. */
export type RedisClientOptions = Record<string, unknown> & { socket: Record<string, unknown> }

export interface RedisSettings {
  host?: string
  port: number
  db: number
  password?: string
}

interface HarakaPluginRedis {
  normalize_redis_ini(raw: unknown): { server: Record<string, unknown> }
  merge_redis_ini(this: MergeHolder): void
}

interface MergeHolder {
  cfg: { redis: Record<string, unknown> }
  redisCfg: { server: Record<string, unknown> }
  load_redis_ini(): void
}

const requireHere = createRequire(__filename)

/**
 * Client options the way a Haraka plugin that inherits haraka-plugin-redis gets them: its
 * `[redis]` over redis.ini's `[server]` (merge_redis_ini), then what keeps this bounded: no
 * offline queue (a command while disconnected fails at once), a bounded command queue, a
 * short connect timeout and a capped reconnect backoff.
 */
export function redisClientOptions(
  ours: RedisSettings,
  redisIni: unknown,
  maxQueued: number,
): RedisClientOptions {
  const parent = requireHere('haraka-plugin-redis') as HarakaPluginRedis
  const section: Record<string, unknown> = {}
  if (ours.host) section.host = ours.host
  if (ours.port) section.port = ours.port
  if (ours.db) section.db = ours.db
  if (ours.password) section.password = ours.password
  const holder: MergeHolder = {
    cfg: { redis: section },
    redisCfg: parent.normalize_redis_ini(redisIni && typeof redisIni === 'object' ? redisIni : {}),
    load_redis_ini() {},
  }
  parent.merge_redis_ini.call(holder)
  const merged = holder.cfg.redis as RedisClientOptions
  return {
    ...merged,
    disableOfflineQueue: true,
    commandsQueueMaxLength: maxQueued,
    socket: {
      connectTimeout: 1000,
      ...merged.socket,
      reconnectStrategy: (retries: number) => Math.min(50 * 2 ** retries, 2000),
    },
  }
}

/** A client of the `redis` package haraka-plugin-redis itself requires (its createClient). */
export function createRedisClient(options: RedisClientOptions): RedisClient {
  const parentRequire = createRequire(requireHere.resolve('haraka-plugin-redis'))
  const redis = parentRequire('redis') as { createClient(o: RedisClientOptions): RedisClient }
  return redis.createClient(options)
}

/** `redis://127.0.0.1:6379/2`: how the log names the server (never its password). */
export function describeEndpoint(options: RedisClientOptions): string {
  const { host, port, path } = options.socket
  const db = Number(options.database ?? 0)
  const where = typeof path === 'string' ? `unix:${path}` : `${String(host)}:${String(port)}`
  return `redis://${where}${db ? `/${db}` : ''}`
}

export type StoreLog = (level: 'info' | 'warn', msg: string) => void

export interface RedisStoreOptions {
  /** The longest a read waits. */
  timeoutMs: number
  /** Writes in flight at most; more are dropped. */
  maxPending: number
  /** How the log names the server. */
  endpoint: string
  log: StoreLog
  /** Each failed or timed-out command and each connection error (the metrics counter). */
  onError?: () => void
  /** Reads in a row that time out before Redis counts as away (one slow answer is no outage). */
  slowReads?: number
}

type State = 'connecting' | 'up' | 'away'

export class RedisStore {
  private state: State = 'connecting'
  private pending = 0
  private timedOutInARow = 0
  private closed = false

  constructor(
    private readonly client: RedisClient,
    private readonly opts: RedisStoreOptions,
  ) {
    client.on('error', (err) => {
      opts.onError?.()
      this.away(describeError(err))
    })
    client.on('ready', () => {
      if (this.closed) return
      this.timedOutInARow = 0
      if (this.state === 'away') return this.back()
      this.state = 'up'
      opts.log('info', `sharing state through ${opts.endpoint}`)
    })
  }

  /** Starts connecting; never waits for it (Redis down at start is an outage like any other). */
  start(): this {
    this.client.connect().catch((err: unknown) => {
      if (!this.closed) this.away(describeError(err))
    })
    return this
  }

  /** Connected and answering in time. */
  get up(): boolean {
    return this.state === 'up' && this.client.isReady
  }

  private back(): void {
    if (this.state !== 'away') return
    this.state = 'up'
    this.opts.log('info', `${this.opts.endpoint} is back: sharing state again`)
  }

  get inFlight(): number {
    return this.pending
  }

  private away(why: string): void {
    if (this.closed || this.state === 'away') return
    this.state = 'away'
    this.opts.log(
      'warn',
      `${this.opts.endpoint} unavailable (${why}): delivering from this process's state until it is back`,
    )
  }

  private failed(err: unknown): void {
    this.opts.onError?.()
    // A connection that broke says so through 'error'; anything else is this one command.
    if (!this.client.isReady) this.away(describeError(err))
  }

  /**
   * The values of `keys` (null: absent), or undefined when Redis is away, slow or failing.
   * Reads go on while Redis is slow (each bounded by `timeoutMs`): one in time ends that outage.
   */
  async read(keys: string[]): Promise<(string | null)[] | undefined> {
    if (!keys.length || this.closed || !this.client.isReady) return undefined
    let timer: NodeJS.Timeout | undefined
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), this.opts.timeoutMs)
    })
    try {
      const answer = await Promise.race([this.client.mGet(keys), timedOut])
      if (answer === 'timeout') {
        this.opts.onError?.()
        if (++this.timedOutInARow >= (this.opts.slowReads ?? 5))
          this.away(`no answer within ${this.opts.timeoutMs} ms, ${this.timedOutInARow} times in a row`)
        return undefined
      }
      this.timedOutInARow = 0
      this.back()
      return answer
    } catch (err) {
      this.failed(err)
      return undefined
    } finally {
      clearTimeout(timer)
    }
  }

  /** Fire-and-forget SET with a TTL; dropped when Redis is away or `maxPending` are in flight. */
  write(key: string, value: string, ttlMs: number): void {
    if (!this.up || this.pending >= this.opts.maxPending || ttlMs <= 0) return
    this.pending++
    this.client
      .set(key, value, { PX: Math.ceil(ttlMs) })
      .catch((err: unknown) => this.failed(err))
      .finally(() => this.pending--)
  }

  close(): void {
    if (this.closed) return
    this.closed = true
    try {
      this.client.destroy()
    } catch {
      // already gone
    }
  }
}
