// The /metrics endpoint: an HTTP server on the configured `[metrics] listen` address, moved
// when a reload changes it, closed when it is emptied. A bad address or a port in use is
// logged and leaves the process without metrics; nothing here throws.
//
// Under Haraka's cluster mode (smtp.ini nodes) only the master listens, and serves the sum
// of every worker's metrics through prom-client's AggregatorRegistry; a worker's own
// registry answers the master over the cluster channel and never listens itself.

import nodeCluster from 'node:cluster'
import http from 'node:http'

import { AggregatorRegistry, type Registry } from 'prom-client'

import { type ListenAddress, parseListen, showListen } from './config'
import { describeError } from './errors'

/** single: nodes=0, this process serves itself; master and worker: Haraka's cluster mode. */
export type MetricsRole = 'single' | 'master' | 'worker'

/** The role of this process, from smtp.ini `nodes` (a count, `cpus`, or 0/absent). */
export function metricsRole(nodes: unknown, cluster: { isWorker: boolean } = nodeCluster): MetricsRole {
  if (cluster.isWorker) return 'worker'
  const n = String(nodes ?? '').trim()
  return n === 'cpus' || Number(n) > 0 ? 'master' : 'single'
}

type Log = (level: 'info' | 'warn' | 'error', msg: string) => void

interface Source {
  text(): Promise<string>
  contentType: string
}

let workerAnswering = false

/** What the endpoint serves in this role; a worker also starts answering the master. */
export function sourceFor(role: MetricsRole, registry: Registry): Source {
  if (role === 'worker') {
    if (!workerAnswering) {
      AggregatorRegistry.setRegistries([registry])
      // Constructing one adds the listener that answers the master's requests.
      new AggregatorRegistry()
      workerAnswering = true
    }
  }
  if (role === 'master') {
    const aggregator = new AggregatorRegistry()
    return { text: () => aggregator.clusterMetrics(), contentType: aggregator.contentType }
  }
  return { text: () => registry.metrics(), contentType: registry.contentType }
}

export class MetricsServer {
  private server: http.Server | undefined
  private listening: string | undefined
  // Reconfigurations run one after another: a reload during a listen waits for it.
  private queue: Promise<void> = Promise.resolve()
  private readonly source: Source
  private readonly log: Log

  constructor(source: Source, log: Log) {
    this.source = source
    this.log = log
  }

  /** The address served now, `127.0.0.1:9464` or `[::1]:9464`; undefined when none. */
  get address(): string | undefined {
    return this.listening
  }

  /**
   * Serves on `listen` (a validated `IP:port`), or nothing when it is undefined. The same
   * address keeps its server; another closes the old server and opens the new one.
   */
  configure(listen: string | undefined): Promise<void> {
    this.queue = this.queue
      .then(() => this.apply(listen))
      .catch((err: unknown) => {
        this.log('error', `metrics endpoint: ${describeError(err)}`)
      })
    return this.queue
  }

  close(): Promise<void> {
    return this.configure(undefined)
  }

  private async apply(listen: string | undefined): Promise<void> {
    if (listen === this.listening && (listen === undefined || this.server)) return
    await this.stop()
    if (listen === undefined) return
    const at = parseListen(listen)
    if (!at) {
      this.log('warn', `[metrics] listen=${listen} is not IP:port; serving no metrics`)
      return
    }
    await this.start(at)
  }

  private start(at: ListenAddress): Promise<void> {
    const shown = showListen(at)
    const server = http.createServer((req, res) => this.answer(req, res))
    // A scrape is one small request: nothing may hold a connection open for long.
    server.requestTimeout = 10000
    server.headersTimeout = 5000
    server.keepAliveTimeout = 5000
    return new Promise((resolve) => {
      const failed = (err: unknown): void => {
        this.log('error', `[metrics] listen=${shown}: ${describeError(err)}; serving no metrics`)
        server.close()
        resolve()
      }
      server.once('error', failed)
      server.listen({ host: at.host, port: at.port, exclusive: true }, () => {
        server.removeListener('error', failed)
        server.on('error', (err) => this.log('error', `metrics endpoint ${shown}: ${describeError(err)}`))
        // The endpoint never keeps Haraka running on its own.
        server.unref()
        this.server = server
        this.listening = shown
        this.log('info', `serving metrics at http://${shown}/metrics`)
        resolve()
      })
    })
  }

  private stop(): Promise<void> {
    const server = this.server
    const was = this.listening
    this.server = undefined
    this.listening = undefined
    if (!server) return Promise.resolve()
    return new Promise((resolve) => {
      server.close(() => {
        this.log('info', `stopped serving metrics at ${was}`)
        resolve()
      })
      server.closeAllConnections()
    })
  }

  private answer(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '').split('?')[0]
    if (path !== '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found: try /metrics\n')
      return
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end('GET only\n')
      return
    }
    this.source.text().then(
      (text) => {
        res.writeHead(200, { 'content-type': this.source.contentType })
        res.end(req.method === 'HEAD' ? undefined : text)
      },
      (err: unknown) => {
        res
          .writeHead(500, { 'content-type': 'text/plain' })
          .end(`metrics unavailable: ${describeError(err)}\n`)
      },
    )
  }
}

let processEndpoint: { role: MetricsRole; server: MetricsServer } | undefined

/**
 * The process's endpoint, made on first use: serves `listen` (or nothing), from `registry` or,
 * in a cluster master, from every worker. A worker never listens.
 */
export function serveMetrics(listen: string | undefined, nodes: unknown, registry: Registry, log: Log): void {
  try {
    if (!processEndpoint) {
      const role = metricsRole(nodes)
      processEndpoint = { role, server: new MetricsServer(sourceFor(role, registry), log) }
    }
    if (processEndpoint.role !== 'worker') void processEndpoint.server.configure(listen)
  } catch (err) {
    log('error', `metrics endpoint: ${describeError(err)}; serving no metrics`)
  }
}

/** Closes the process's endpoint, if it has one. */
export function stopServingMetrics(): Promise<void> {
  return processEndpoint?.server.close() ?? Promise.resolve()
}
